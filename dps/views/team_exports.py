"""The exports page (added to the team blueprint): the DPS team and auditors take exports.

Taking an export is recorded in the audit log, a change of state, so the download itself is a
POST with the CSRF token; the page is a GET that changes nothing. The export is written in full
to a temporary file and checked before the audit event is committed and the file streamed: an
export that fails its checks hands out nothing and is not recorded as taken.

Every export but the audit log can be taken for one agreement (the "Agreement" select: all
published agreements, or one; drafts are never offered, nor exported). The audit log is one hash
chain for the whole service: it is always taken whole, and its audit event records that.

An export too large for a page request (national scale: the OCDS packages, the audit log) is not
written in the request: pressing Download queues it (``deliver.ask_for``) and the page lists it
under "Your exports" with its progress, then a Download button once a worker has finished it.
Only the person who asked sees it or downloads it (anyone else: 404). The page refreshes
without JavaScript (a Refresh link); with it, a small script polls each unfinished export's
status and redraws its row.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovDateInput, GovSelect
from sqlalchemy import func, select
from wtforms import SelectField
from wtforms.validators import ValidationError

from .. import clock
from ..auth import one_or_404
from ..database import read_only_transaction
from ..exports import Export, ExportInvalid, Filters, NothingToExport, all_exports, deliver
from ..extensions import db
from ..forms import LondonDateField
from ..models import Agreement, ExportJob
from ..services import agreements as agreements_service
from .team import bp

# "Your exports" lists a person's latest exports prepared in the background, newest first.
YOUR_EXPORTS = 10

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def _in_range(form, field) -> None:
    if field.data and not deliver.EARLIEST_DAY <= field.data <= deliver.LATEST_DAY:
        raise ValidationError(f"{field.label.text} must be a date between {deliver.EARLIEST_DAY.year} "
                              f"and {deliver.LATEST_DAY.year}")


ALL_AGREEMENTS = ""


class ExportPeriodForm(FlaskForm):
    """The period every export on the page covers, and the agreement. Both dates may be left out
    (everything); the agreement defaults to all published agreements."""

    agreement = SelectField("Agreement", widget=GovSelect(), default=ALL_AGREEMENTS, validate_choice=False)
    # No Optional(): it would discard "Enter a real date" when only the day box is empty.
    date_from = LondonDateField("From", widget=GovDateInput(), format="%d %m %Y", validators=[_in_range])
    date_to = LondonDateField("To", widget=GovDateInput(), format="%d %m %Y", validators=[_in_range])

    def __init__(self, *args, agreements: list[Agreement], **kwargs):
        super().__init__(*args, **kwargs)
        # Published agreements only: a draft is never exported, so never offered.
        self.agreement.choices = [(ALL_AGREEMENTS, "All agreements")] + [
            (a.reference, f"{a.reference}: {a.title}") for a in agreements]

    def validate_agreement(self, field) -> None:
        # Not WTForms' own choice check: its "Not a valid choice" does not say what to do. An
        # unknown reference, a draft's, or a tampered value all read the same.
        if (field.data or ALL_AGREEMENTS) not in {value for value, _ in field.choices}:
            raise ValidationError("Choose an agreement from the list, or All agreements")

    def validate_date_to(self, field) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The ‘to’ date must be the same as or after the ‘from’ date")

    @property
    def chosen_agreement(self) -> str | None:
        return self.agreement.data or None


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int
    start: date
    end: date

    @property
    def code(self) -> str:
        return f"{self.year}-Q{self.number}"

    @property
    def label(self) -> str:
        return f"{_MONTHS[self.start.month - 1]} to {_MONTHS[self.end.month - 1]} {self.year}"

    @property
    def financial(self) -> str:
        # The network's budget years run April to March: calendar Q2 is financial Q1.
        first_year = self.year if self.number > 1 else self.year - 1
        number = self.number - 1 if self.number > 1 else 4
        return f"Q{number} {first_year}/{str(first_year + 1)[-2:]}"


def _quarter_of(day: date) -> Quarter:
    number = (day.month - 1) // 3 + 1
    return Quarter(day.year, number, *deliver.calendar_quarter(day.year, number))


def _quarters() -> list[Quarter]:
    """Calendar quarters (the Transparency Code's) from the DPS's start to today, newest first."""
    today = clock.today_london()
    first = db.session.scalar(select(func.min(Agreement.starts_on)))
    quarter = _quarter_of(today)
    quarters = [quarter]
    # Without a DPS yet, the last two years; the bound only guards against a nonsense start date.
    while len(quarters) < 200:
        previous = _quarter_of(date.fromordinal(quarter.start.toordinal() - 1))
        if (first is not None and previous.end < first) or (first is None and len(quarters) >= 8):
            break
        quarters.append(previous)
        quarter = previous
    return quarters


def _available() -> list[Export]:
    return [export for export in all_exports() if current_user.role in export.audience]


def _your_jobs() -> list[ExportJob]:
    return db.session.scalars(select(ExportJob).where(ExportJob.requested_by_id == current_user.id)
                              .order_by(ExportJob.id.desc()).limit(YOUR_EXPORTS)).all()


def _your_job(job_id: int) -> ExportJob:
    """One of the signed-in person's own export jobs; anyone else's is not found."""
    return one_or_404(select(ExportJob).where(ExportJob.id == job_id, ExportJob.requested_by_id == current_user.id))


def _titles() -> dict[str, str]:
    return {export.name: export.title for export in all_exports()}


def _units() -> dict[str, str]:
    """What each export's progress counts: rows, or (OCDS) contracting processes."""
    return {export.name: export.unit for export in all_exports()}


def _page(form: ExportPeriodForm, http_status: int = 200, failure: tuple[Export, str] | None = None,
          quarters: list[Quarter] | None = None):
    return render_template("team/exports.html", form=form, exports=_available(),
                           quarters=_quarters() if quarters is None else quarters, failure=failure,
                           jobs=_your_jobs(), titles=_titles(), units=_units()), http_status


@bp.route("/exports")
def exports():
    form = ExportPeriodForm(formdata=None, agreements=agreements_service.published_agreements())
    # ?quarter=2024-Q2 fills the dates in and ?agreement=REF chooses the agreement (shortcuts;
    # they change nothing, and one that names nothing offered is ignored).
    chosen = request.args.get("quarter")
    quarters = _quarters()
    for quarter in quarters:
        if quarter.code == chosen:
            form.date_from.data, form.date_to.data = quarter.start, quarter.end
    wanted = (request.args.get("agreement") or "").strip().upper()
    if wanted in {value for value, _ in form.agreement.choices}:
        form.agreement.data = wanted
    return _page(form, quarters=quarters)


@bp.route("/exports/<name>", methods=["POST"])
def take_export(name: str):
    export = next((e for e in _available() if e.name == name), None)
    if export is None:
        abort(404)  # unknown, or not for this role: nothing to say either way
    form = ExportPeriodForm(agreements=agreements_service.published_agreements())
    if not form.validate_on_submit():
        return _page(form, 400)
    # The audit log is taken whole whichever agreement is chosen (the page says so): its event
    # records the filters it was actually taken with.
    filters = export.applicable(Filters(form.date_from.data, form.date_to.data, form.chosen_agreement))
    with read_only_transaction():
        in_background = deliver.too_big_for_a_request(export, filters)
    if in_background:
        job = deliver.ask_for(export, filters, current_user)
        db.session.commit()
        flash(f"{export.title} is too large to download at once, so it is being prepared. It will be ready to "
              "download under Your exports.", "info")
        return redirect(url_for("team.exports", agreement=filters.agreement) + f"#export-job-{job.id}", 303)
    try:
        tmp = deliver.produce(export, filters)
    except NothingToExport as exc:
        db.session.rollback()
        # The period chosen holds nothing this format can carry: say so next to the period.
        advice = "choose another period or agreement" if filters.agreement else "choose another period"
        form.date_from.errors = [*form.date_from.errors, f"{exc.message}: {advice}"]
        return _page(form, 400)
    except ExportInvalid as exc:
        db.session.rollback()
        current_app.logger.error("Export %s for %s failed its checks: %s", export.name, filters.as_dict(), exc.message)
        # 500, not 422: the request was sound; what failed is the service's own data or code,
        # which the person asking cannot fix by asking differently, and the operator must hear of.
        return _page(form, 500, failure=(export, exc.message))
    try:
        # Recorded and committed before a byte goes out: a download is never untracked.
        deliver.record_taken(export, filters, "download", deliver.size_of(tmp))
        db.session.commit()
    except BaseException:
        tmp.close()
        raise
    return deliver.response(export, filters, tmp)


@bp.route("/exports/jobs/<int:job_id>")
def export_job_status(job_id: int):
    """How far one of your exports has got, for the page's script: its state, rows and its row of
    the "Your exports" table drawn again."""
    job = _your_job(job_id)
    html = render_template("team/_export_job.html", job=job, titles=_titles(), units=_units())
    return jsonify(state=job.state, rows_done=job.rows_done, rows_total=job.rows_total, percent=job.percent,
                   message=_announcement(job), html=html)


def _announcement(job: ExportJob) -> str:
    title = _titles().get(job.export, job.export)
    return {"queued": f"{title} is waiting to start", "running": f"{title} is being prepared",
            "done": f"{title} is ready to download", "failed": f"{title} failed"}[job.state]


@bp.route("/exports/jobs/<int:job_id>/download", methods=["POST"])
def download_export_job(job_id: int):
    job = _your_job(job_id)
    export = next((e for e in _available() if e.name == job.export), None)
    if export is None or job.state != "done":
        abort(404)  # no longer for this role, or nothing to download (yet)
    # Recorded and committed before a byte goes out, as every download from this page is.
    deliver.record_taken(export, deliver.filters_of(job), "download", job.file_size, job=job)
    db.session.commit()
    return deliver.stored_response(export, job)
