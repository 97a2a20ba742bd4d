"""The one exception a rule raises to say no, shared by the models' lifecycles and the services."""
from __future__ import annotations


class ServiceError(Exception):
    """A rule said no. ``field`` names the form field the message belongs next to (or None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
