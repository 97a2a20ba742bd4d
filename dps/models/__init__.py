"""The data model. Every table is made by an Alembic migration, never by create_all."""
from .agreements import Agreement, Lot, QuestionnaireVersion
from .applications import Admission, Answer, Application, ApplicationLot, Document, RenewalRequest
from .audit import AuditEvent
from .competitions import (
    Award,
    Bid,
    BidAnswer,
    BidDocument,
    CallOff,
    Clarification,
    Competition,
    CompetitionDocument,
    Criterion,
    Invitation,
    Invoice,
    ModeratedScore,
    PanelMember,
    Score,
)
from .budget import Allocation, BudgetLine, BudgetYear
from .jobs import ExportJob
from .organisations import Organisation
from .refusals import SealedReadRefusal
from .system import Installation, OutboxMessage, SimulatedClock
from .users import RecoveryCode, SignInAttempt, User, UserToken

__all__ = [
    "Award",
    "Bid",
    "BidAnswer",
    "BidDocument",
    "CallOff",
    "Clarification",
    "Competition",
    "CompetitionDocument",
    "Criterion",
    "Invitation",
    "Invoice",
    "ModeratedScore",
    "PanelMember",
    "Score",
    "Admission",
    "Answer",
    "Application",
    "ApplicationLot",
    "Document",
    "ExportJob",
    "RenewalRequest",
    "Agreement",
    "Allocation",
    "AuditEvent",
    "BudgetLine",
    "BudgetYear",
    "Installation",
    "Lot",
    "QuestionnaireVersion",
    "Organisation",
    "OutboxMessage",
    "RecoveryCode",
    "SealedReadRefusal",
    "SignInAttempt",
    "SimulatedClock",
    "User",
    "UserToken",
]
