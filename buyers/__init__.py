"""Buyers: mini-competitions, evaluation, awards, call-offs and budget views."""
from .views import bp

__all__ = ["bp"]
