"""Suppliers: registration, applications to join the DPS, invitations, clarifications and bids."""
from .views import bp

# Each module adds its pages to the one blueprint (and its role gate).
from . import applications, clarifications, competitions, organisation, renewals  # noqa: E402,F401

__all__ = ["bp"]
