"""Moments and days as GOV.UK writes them, in Europe/London: no database, no clock, so that
models and messages anywhere may use them (``dps.clock`` re-exports them)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


def to_london(moment: datetime) -> datetime:
    return moment.astimezone(LONDON)


def fmt_date(day) -> str:
    """A date as GOV.UK writes it: '7 January 2025'."""
    return f"{day.day} {day:%B %Y}"


def fmt(moment: datetime | None, with_time: bool = True) -> str:
    """'1 April 2025 at 9:05am' in Europe/London, the GOV.UK style."""
    if moment is None:
        return ""
    local = moment.astimezone(LONDON)
    date_part = f"{local.day} {local:%B %Y}"
    if not with_time:
        return date_part
    hour = local.hour % 12 or 12
    suffix = "am" if local.hour < 12 else "pm"
    if local.hour == 12 and local.minute == 0:
        return f"{date_part} at midday"
    if local.hour == 0 and local.minute == 0:
        return f"{date_part} at midnight"
    return f"{date_part} at {hour}:{local.minute:02d}{suffix}"
