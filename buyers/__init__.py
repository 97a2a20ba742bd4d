"""Buyers: mini-competitions, evaluation, awards, call-offs and budget views."""
from .views import bp

# Each module adds its pages to the one blueprint (and its role gate).
from . import competitions, evaluation  # noqa: E402,F401

__all__ = ["bp"]
