"""The exports page (added to the team blueprint): the DPS team and auditors take exports."""
from __future__ import annotations

from .team import bp  # noqa: F401
