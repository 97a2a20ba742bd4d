from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from dps.auth import one_or_404, role_gate
from dps.extensions import db
from dps.models import Allocation, BudgetLine, BudgetYear
from dps.services.accounts import buyer_ineligibility
from dps.services.budget import AllocationRow, allocations_of
from dps.views.colleagues import colleagues_page
from dps.views.team_budget import BUYER_KEYS, stacked_bars

bp = Blueprint("buyers", __name__, url_prefix="/buyer")
role_gate(bp, roles=("buyer",))


def _own_allocations():
    """Allocations of the buyer's own organisation: the only ones a buyer may see."""
    return (
        select(Allocation)
        .where(Allocation.organisation_id == current_user.organisation_id)
        .options(joinedload(Allocation.line).joinedload(BudgetLine.year))
    )


@bp.route("/")
def dashboard():
    allocations = db.session.scalars(
        _own_allocations().join(Allocation.line).join(BudgetLine.year)
        .order_by(BudgetYear.starts_on.desc(), BudgetLine.programme, Allocation.project_title)
    ).all()
    return render_template("buyers/dashboard.html", organisation=current_user.organisation,
                           allocations=allocations, ineligible=buyer_ineligibility(current_user.organisation))


@bp.route("/allocations/<int:allocation_id>")
def allocation(allocation_id: int):
    item = one_or_404(_own_allocations().where(Allocation.id == allocation_id))
    return render_template("buyers/allocation.html", allocation=item)


@bp.route("/colleagues", methods=["GET", "POST"])
def colleagues():
    return colleagues_page("buyers.colleagues")


@bp.route("/budget")
def budget():
    """The organisation's network funding by financial year: allocated, committed and paid, with
    a chart per year. Scoped to the buyer's own organisation, like the dashboard."""
    years: dict[str, list[AllocationRow]] = {}  # by year, latest first, as allocations_of orders them
    for row in allocations_of(organisation_id=current_user.organisation_id):
        years.setdefault(row.allocation.line.year.label, []).append(row)
    charts = {
        label: stacked_bars(
            f"chart-{label.replace('/', '-')}", f"Your organisation’s allocations {label}: paid, committed and not yet committed",
            BUYER_KEYS,
            ((row.allocation.project_title,
              # Paid is part of what is committed; max() keeps a bar drawable if records disagree.
              (row.paid_pence, max(row.allocation.committed_pence - row.paid_pence, 0),
               row.allocation.remaining_pence))
             for row in rows))
        for label, rows in years.items()
    }
    return render_template("buyers/budget.html", organisation=current_user.organisation, years=years, charts=charts)
