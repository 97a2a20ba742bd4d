"""The audit log pages (added to the team blueprint): the DPS team and auditors browse and filter it.

Read-only and GET only: the filter form changes nothing, so it carries no CSRF token, and every
link (filters, older, newer) is a plain URL that can be bookmarked or sent to a colleague.
"""
from __future__ import annotations

from flask import abort, render_template, request, url_for
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovDateInput, GovSelect, GovSubmitInput, GovTextInput
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import Length, Optional

from ..forms import LondonDateField, single_line
from ..services import audit_log as log_service
from .team import bp

FILTER_FIELDS = ("date_from", "date_to", "organisation", "object_type", "object_id", "action")


class AuditLogFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    date_from = LondonDateField("From", widget=GovDateInput(), format="%d %m %Y",
                                description="UK date, included. For example, 1 4 2024")
    date_to = LondonDateField("To", widget=GovDateInput(), format="%d %m %Y",
                              description="UK date, included. For example, 30 6 2024")
    # The lists come from the log itself; a value not in them (a hand-made URL) just finds nothing.
    organisation = SelectField("Organisation", widget=GovSelect(), validate_choice=False,
                               description="The organisation of whoever acted (or, for the system, the one concerned)")
    object_type = SelectField("Object type", widget=GovSelect(), validate_choice=False)
    object_id = StringField("Object id", widget=GovTextInput(),
                            validators=[Optional(), Length(max=40, message="Object id must be 40 characters or fewer"),
                                        single_line])
    action = SelectField("Action", widget=GovSelect(), validate_choice=False)
    submit = SubmitField("Filter", widget=GovSubmitInput())

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self.date_from.data and self.date_to.data and self.date_to.data < self.date_from.data:
            self.date_to.errors = list(self.date_to.errors) + ["The ‘to’ date must be the same as or after the ‘from’ date"]
            ok = False
        if (self.object_id.data or "").strip() and not self.object_type.data:
            self.object_id.errors = list(self.object_id.errors) + ["Select the object type to search by object id"]
            ok = False
        if self.organisation.data and not self.organisation.data.isdigit():
            self.organisation.errors = list(self.organisation.errors) + ["Select an organisation from the list"]
            ok = False
        return ok

    def log_filters(self) -> log_service.LogFilters:
        return log_service.LogFilters(
            start=self.date_from.data, end=self.date_to.data,
            organisation_id=int(self.organisation.data) if self.organisation.data else None,
            object_type=self.object_type.data or None,
            object_id=(self.object_id.data or "").strip() or None,
            action=self.action.data or None)


def _page_link(**keyset) -> str:
    """A link to another page of the same filtered log: the filters go along unchanged."""
    args = {key: request.args.getlist(key) for key in FILTER_FIELDS if request.args.getlist(key)}
    return url_for("team.audit_log", **args, **keyset)


@bp.route("/audit")
def audit_log():
    choices = log_service.choices()
    form = AuditLogFilterForm(formdata=request.args if request.args else None)
    form.organisation.choices = [("", "All organisations")] + [(str(i), name) for i, name in choices.organisations]
    form.object_type.choices = [("", "All object types")] + [(t, t) for t in choices.object_types]
    form.action.choices = [("", "All actions")] + [(a, a) for a in choices.actions]
    if request.args and not form.validate():
        return render_template("team/audit_log.html", form=form, log=None, filtered=True), 400
    filters = form.log_filters()
    filtered = filters != log_service.LogFilters()
    log = log_service.page(filters, before=request.args.get("before", type=int),
                         after=request.args.get("after", type=int))
    newer = _page_link(after=log.newer_after) if log.newer_after is not None else None
    older = _page_link(before=log.older_before) if log.older_before is not None else None
    return render_template("team/audit_log.html", form=form, log=log, filtered=filtered, newer=newer, older=older,
                           newest=_page_link(), paged="before" in request.args or "after" in request.args)


@bp.route("/audit/<int:event_id>")
def audit_event(event_id: int):
    row = log_service.event(event_id)
    if row is None:
        abort(404)
    return render_template("team/audit_event.html", row=row)
