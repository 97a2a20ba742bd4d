"""Services hold the rules: each checks, changes, writes its audit event, and flushes.
The view that called it commits."""
from ..errors import ServiceError

__all__ = ["ServiceError"]
