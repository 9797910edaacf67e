"""The visitor's time zone, from what their browser tells Streamlit (`st.context`)."""

from __future__ import annotations

import streamlit as st

from common.timezones import UTC, DisplayZone, browser_zone


def visitor_zone() -> DisplayZone:
    """The browser's zone (`st.context.timezone`, else `timezone_offset`); UTC, labelled, when it sent none."""
    try:
        return browser_zone(st.context.timezone, st.context.timezone_offset)
    except Exception:  # noqa: BLE001 - outside a browser session (a bare script run) there is no context
        return UTC


def zone_caption(zone: DisplayZone) -> str:
    """One line for a page that shows times: which zone they are in."""
    if zone is UTC:
        return "Times in UTC (your browser did not say its time zone)."
    return f"Times in {zone.label}, your browser's time zone."
