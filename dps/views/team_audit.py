"""The audit log pages (added to the team blueprint): the DPS team and auditors browse and filter it.

Read-only and GET only: the filter form changes nothing, so it carries no CSRF token, and every
link (filters, older, newer) is a plain URL that can be bookmarked or sent to a colleague.

The organisation is typed, not picked from a list of every organisation: the page resolves the
name (one organisation of that name, whatever its case, filters the log; otherwise the field
says so and offers the organisations it might mean, as links). With JavaScript the field is an
autocomplete fed by ``audit_organisations``; without it, it is a plain text box.
"""
from __future__ import annotations

from flask import abort, jsonify, render_template, request, url_for
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovDateInput, GovSelect, GovSubmitInput, GovTextInput
from wtforms import HiddenField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from ..forms import LondonDateField, single_line
from ..models.organisations import KIND_LABELS
from ..pagination import MAX_SEARCH_LENGTH, clean_search
from ..services import audit_log as log_service
from ..services import sealed
from .team import bp

FILTER_FIELDS = ("date_from", "date_to", "organisation", "organisation_id", "object_type", "object_id", "action")
# Organisation ids are INTEGER columns: a larger number names no organisation (and PostgreSQL
# would refuse to compare it with one).
_LARGEST_ID = 2 ** 31 - 1


class AuditLogFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    date_from = LondonDateField("From", widget=GovDateInput(), format="%d %m %Y",
                                description="UK date, included. For example, 1 4 2024")
    date_to = LondonDateField("To", widget=GovDateInput(), format="%d %m %Y",
                              description="UK date, included. For example, 30 6 2024")
    organisation = StringField(
        "Organisation", widget=GovTextInput(),
        description="Its name, or the start of it. The organisation of whoever acted (or, for the system, "
                    "the one concerned)",
        validators=[Optional(), Length(max=MAX_SEARCH_LENGTH,
                                       message=f"Enter an organisation’s name of {MAX_SEARCH_LENGTH} characters or fewer")])
    # Which of several organisations of the same name was picked from the page's links; used only
    # while the name typed is still that organisation's.
    organisation_id = HiddenField()
    # The lists come from the log itself; a value not in them (a hand-made URL) just finds nothing.
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
        return ok

    def chosen_id(self) -> int | None:
        raw = self.organisation_id.data or ""
        if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(_LARGEST_ID))):
            return None
        return int(raw) if int(raw) <= _LARGEST_ID else None

    def log_filters(self, organisation_id: int | None) -> log_service.LogFilters:
        return log_service.LogFilters(
            start=self.date_from.data, end=self.date_to.data, organisation_id=organisation_id,
            object_type=self.object_type.data or None,
            object_id=(self.object_id.data or "").strip() or None,
            action=self.action.data or None)


def _event_id(name: str) -> int | None:
    """The event id a page link carries; one no event can have (not a number, or past the 64
    bits of the column) is none, and gives the newest page."""
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _page_link(**keyset) -> str:
    """A link to another page of the same filtered log: the filters go along unchanged."""
    args = {key: request.args.getlist(key) for key in FILTER_FIELDS if request.args.getlist(key)}
    return url_for("team.audit_log", **args, **keyset)


def _choice_link(candidate: log_service.OrganisationMatch) -> str:
    """The log filtered by ``candidate`` instead of the name typed, with the other filters."""
    args = {key: request.args.getlist(key) for key in FILTER_FIELDS
            if key not in ("organisation", "organisation_id") and request.args.getlist(key)}
    return url_for("team.audit_log", **args, organisation=candidate.name, organisation_id=candidate.id)


def _lookup_message(typed: str, lookup: log_service.OrganisationLookup) -> str:
    if lookup.same_name:
        return f"{lookup.count:,} organisations are called “{typed}”: choose which one from the list below"
    if not lookup.candidates:
        return f"There is no organisation called “{typed}” or whose name starts with it: check the spelling"
    if lookup.count > len(lookup.candidates):
        return (f"There is no organisation called “{typed}”, and {lookup.count:,} names start with it: type more of "
                f"the name, or choose one of the first {len(lookup.candidates)} from the list below")
    return f"There is no organisation called “{typed}”: choose one whose name starts with it from the list below"


def _organisation_filter(form: AuditLogFilterForm) -> tuple[int | None, log_service.OrganisationLookup | None]:
    """The id of the organisation the form names (None: no organisation filter), and what the
    lookup found; when the name names no one organisation, the field's error says so."""
    typed, chosen_id = clean_search(form.organisation.data), form.chosen_id()
    form.organisation.data, form.organisation_id.data = typed, ""
    if not typed or form.organisation.errors:
        return None, None
    lookup = log_service.find_organisation(typed, chosen_id)
    if lookup.found is None:
        form.organisation.errors = [_lookup_message(typed, lookup)]
        return None, lookup
    form.organisation.data = lookup.found.name
    form.organisation_id.data = str(lookup.found.id)
    return lookup.found.id, lookup


@bp.route("/audit")
def audit_log():
    choices = log_service.choices()
    form = AuditLogFilterForm(formdata=request.args if request.args else None)
    form.object_type.choices = [SelectChoice("", "All object types")] + [SelectChoice(t, t) for t in choices.object_types]
    form.action.choices = [SelectChoice("", "All actions")] + [SelectChoice(a, a) for a in choices.actions]
    valid = form.validate() if request.args else True
    organisation_id, lookup = _organisation_filter(form)
    if not valid or form.organisation.errors:
        return render_template("team/audit_log.html", form=form, log=None, filtered=True, lookup=lookup,
                               choice_link=_choice_link, kind_labels=KIND_LABELS), 400
    filters = form.log_filters(organisation_id)
    filtered = filters != log_service.LogFilters()
    log = log_service.page(filters, before=_event_id("before"), after=_event_id("after"))
    newer = _page_link(after=log.newer_after) if log.newer_after is not None else None
    older = _page_link(before=log.older_before) if log.older_before is not None else None
    return render_template("team/audit_log.html", form=form, log=log, filtered=filtered, newer=newer, older=older,
                           newest=_page_link(), paged="before" in request.args or "after" in request.args)


@bp.route("/audit/organisations")
def audit_organisations():
    """Up to ten names of organisations that start with ``q`` (any case), by name, as JSON
    ({"names": [...]}): what the organisation filter's autocomplete offers. Reads only."""
    return jsonify(names=log_service.suggest_organisations(clean_search(request.args.get("q"))))


@bp.route("/audit/<bigint:event_id>")
def audit_event(event_id: int):
    row = log_service.event(event_id)
    if row is None:
        abort(404)
    refusals = None
    if row.event.action == "bid_content.refused" and isinstance(row.event.data, dict):
        refusals = sealed.refusal_count(row.event.data.get("refusal_count_id"))
    return render_template(
        "team/audit_event.html", row=row, refusals=refusals,
        refusal_first=log_service.exact_time(refusals.first_at) if refusals else None,
        refusal_last=log_service.exact_time(refusals.last_at) if refusals else None)
