"""The data model. Every table is made by an Alembic migration, never by create_all."""
from .agreements import Agreement, Lot
from .applications import Admission, Answer, Application, ApplicationLot, Document, RenewalRequest
from .audit import AuditEvent
from .budget import Allocation, BudgetLine, BudgetYear
from .organisations import Organisation
from .system import OutboxMessage, SimulatedClock
from .users import SignInAttempt, User, UserToken

__all__ = [
    "Admission",
    "Answer",
    "Application",
    "ApplicationLot",
    "Document",
    "RenewalRequest",
    "Agreement",
    "Allocation",
    "AuditEvent",
    "BudgetLine",
    "BudgetYear",
    "Lot",
    "Organisation",
    "OutboxMessage",
    "SignInAttempt",
    "SimulatedClock",
    "User",
    "UserToken",
]
