"""The network budget: financial years, budget lines and allocations, all in pence.

Each level carries a running total that services move only with a conditional UPDATE; CHECK
constraints make the database itself refuse any write that would exceed a level (DESIGN 5).
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .organisations import Organisation


class BudgetYear(db.Model):
    """A financial year, 1 April to 31 March."""

    __tablename__ = "budget_years"
    __table_args__ = (CheckConstraint("ends_on > starts_on", name="period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(10), unique=True)  # "2020/21"
    starts_on: Mapped[date] = mapped_column(Date, unique=True)
    ends_on: Mapped[date] = mapped_column(Date)

    lines: Mapped[list["BudgetLine"]] = relationship(back_populates="year", order_by="BudgetLine.programme")


class BudgetLine(db.Model):
    """A programme's money in one year (e.g. Policy Labs 2023/24), with a cap per call-off."""

    __tablename__ = "budget_lines"
    __table_args__ = (
        UniqueConstraint("year_id", "programme", name="uq_budget_lines_year_programme"),
        CheckConstraint("total_pence >= 0", name="total_not_negative"),
        CheckConstraint("allocated_pence >= 0 AND allocated_pence <= total_pence", name="allocated_within_total"),
        CheckConstraint("cap_per_call_off_pence IS NULL OR cap_per_call_off_pence > 0", name="cap_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    year_id: Mapped[int] = mapped_column(ForeignKey("budget_years.id"))
    programme: Mapped[str] = mapped_column(String(100))
    total_pence: Mapped[int] = mapped_column(BigInteger)
    cap_per_call_off_pence: Mapped[int | None] = mapped_column(BigInteger)
    allocated_pence: Mapped[int] = mapped_column(BigInteger, default=0)

    year: Mapped[BudgetYear] = relationship(back_populates="lines")
    allocations: Mapped[list["Allocation"]] = relationship(back_populates="line")


class Allocation(db.Model):
    """Money from a budget line for one funded project of a member organisation."""

    __tablename__ = "allocations"
    __table_args__ = (
        CheckConstraint("amount_pence > 0", name="amount_positive"),
        CheckConstraint("committed_pence >= 0 AND committed_pence <= amount_pence", name="committed_within_amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("budget_lines.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    project_title: Mapped[str] = mapped_column(String(200))
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    committed_pence: Mapped[int] = mapped_column(BigInteger, default=0)

    line: Mapped[BudgetLine] = relationship(back_populates="allocations")
    organisation: Mapped[Organisation] = relationship()

    @property
    def remaining_pence(self) -> int:
        return self.amount_pence - self.committed_pence
