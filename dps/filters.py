"""Jinja filters: money in pence, times in Europe/London."""
from __future__ import annotations

from datetime import date, datetime

from flask import Flask

from . import clock


def money(pence: int | None) -> str:
    """12345678 -> '£123,456.78'."""
    if pence is None:
        return ""
    sign = "-" if pence < 0 else ""
    pounds, pennies = divmod(abs(int(pence)), 100)
    return f"{sign}£{pounds:,}.{pennies:02d}"


def london_datetime(moment: datetime | None) -> str:
    return clock.fmt(moment)


def london_date(value: datetime | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return clock.fmt(value, with_time=False)
    return f"{value.day} {value:%B %Y}"


def iso_date(value: str | None) -> str:
    """An ISO date string as stored in an answer -> '31 March 2025'."""
    if not value:
        return ""
    return london_date(date.fromisoformat(value))


def register(app: Flask) -> None:
    app.add_template_filter(money, "money")
    app.add_template_filter(london_datetime, "datetime")
    app.add_template_filter(london_date, "date")
    app.add_template_filter(iso_date, "isodate")
    app.add_template_global(error_list, "error_list")


def error_list(form) -> list[dict]:
    """Items for the GOV.UK error summary: each field error links to its field."""
    items = [{"text": message} for message in getattr(form, "form_errors", [])]
    for field in form:
        for message in field.errors:
            if isinstance(message, str):
                items.append({"text": message, "href": f"#{field.id}"})
    return items
