"""The DPS agreement itself and its lots."""
from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .organisations import NATIONS, Organisation


class Agreement(db.Model):
    """A Dynamic Purchasing System: its period, accountable body and legal regime."""

    __tablename__ = "agreements"
    __table_args__ = (
        CheckConstraint("ends_on > starts_on", name="period"),
        CheckConstraint(f"nation IN ({', '.join(repr(n) for n in NATIONS)})", name="nation"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Dates in Europe/London: the DPS is open from the start of starts_on to the end of ends_on.
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    accountable_body_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    legal_regime: Mapped[str] = mapped_column(String(100))
    # The nation whose bank holidays count when working days are counted.
    nation: Mapped[str] = mapped_column(String(20))

    accountable_body: Mapped[Organisation] = relationship()
    lots: Mapped[list["Lot"]] = relationship(back_populates="agreement", order_by="Lot.number")


class Lot(db.Model):
    """A category of the DPS, objectively defined, with its own selection criteria."""

    __tablename__ = "lots"
    __table_args__ = (
        UniqueConstraint("agreement_id", "number", name="uq_lots_agreement_number"),
        CheckConstraint("public_liability_min_pence >= 0 AND professional_indemnity_min_pence >= 0",
                        name="insurance_not_negative"),
        CheckConstraint("case_studies_required >= 0", name="case_studies_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    selection_criteria: Mapped[str] = mapped_column(Text)
    # The lot's own selection levels (employer's liability is £5m for every lot, by law).
    public_liability_min_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    professional_indemnity_min_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    case_studies_required: Mapped[int] = mapped_column(Integer, default=2)

    agreement: Mapped[Agreement] = relationship(back_populates="lots")

    @property
    def label(self) -> str:
        return f"Lot {self.number}: {self.title}"
