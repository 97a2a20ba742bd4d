"""Services hold the rules: each checks, changes, writes its audit event, and flushes.
The view that called it commits."""


class ServiceError(Exception):
    """A rule said no. ``field`` names the form field the message belongs next to (or None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
