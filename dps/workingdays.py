"""Working days: Monday to Friday, less the bank holidays of a nation of the UK.

PCR 2015 reg 34 counts the time to decide an application (10 working days, 15 where justified)
and a renewed self-declaration (5 working days) in working days. Oldham's DPS counts England's.
"""
from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

SUBDIVISIONS = {"England": "ENG", "Wales": "WLS", "Scotland": "SCT", "Northern Ireland": "NIR"}


@lru_cache(maxsize=64)
def _bank_holidays(nation: str, year: int) -> frozenset[date]:
    try:
        subdiv = SUBDIVISIONS[nation]
    except KeyError:
        raise ValueError(f"Unknown nation {nation!r}: expected one of {', '.join(SUBDIVISIONS)}") from None
    return frozenset(holidays.country_holidays("GB", subdiv=subdiv, years=year))


def is_working_day(day: date, nation: str) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(nation, day.year)


def add_working_days(start: date, count: int, nation: str) -> date:
    """The ``count``-th working day after ``start``: counting begins the working day after it.

    Received on Friday 20 December 2024 (England): day 1 is Monday 23rd, Christmas Day and
    Boxing Day and New Year's Day are skipped, and day 10 is Wednesday 8 January 2025.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    day = start
    remaining = count
    while remaining:
        day += timedelta(days=1)
        if is_working_day(day, nation):
            remaining -= 1
    return day


def working_days_between(start: date, end: date, nation: str) -> int:
    """Working days after ``start`` up to and including ``end`` (0 if end <= start)."""
    days = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day, nation):
            days += 1
    return days
