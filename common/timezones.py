"""Times shown to a person: in their own time zone, named, or in UTC and labelled so.

A server on Streamlit Community Cloud runs in UTC while its agents do not, so a bare
"2026-12-06 09:00" on a page or in an export is read in the wrong zone. Every time a person
reads is formatted through a `DisplayZone`, whose label says which zone it is in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTE_FORMAT = "%Y-%m-%d %H:%M"
SECOND_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class DisplayZone:
    """A time zone to show times in, and its label ("Europe/Berlin", "UTC+05:30", "UTC")."""

    tzinfo: tzinfo
    label: str

    def local(self, ts: float) -> datetime:
        """The aware datetime of a Unix timestamp (seconds) in this zone."""
        return datetime.fromtimestamp(ts, self.tzinfo)

    def format(self, ts: float | None, fmt: str = MINUTE_FORMAT, empty: str = "–") -> str:
        """`ts` (Unix seconds) in this zone as `fmt`, without the label; `empty` for no time (None or 0)."""
        return self.local(ts).strftime(fmt) if ts else empty

    def labelled(self, ts: float | None, fmt: str = MINUTE_FORMAT, empty: str = "–") -> str:
        """As `format`, followed by the zone's label: "2026-12-06 09:00 Europe/Berlin"."""
        return f"{self.format(ts, fmt)} {self.label}" if ts else empty

    def day(self, ts: float) -> str:
        """The ISO date (YYYY-MM-DD) of `ts` in this zone: the day a person there lived it."""
        return self.local(ts).date().isoformat()

    def day_bounds(self, day: date) -> tuple[float, float]:
        """Unix seconds of the first and the last microsecond of `day` in this zone."""
        start = datetime.combine(day, time.min, self.tzinfo)
        end = datetime.combine(day, time.max, self.tzinfo)
        return start.timestamp(), end.timestamp()


UTC = DisplayZone(timezone.utc, "UTC")


def _offset_label(minutes_east: int) -> str:
    sign = "+" if minutes_east >= 0 else "-"
    hours, minutes = divmod(abs(minutes_east), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def named_zone(name: str | None) -> DisplayZone | None:
    """The IANA zone `name` ("Europe/Berlin"), labelled with it; None for no name or an unknown one."""
    if not name:
        return None
    try:
        return DisplayZone(ZoneInfo(name), name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # an unknown or malformed name
        return None


def browser_zone(name: str | None, offset_minutes: int | None) -> DisplayZone:
    """The zone a browser reports: its IANA name, else its offset, else UTC.

    `offset_minutes` is JavaScript's `Date.getTimezoneOffset()`, as Streamlit passes it in
    `st.context.timezone_offset`: minutes *behind* UTC, so UTC+1 is -60. A bare offset is fixed
    (it cannot follow daylight saving over past dates), so the name is preferred.
    """
    named = named_zone(name)
    if named is not None:
        return named
    if offset_minutes is None or not -16 * 60 <= offset_minutes <= 16 * 60:
        return UTC
    if offset_minutes == 0:
        return DisplayZone(timezone.utc, "UTC")  # said by the browser: not the fallback `UTC`
    east = -int(offset_minutes)
    label = _offset_label(east)
    return DisplayZone(timezone(timedelta(minutes=east), label), label)


def machine_zone() -> DisplayZone:
    """This machine's zone for the command line: `TZ`, else /etc/localtime's name, else UTC."""
    named = named_zone(os.environ.get("TZ", "").lstrip(":"))
    if named is not None:
        return named
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return UTC
    _, found, key = target.partition("zoneinfo/")
    named = named_zone(key) if found else None
    return UTC if named is None or key in ("UTC", "Etc/UTC", "Etc/Universal", "Zulu") else named
