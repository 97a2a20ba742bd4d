"""The audit log pages (added to the team blueprint): the DPS team and auditors browse and filter it."""
from __future__ import annotations

from .team import bp  # noqa: F401
