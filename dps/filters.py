"""Jinja filters: money in pence, times in Europe/London, plural forms."""
from __future__ import annotations

from datetime import date, datetime

from flask import Flask
from govuk_frontend_wtf.wtforms_widgets import GovDateInput

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


def plural(count: int, singular: str, plural: str | None = None) -> str:
    """(1, "document") -> "1 document"; (0, "document") -> "0 documents"; a plural that is not
    the singular with an s is given: (2, "query", "queries") -> "2 queries"."""
    word = singular if count == 1 else (plural if plural is not None else singular + "s")
    return f"{count:,} {word}"


def register(app: Flask) -> None:
    app.add_template_filter(money, "money")
    app.add_template_filter(london_datetime, "datetime")
    app.add_template_filter(london_date, "date")
    app.add_template_filter(iso_date, "isodate")
    app.add_template_filter(plural, "plural")
    app.add_template_global(error_list, "error_list")


def error_target(field) -> str:
    """The id an error summary link moves focus to: the field itself, or for a date input
    (Day, Month, Year) its Day box, which govuk-frontend-wtf renders as ``<name>-day``."""
    if isinstance(field.widget, GovDateInput):
        return f"{field.name}-day"
    return field.id


def error_list(form) -> list[dict]:
    """Items for the GOV.UK error summary: each field error links to its field (a date's Day box)."""
    items = [{"text": message} for message in getattr(form, "form_errors", [])]
    for field in form:
        for message in field.errors:
            if isinstance(message, str):
                items.append({"text": message, "href": f"#{error_target(field)}"})
    return items
