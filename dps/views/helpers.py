"""Small helpers shared by the views of every blueprint."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import render_template, request
from flask_wtf import FlaskForm

from ..services import ServiceError


def render_form(template: str, form: FlaskForm, http_status: int | None = None, **context):
    """Render a form page; a form with errors comes back with status 400."""
    if http_status is None:
        http_status = 400 if form.errors else 200
    return render_template(template, form=form, **context), http_status


def attach_error(form: FlaskForm, error: ServiceError) -> None:
    """Put a service's refusal next to the field it concerns (or at the top of the form)."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = list(field.errors) + [error.message]
    else:
        form.form_errors.append(error.message)


def client_ip() -> str:
    return request.remote_addr or "unknown"


def safe_next(target: str | None) -> str | None:
    """Only local paths: a sign-in link must never send someone to another site."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target
