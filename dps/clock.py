"""The one clock every rule reads.

Real time unless ``DPS_CLOCK`` is set. Then a simulated clock starts at that Europe/London moment
and runs forward with real time; the DPS team can move it on (a training sandbox). Its state
lives in the database, not in memory, so every worker and host agrees on the time.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app, g, has_app_context, has_request_context

from .database import writing
from .extensions import db
from .models import SimulatedClock
from .timefmt import LONDON, fmt, fmt_date, to_london  # noqa: F401 (the clock's formats)

UTC = timezone.utc


class ClockError(ValueError):
    pass


@dataclass(frozen=True)
class _State:
    anchor_simulated: datetime
    anchor_real: datetime
    frozen: bool

    def now(self) -> datetime:
        if self.frozen:
            return self.anchor_simulated
        return self.anchor_simulated + (real_now() - self.anchor_real)


def real_now() -> datetime:
    return datetime.now(UTC)


def parse_london(value: str) -> datetime:
    """'2023-06-01T09:00' (Europe/London wall time, or with an explicit offset) -> aware UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ClockError("Enter a date and time like 2024-04-15 09:00") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LONDON)
    return moment.astimezone(UTC)


def is_simulated() -> bool:
    return has_app_context() and bool(current_app.config.get("DPS_CLOCK"))


def _load_state(write: bool) -> _State:
    configured = current_app.config["DPS_CLOCK"]
    row = db.session.get(SimulatedClock, 1)
    if row is not None and row.configured == configured:
        return _State(row.anchor_simulated, row.anchor_real, row.frozen)
    state = _State(parse_london(configured), real_now(), False)
    if write:
        if row is None:
            row = SimulatedClock(id=1)
            db.session.add(row)
        row.configured = configured
        row.anchor_simulated = state.anchor_simulated
        row.anchor_real = state.anchor_real
        row.frozen = False
    return state


def sync() -> None:
    """Start of a request or command: start the simulated clock if it has not started yet.

    Commits only when it had to write, and only ever at the start of a unit of work.
    """
    if not is_simulated():
        return
    row = db.session.get(SimulatedClock, 1)
    if row is not None and row.configured == current_app.config["DPS_CLOCK"]:
        state = _State(row.anchor_simulated, row.anchor_real, row.frozen)
    else:
        with writing():
            state = _load_state(write=True)
    if has_request_context():
        g.dps_clock_state = state


def now() -> datetime:
    """The current moment, timezone-aware UTC."""
    if not is_simulated():
        return real_now()
    state = g.get("dps_clock_state") if has_request_context() else None
    if state is None:
        state = _load_state(write=False)
    return state.now()


def today_london():
    return now().astimezone(LONDON).date()


def set_simulated(moment: datetime, *, frozen: bool = False) -> None:
    """Put the simulated clock at ``moment`` (tests, training set-up). Caller commits."""
    if not is_simulated():
        raise ClockError("The clock is real time: set DPS_CLOCK to use a simulated clock")
    if moment.tzinfo is None:
        raise ClockError("naive datetime")
    row = db.session.get(SimulatedClock, 1) or SimulatedClock(id=1)
    row.configured = current_app.config["DPS_CLOCK"]
    row.anchor_simulated = moment.astimezone(UTC)
    row.anchor_real = real_now()
    row.frozen = frozen
    db.session.add(row)
    db.session.flush()
    if has_request_context():
        g.dps_clock_state = _State(row.anchor_simulated, row.anchor_real, frozen)


def move_forward_to(target: datetime) -> datetime:
    """Move the simulated clock on to ``target``; it may not go back (receipt times must keep
    their order). Returns the time it moved from. Caller writes the audit event and commits."""
    current = now()
    if target <= current:
        raise ClockError("The new date and time must be later than the simulated time now")
    row = db.session.get(SimulatedClock, 1)
    set_simulated(target, frozen=bool(row and row.frozen))
    return current




