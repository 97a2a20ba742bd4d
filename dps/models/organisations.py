"""Organisations: network members, the network itself, and suppliers."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, Date, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import UTCDateTime

# Kinds of organisation. Members keep the kinds of the network's own list.
KINDS = (
    "council",
    "combined_authority",
    "town_parish_community_council",
    "opposition_group",
    "organisation",
    "network",
    "supplier",
)
# Kinds that are usually contracting authorities under PCR 2015: the default for a new member of
# that kind (the DPS team records each member's own status).
CONTRACTING_AUTHORITY_KINDS = ("council", "combined_authority", "town_parish_community_council")
MEMBERSHIP_TIERS = ("full", "associate", "affiliate")
NATIONS = ("England", "Wales", "Scotland", "Northern Ireland")
LEGAL_FORMS = (
    "company",
    "cic",
    "co_operative",
    "community_benefit_society",
    "charity",
    "partnership",
    "sole_trader",
)
SIZES = ("micro", "small", "medium", "large")

KIND_LABELS = {
    "council": "Council",
    "combined_authority": "Combined authority",
    "town_parish_community_council": "Town, parish or community council",
    "opposition_group": "Opposition group",
    "organisation": "Organisation",
    "network": "The network",
    "supplier": "Supplier",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Organisation(db.Model):
    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint(_in("kind", KINDS), name="kind"),
        CheckConstraint(f"membership IS NULL OR {_in('membership', MEMBERSHIP_TIERS)}", name="membership"),
        CheckConstraint(f"nation IS NULL OR {_in('nation', NATIONS)}", name="nation"),
        CheckConstraint(f"legal_form IS NULL OR {_in('legal_form', LEGAL_FORMS)}", name="legal_form"),
        CheckConstraint(f"size IS NULL OR {_in('size', SIZES)}", name="size"),
        UniqueConstraint("identifier_scheme", "identifier_id", name="uq_organisations_identifier"),
        CheckConstraint("left_on IS NULL OR joined_on IS NULL OR left_on > joined_on", name="left_after_joining"),
        # Lists ordered by name, whatever its case (who is on an agreement, suppliers, members).
        Index("ix_organisations_name_lower", text("lower(name)"), "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    # Network membership (members only): full, associate or affiliate.
    membership: Mapped[str | None] = mapped_column(String(20))
    # Members: whether it is a contracting authority (PCR 2015 reg 2), so may award call-offs.
    contracting_authority: Mapped[bool | None] = mapped_column(Boolean)
    # Members: the day it joined the network, and the day it left (a member until the day before).
    joined_on: Mapped[date | None] = mapped_column(Date)
    left_on: Mapped[date | None] = mapped_column(Date)
    # Whose bank holidays apply (members); where a supplier is registered (suppliers).
    nation: Mapped[str | None] = mapped_column(String(20))
    # org-id.guide identifier, e.g. GB-LAE + OLD, GB-COH + 01234567.
    identifier_scheme: Mapped[str | None] = mapped_column(String(20))
    identifier_id: Mapped[str | None] = mapped_column(String(40))
    # Suppliers only.
    legal_form: Mapped[str | None] = mapped_column(String(40))
    registration_number: Mapped[str | None] = mapped_column(String(40))
    size: Mapped[str | None] = mapped_column(String(10))
    is_vcse: Mapped[bool | None] = mapped_column(Boolean)
    # Suppliers' Part 1 details (selection questionnaire, PPN 03/23).
    trading_name: Mapped[str | None] = mapped_column(String(200))
    address_line_1: Mapped[str | None] = mapped_column(String(200))
    address_line_2: Mapped[str | None] = mapped_column(String(200))
    town: Mapped[str | None] = mapped_column(String(100))
    postcode: Mapped[str | None] = mapped_column(String(10))
    vat_number: Mapped[str | None] = mapped_column(String(20))
    parent_company: Mapped[str | None] = mapped_column(String(200))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    # Set when an admitted supplier changes its legal name or registration number: the DPS team
    # must look again (the identity it admitted has changed). Cleared when they have.
    identity_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    @property
    def is_supplier(self) -> bool:
        return self.kind == "supplier"

    @property
    def is_network(self) -> bool:
        return self.kind == "network"

    @property
    def is_contracting_authority(self) -> bool:
        return bool(self.contracting_authority)

    def is_member_on(self, day: date) -> bool:
        """A member of the network on ``day``: joined by then (or joined before records began)
        and not yet left."""
        if self.membership is None:
            return False
        if self.joined_on is not None and day < self.joined_on:
            return False
        return self.left_on is None or day < self.left_on

    @property
    def part1_complete(self) -> bool:
        """The supplier details an application needs before it can be submitted."""
        required = (self.name, self.legal_form, self.size, self.address_line_1, self.town, self.postcode,
                    self.contact_name, self.contact_email)
        if self.legal_form not in (None, "sole_trader", "partnership") and not self.registration_number:
            return False
        return all(required) and self.is_vcse is not None

    @property
    def kind_label(self) -> str:
        return KIND_LABELS[self.kind]

    def __repr__(self) -> str:
        return f"<Organisation {self.id} {self.name!r}>"
