"""The colleagues page that suppliers and buyers share: list the organisation's people, invite one."""
from __future__ import annotations

from flask import flash, redirect, url_for
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..forms import InviteColleagueForm
from ..models import User
from ..services import ServiceError, accounts
from .helpers import attach_error, render_form


def colleagues_page(endpoint: str):
    """GET lists the people of the user's own organisation; POST invites one more, with the
    same role as the inviter and into the same organisation (never another one)."""
    user = current_user._get_current_object()
    form = InviteColleagueForm()
    if form.validate_on_submit():
        try:
            accounts.invite_colleague(user, email=form.email.data, name=form.name.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"We have emailed {accounts.normalise_email(form.email.data)} a link to set up their account.", "success")
            return redirect(url_for(endpoint))
    people = db.session.scalars(
        select(User).where(User.organisation_id == user.organisation_id).order_by(User.name)
    ).all()
    return render_form("shared/colleagues.html", form, people=people)
