"""Suppliers: registration, applications to join the DPS, invitations, clarifications and bids."""
from .views import bp

__all__ = ["bp"]
