"""Agreements (a DPS, or a dynamic market), their lots, and the questionnaire versions suppliers answer.

Several agreements live side by side over the years: each has its own period, legal regime, lots,
questionnaire versions, applications, admissions and competitions. Where an agreement stands is
derived from its dates and its publication (``Agreement.stage``), never stored.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .organisations import NATIONS, Organisation
from .types import UTCDateTime

# The legal regimes an agreement can be run under. A DPS under PCR 2015 reg 34 until the
# Procurement Act 2023 took effect (24 February 2025); after that a new vehicle is a dynamic
# market (PA 2023 ss. 34-40), whose records the data model holds beside the old DPS's.
PCR_2015_DPS = "pcr2015_dps"
PA_2023_DYNAMIC_MARKET = "pa2023_dynamic_market"
REGIMES = (PCR_2015_DPS, PA_2023_DYNAMIC_MARKET)
REGIME_LABELS = {
    PCR_2015_DPS: "Public Contracts Regulations 2015, regulation 34 (dynamic purchasing system)",
    PA_2023_DYNAMIC_MARKET: "Procurement Act 2023, sections 34 to 40 (dynamic market)",
}
REGIME_SHORT = {PCR_2015_DPS: "Dynamic purchasing system", PA_2023_DYNAMIC_MARKET: "Dynamic market"}

# Stages of an agreement (see Agreement.stage).
DRAFT = "draft"
UPCOMING = "upcoming"
OPEN = "open"
CLOSED = "closed"
STAGE_LABELS = {DRAFT: "Draft", UPCOMING: "Upcoming", OPEN: "Open", CLOSED: "Closed"}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def london_midnight(day: date) -> datetime:
    """00:00 Europe/London on ``day``, as an aware UTC datetime (midnight always exists once)."""
    from .. import clock

    return datetime.combine(day, time.min, tzinfo=clock.LONDON).astimezone(clock.UTC)


class Agreement(db.Model):
    """A purchasing vehicle: its period, accountable body, legal regime and working-day nation."""

    __tablename__ = "agreements"
    __table_args__ = (
        CheckConstraint("ends_on > starts_on", name="period"),
        CheckConstraint(_in("nation", NATIONS), name="nation"),
        CheckConstraint(_in("regime", REGIMES), name="regime"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Upper-case letters, digits and hyphens: it names the agreement in addresses and ocids.
    reference: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Dates in Europe/London: open from the start of starts_on to the end of ends_on.
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    accountable_body_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    regime: Mapped[str] = mapped_column(String(30))
    # The nation whose bank holidays count when working days are counted.
    nation: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Published: listed on the public pages, open to applications in its period. NULL: a draft.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    accountable_body: Mapped[Organisation] = relationship()
    lots: Mapped[list["Lot"]] = relationship(back_populates="agreement", order_by="Lot.number")

    @property
    def regime_label(self) -> str:
        return REGIME_LABELS[self.regime]

    @property
    def kind_label(self) -> str:
        return REGIME_SHORT[self.regime]

    def window(self) -> tuple[datetime, datetime]:
        """The period as a half-open interval of aware UTC datetimes [start, end): from 00:00 UK
        time on the first day to 00:00 UK time after the last, BST included."""
        return london_midnight(self.starts_on), london_midnight(self.ends_on + timedelta(days=1))

    def stage(self, now: datetime) -> str:
        """draft, upcoming, open or closed at ``now``."""
        if self.published_at is None:
            return DRAFT
        start, end = self.window()
        if now < start:
            return UPCOMING
        if now < end:
            return OPEN
        return CLOSED

    def __repr__(self) -> str:
        return f"<Agreement {self.id} {self.reference}>"


class Lot(db.Model):
    """A category of the agreement, objectively defined, with its own selection criteria."""

    __tablename__ = "lots"
    __table_args__ = (
        UniqueConstraint("agreement_id", "number", name="uq_lots_agreement_number"),
        CheckConstraint("public_liability_min_pence >= 0 AND professional_indemnity_min_pence >= 0",
                        name="insurance_not_negative"),
        CheckConstraint("case_studies_required >= 0", name="case_studies_not_negative"),
        CheckConstraint("number > 0", name="number_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    # What the lot covers and what it does not: the objective definition of the category.
    scope: Mapped[str] = mapped_column(Text, default="")
    # Common Procurement Vocabulary codes, e.g. ["73000000-2", "79315000-5"].
    cpv_codes: Mapped[list] = mapped_column(JSON, default=list)
    selection_criteria: Mapped[str] = mapped_column(Text)
    # The lot's own selection levels (employer's liability is £5m for every lot, by law).
    public_liability_min_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    professional_indemnity_min_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    case_studies_required: Mapped[int] = mapped_column(Integer, default=2)
    # Closed to new applications (admitted suppliers stay and are still invited).
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agreement: Mapped[Agreement] = relationship(back_populates="lots")

    @property
    def label(self) -> str:
        return f"Lot {self.number}: {self.title}"

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None


class QuestionnaireVersion(db.Model):
    """A version of an agreement's selection questionnaire, as uploaded (YAML).

    Once published it is fixed: applications record the version they answered and are read
    against it for ever (the service refuses changes, and database triggers refuse an UPDATE or
    DELETE of a published version)."""

    __tablename__ = "questionnaire_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), index=True)
    # Lower-case letters, digits and hyphens, unique across agreements: e.g. ccin-sq-2020-04.
    version: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agreement: Mapped[Agreement] = relationship()

    @property
    def is_published(self) -> bool:
        return self.published_at is not None
