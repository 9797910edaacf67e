"""Durations in words, for messages such as "try again in 8 seconds" or "resets in 3 h 12 min"."""

from __future__ import annotations

import math


def in_words(seconds: float) -> str:
    """45 seconds, 12 minutes, 3 h 12 min; rounded up, so that a wait is never understated."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
