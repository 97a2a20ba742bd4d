"""Invoices paid against a call-off contract: together never more than its value."""
from __future__ import annotations

from datetime import date

from sqlalchemy import update

from ... import audit, clock
from ...extensions import db
from ...filters import money
from ...models import CallOff, Invoice, User
from .. import ServiceError
from .common import require_stage


def record_invoice(call_off: CallOff, user: User, supplier_reference: str | None, amount_pence: int | None,
                   paid_on: date | None) -> Invoice:
    """Record an invoice paid against a call-off. What is paid never exceeds the call-off's value,
    even with two invoices recorded at once: a conditional UPDATE checked by its row count, and
    the CHECK constraint on call_offs behind it."""
    if user.role != "buyer" or user.organisation_id != call_off.buyer_organisation_id:
        raise ServiceError("Only buyers of the organisation that holds this call-off can record its invoices")
    require_stage(call_off.competition, "record_invoice")
    supplier_reference = (supplier_reference or "").strip()
    if not supplier_reference:
        raise ServiceError("Enter the supplier’s invoice number", field="supplier_reference")
    if len(supplier_reference) > 100:
        raise ServiceError("The invoice number must be 100 characters or fewer", field="supplier_reference")
    if amount_pence is None or amount_pence <= 0:
        raise ServiceError("Enter the amount paid, more than £0", field="amount")
    if paid_on is None:
        raise ServiceError("Enter the date the invoice was paid", field="paid_on")
    if paid_on > clock.today_london():
        raise ServiceError("The date paid must be today or in the past", field="paid_on")
    done = db.session.execute(
        update(CallOff)
        .where(CallOff.id == call_off.id, CallOff.paid_pence + amount_pence <= CallOff.value_pence)
        .values(paid_pence=CallOff.paid_pence + amount_pence)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(call_off)
    if done != 1:
        left = call_off.value_pence - call_off.paid_pence
        raise ServiceError(f"This would pay more than the call-off’s value of {money(call_off.value_pence)}: "
                           f"{money(left)} is left to pay", field="amount")
    invoice = Invoice(call_off_id=call_off.id, supplier_reference=supplier_reference, amount_pence=amount_pence,
                      paid_on=paid_on, recorded_at=clock.now(), recorded_by_id=user.id)
    db.session.add(invoice)
    db.session.flush()
    audit.record("invoice.recorded", "call_off", call_off.id, {
        "invoice_id": invoice.id, "supplier_reference": supplier_reference, "amount_pence": amount_pence,
        "paid_on": paid_on.isoformat(), "paid_pence_after": call_off.paid_pence}, actor=user)
    return invoice
