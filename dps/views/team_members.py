"""The DPS team's pages about member organisations (added to the team blueprint): the list, adding
and changing a member, and importing members from a CSV file with a preview.

Auditors may read the list; only the DPS team acts (``team_only``). Every organisation that is not
a supplier is here, and only those: a supplier's id gives 404. The import is two POSTs: the upload
(checked and previewed, nothing saved), then the confirmation, which carries the same content in
a hidden field and has the service check it all again; the preview is never trusted.
"""
from __future__ import annotations

import base64
import binascii
import zlib

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from govuk_frontend_wtf.wtforms_widgets import (
    GovDateInput,
    GovFileInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextInput,
)
from sqlalchemy import select
from wtforms import HiddenField, RadioField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from .. import clock
from ..auth import one_or_404
from ..extensions import db
from ..forms import LondonDateField, single_line
from ..models import Organisation
from ..models.organisations import KIND_LABELS, MEMBERSHIP_TIERS, NATIONS
from ..services import ServiceError
from ..services import members as rules
from .helpers import attach_error
from .team import bp, team_only

# Forms --------------------------------------------------------------------------------------------


class MemberForm(FlaskForm):
    """The shape of a member's record; the service checks the rules and names the field."""

    name = StringField(
        "Name", widget=GovTextInput(),
        validators=[InputRequired(message="Enter the organisation’s name"),
                    Length(max=rules.NAME_LIMIT, message=f"Name must be {rules.NAME_LIMIT} characters or fewer"),
                    single_line])
    membership = SelectField(
        "Membership tier", widget=GovSelect(), validate_choice=False,
        choices=[SelectChoice("", "Select a tier")] + [SelectChoice(t, rules.TIER_LABELS[t]) for t in MEMBERSHIP_TIERS],
        description="Full and Associate Members that are contracting authorities may buy from the DPS. "
                    "The network itself has no tier.")
    kind = SelectField(
        "Kind of organisation", widget=GovSelect(), validate_choice=False,
        choices=[SelectChoice("", "Select a kind")] + [SelectChoice(k, KIND_LABELS[k]) for k in rules.MEMBER_KINDS])
    nation = SelectField(
        "Nation", widget=GovSelect(), validate_choice=False,
        choices=[SelectChoice("", "Not recorded")] + [SelectChoice(n, n) for n in NATIONS],
        description="Whose bank holidays apply when working days are counted. Full and Associate Members need one.")
    contracting_authority = RadioField(
        "Is it a contracting authority?", widget=GovRadioInput(), validate_choice=False,
        choices=[SelectChoice("yes", "Yes"), SelectChoice("no", "No")],
        description="Under the Public Contracts Regulations 2015 (regulation 2): only a contracting authority can "
                    "award call-offs. If you do not choose, councils, combined authorities and town, parish and "
                    "community councils are, and other kinds are not.")
    identifier_scheme = SelectField(
        "Identifier scheme (optional)", widget=GovSelect(), validate_choice=False,
        choices=[SelectChoice("", "None")] + [SelectChoice(code, f"{code}: {label}")
                                              for code, label in rules.IDENTIFIER_SCHEMES.items()],
        description="The register the organisation’s identifier comes from (org-id.guide).")
    identifier_id = StringField(
        "Identifier (optional)", widget=GovTextInput(),
        description="Its code in that register. For example, OLD for Oldham Council in GB-LAE.",
        validators=[Length(max=rules.IDENTIFIER_LIMIT,
                           message=f"The identifier must be {rules.IDENTIFIER_LIMIT} characters or fewer")])
    joined_on = LondonDateField("Date it joined (optional)", widget=GovDateInput(), format="%d %m %Y",
                                description="For example, 1 4 2019. Leave empty if it joined before records began.")
    left_on = LondonDateField(
        "Date it left (optional)", widget=GovDateInput(), format="%d %m %Y",
        description="It is a member until the day before. From this day its buyers can no longer start or publish "
                    "a competition. For example, 1 4 2025.")
    submit = SubmitField("Save", widget=GovSubmitInput())

    def fields_for_service(self) -> dict:
        ca = {"yes": True, "no": False}.get(self.contracting_authority.data or "")
        return {
            "name": self.name.data, "membership": self.membership.data or None, "kind": self.kind.data or None,
            "nation": self.nation.data or None, "contracting_authority": ca,
            "identifier_scheme": self.identifier_scheme.data or None, "identifier_id": self.identifier_id.data or None,
            "joined_on": self.joined_on.data, "left_on": self.left_on.data,
        }


def _form_data(org: Organisation) -> dict:
    ca = None if org.contracting_authority is None else ("yes" if org.contracting_authority else "no")
    return {"name": org.name, "membership": org.membership or "", "kind": org.kind, "nation": org.nation or "",
            "contracting_authority": ca, "identifier_scheme": org.identifier_scheme or "",
            "identifier_id": org.identifier_id or "", "joined_on": org.joined_on, "left_on": org.left_on}


class ImportUploadForm(FlaskForm):
    file = FileField("Upload a CSV file", widget=GovFileInput(),
                     description=f"UTF-8, with the column names in the first row. Up to "
                                 f"{rules.IMPORT_ROW_LIMIT:,} members.")
    submit = SubmitField("Check the file", widget=GovSubmitInput())


class ImportConfirmForm(FlaskForm):
    content = HiddenField()  # the file's text, compressed: see _pack
    fingerprint = HiddenField()


# The file travels back compressed: a 5,000-row file then stays well inside the form size limit
# (MAX_FORM_MEMORY_SIZE, 500 kB by default), and unpacking stops at the import's own size limit.

def _pack(text: str) -> str:
    return base64.urlsafe_b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def _unpack(packed: str) -> str:
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.urlsafe_b64decode(packed.encode("ascii")), rules.IMPORT_BYTES_LIMIT + 1)
        if not inflater.eof or len(data) > rules.IMPORT_BYTES_LIMIT:
            abort(400)
        return data.decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeError, ValueError):
        abort(400)


# Loading ------------------------------------------------------------------------------------------

def _member(org_id: int) -> Organisation:
    # Members are every organisation that is not a supplier; a supplier's id is not found here.
    return one_or_404(select(Organisation).where(Organisation.id == org_id, Organisation.kind != "supplier"))


def _attach_errors(form: FlaskForm, exc: ServiceError) -> None:
    """Every rule the record broke, each by its field (a refusal of another kind by its own)."""
    for problem in getattr(exc, "problems", None) or [exc]:
        attach_error(form, ServiceError(problem.message, problem.field))


def _actor():
    return current_user._get_current_object()


def _abort_on_csrf(form: FlaskForm) -> None:
    """After a failed validation: a missing or stale CSRF token is a bad request, not a field error."""
    if "csrf_token" in form.errors:
        abort(400)


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, type=int)
    return value if value is not None and value > 0 else None


# The list ---------------------------------------------------------------------------------------

@bp.route("/members")
def members():
    tier = request.args.get("tier")
    tier = tier if tier in MEMBERSHIP_TIERS else None
    status = request.args.get("status")
    status = status if status in rules.STATUSES else None
    page = rules.members_page(tier=tier, status=status, after=_int_arg("after"), before=_int_arg("before"))
    filters = {key: value for key, value in (("tier", tier), ("status", status)) if value}

    def link(**change):
        return url_for("team.members", **{key: value for key, value in {**filters, **change}.items() if value})

    filter_links = [
        ("Tier", [("all", tier is None, link(tier=None))]
         + [(label.lower(), tier == key, link(tier=key)) for key, label in rules.TIER_LABELS.items()]),
        ("Show", [("all", status is None, link(status=None))]
         + [(label.lower(), status == key, link(status=key)) for key, label in rules.STATUSES.items()]),
    ]
    return render_template(
        "team/members.html", page=page, tier=tier, status=status, filters=filters, filter_links=filter_links,
        tier_labels=rules.TIER_LABELS, statuses=rules.STATUSES, kind_labels=KIND_LABELS,
        identifier_text=rules.identifier_text, status_of=rules.status_of, today=clock.to_london(clock.now()).date(),
        next_url=url_for("team.members", **filters, after=page.next_after) if page.next_after else None,
        previous_url=url_for("team.members", **filters, before=page.previous_before) if page.previous_before else None,
        paged="after" in request.args or "before" in request.args,
        can_act=current_user.role == "dps_admin")


# Adding and changing a member -------------------------------------------------------------------

def _render_form(form: MemberForm, org: Organisation | None):
    return render_template("team/members_form.html", form=form, org=org), 400 if form.errors else 200


@bp.route("/members/new", methods=["GET", "POST"])
@team_only
def new_member():
    form = MemberForm()
    if form.validate_on_submit():
        try:
            org = rules.add(_actor(), **form.fields_for_service())
        except ServiceError as exc:
            db.session.rollback()
            _attach_errors(form, exc)
        else:
            db.session.commit()
            flash(f"{org.name} has been added to the network’s members.", "success")
            return redirect(url_for("team.members"))
    elif request.method == "POST":
        _abort_on_csrf(form)
    return _render_form(form, None)


@bp.route("/members/<int:org_id>/edit", methods=["GET", "POST"])
@team_only
def edit_member(org_id: int):
    org = _member(org_id)
    form = MemberForm(data=_form_data(org) if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            changes = rules.update(_actor(), org, **form.fields_for_service())
        except ServiceError as exc:
            db.session.rollback()
            _attach_errors(form, exc)
            org = _member(org_id)
        else:
            db.session.commit()
            if changes:
                labels = ", ".join(rules.FIELD_LABELS[name] for name in changes)
                flash(f"{org.name} has been updated: {labels}.", "success")
            else:
                flash(f"Nothing was changed: {org.name}’s record already said that.", "info")
            return redirect(url_for("team.members"))
    elif request.method == "POST":
        _abort_on_csrf(form)
    return _render_form(form, org)


# Importing --------------------------------------------------------------------------------------

def _render_preview(preview: rules.ImportPreview, content: str, message: str | None = None, status: int = 200):
    confirm = None
    if preview.ok and preview.to_apply:
        confirm = ImportConfirmForm(formdata=None, data={"content": _pack(content), "fingerprint": preview.fingerprint})
    return render_template("team/members_import_preview.html", preview=preview, confirm=confirm, message=message,
                           tier_labels=rules.TIER_LABELS, kind_labels=KIND_LABELS,
                           identifier_text=rules.identifier_text), status


def _render_upload(form: ImportUploadForm, status: int = 200):
    return render_template("team/members_import.html", form=form, columns=rules.COLUMNS,
                           schemes=rules.IDENTIFIER_SCHEMES, row_limit=rules.IMPORT_ROW_LIMIT,
                           tier_labels=rules.TIER_LABELS, kind_labels=KIND_LABELS,
                           member_kinds=rules.MEMBER_KINDS, nations=NATIONS), status


@bp.route("/members/import", methods=["GET", "POST"])
@team_only
def import_members():
    form = ImportUploadForm()
    if request.method == "GET":
        return _render_upload(form)
    if not form.validate_on_submit():
        _abort_on_csrf(form)
        return _render_upload(form, 400)
    upload = form.file.data
    try:
        if upload is None or not upload.filename:
            raise ServiceError("Select a CSV file", "file")
        data = upload.stream.read(rules.IMPORT_BYTES_LIMIT + 1)
        if not data:
            raise ServiceError("The selected file is empty", "file")
        content = rules.decode(data)
        preview = rules.preview_import(content)
    except ServiceError as exc:
        db.session.rollback()
        attach_error(form, exc)
        return _render_upload(form, 400)
    # A preview reads only; nothing is written, so nothing to commit.
    db.session.rollback()
    return _render_preview(preview, content, status=200 if preview.ok else 400)


@bp.route("/members/import/confirm", methods=["POST"])
@team_only
def confirm_import():
    form = ImportConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    content = _unpack(form.content.data or "")
    try:
        result = rules.apply_import(_actor(), content, form.fingerprint.data or None)
    except rules.ImportRefused as exc:
        db.session.rollback()
        # The file checked again as the members now are: the rows that are bad, or the new plan.
        preview = rules.preview_import(content)
        db.session.rollback()
        return _render_preview(preview, content, message=exc.message, status=400)
    except ServiceError as exc:
        db.session.rollback()
        upload = ImportUploadForm(formdata=None)
        attach_error(upload, exc)
        return _render_upload(upload, 400)
    db.session.commit()
    if result.added or result.changed:
        flash(f"Import complete: {result.added} member{'' if result.added == 1 else 's'} added and "
              f"{result.changed} changed ({result.unchanged} already up to date).", "success")
    else:
        flash("Nothing to change: every member in the file is already recorded as it says.", "info")
    return redirect(url_for("team.members"))
