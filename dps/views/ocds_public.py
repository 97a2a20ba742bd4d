"""Public OCDS endpoints: /ocds/releases.json and /ocds/records.json (published information only)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ocds", __name__, url_prefix="/ocds")
