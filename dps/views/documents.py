"""Downloading a document: one route for every role, behind the one permission check."""
from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user, login_required
from sqlalchemy import select

from ..auth import one_or_404
from ..database import writes_on_safe_request
from ..extensions import db
from ..models import Document
from ..services import documents

bp = Blueprint("documents", __name__, url_prefix="/documents")


@bp.route("/<int:document_id>")
@login_required
@writes_on_safe_request  # every download is audited
def download(document_id: int):
    document = one_or_404(select(Document).where(Document.id == document_id))
    if not documents.can_view(current_user, document):
        abort(404)  # not 403: whether the document exists is itself not for them to know
    response = documents.open_for_download(document)
    db.session.commit()  # the download's audit event
    return response
