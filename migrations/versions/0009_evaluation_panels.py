"""Evaluation panels of several evaluators: when each member submitted their scores, why a
moderated score departs from the evaluators' marks, and an index to count each member's marks.

``panel_members.scores_submitted_at``: the moment a member's last mark went in (every submitted
bid marked on every quality and social value criterion). From then on their marks are fixed and
they see the marks of the other members who have submitted; moderation opens when every member
without a conflict has submitted.

Existing data stays valid: a member who declared no conflict and has a mark for every submitted
bid on every scored criterion of their competition is given the time of their last mark as the
moment they submitted (under the rules before this migration, moderation waited for every such
member's mark, so every moderated competition's evaluators are complete). A member with marks
missing stays unsubmitted, as the new rules would have them. Downgrading drops the new columns
and the index; nothing else is touched.

``moderated_scores.departure_reason``: required by the service when the consensus departs from
the evaluators' marks; existing moderated scores have none (they were agreed under the old rule).

Revision ID: 9f5b3c4d1e62
Revises: 8e4a2b3c0d51
Create Date: 2026-12-04 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '9f5b3c4d1e62'
down_revision = '8e4a2b3c0d51'
branch_labels = None
depends_on = None

SCORED_KINDS = ("quality", "social_value")

# The tables as this migration reads them (never the application's models, which move on).
panel_members = sa.table(
    "panel_members", sa.column("id", sa.Integer), sa.column("competition_id", sa.Integer),
    sa.column("declared_at", sa.DateTime), sa.column("conflicted", sa.Boolean),
    sa.column("scores_submitted_at", sa.DateTime))
scores = sa.table("scores", sa.column("bid_id", sa.Integer), sa.column("criterion_id", sa.Integer),
                  sa.column("panel_member_id", sa.Integer), sa.column("scored_at", sa.DateTime))
bids = sa.table("bids", sa.column("id", sa.Integer), sa.column("competition_id", sa.Integer),
                sa.column("state", sa.String))
criteria = sa.table("criteria", sa.column("id", sa.Integer), sa.column("competition_id", sa.Integer),
                    sa.column("kind", sa.String))


def _backfill_submissions() -> None:
    """One UPDATE: members whose marks cover every submitted bid on every scored criterion get
    their last mark's time."""
    marks = (sa.select(sa.func.count())
             .select_from(scores.join(bids, bids.c.id == scores.c.bid_id)
                          .join(criteria, criteria.c.id == scores.c.criterion_id))
             .where(scores.c.panel_member_id == panel_members.c.id, bids.c.state == "submitted",
                    bids.c.competition_id == panel_members.c.competition_id,
                    criteria.c.kind.in_(SCORED_KINDS))
             .scalar_subquery())
    bid_count = (sa.select(sa.func.count()).select_from(bids)
                 .where(bids.c.competition_id == panel_members.c.competition_id, bids.c.state == "submitted")
                 .scalar_subquery())
    criterion_count = (sa.select(sa.func.count()).select_from(criteria)
                       .where(criteria.c.competition_id == panel_members.c.competition_id,
                              criteria.c.kind.in_(SCORED_KINDS))
                       .scalar_subquery())
    last_mark = (sa.select(sa.func.max(scores.c.scored_at)).where(scores.c.panel_member_id == panel_members.c.id)
                 .scalar_subquery())
    op.execute(
        panel_members.update()
        .where(panel_members.c.declared_at.is_not(None), panel_members.c.conflicted == sa.false(),
               bid_count > 0, criterion_count > 0, marks == bid_count * criterion_count)
        .values(scores_submitted_at=last_mark))


def upgrade():
    with op.batch_alter_table('panel_members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scores_submitted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(op.f('ck_panel_members_submitted_after_declaring'),
                                         'scores_submitted_at IS NULL OR declared_at IS NOT NULL')
    with op.batch_alter_table('moderated_scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('departure_reason', sa.Text(), nullable=True))
        batch_op.create_check_constraint(op.f('ck_moderated_scores_departure_reason_not_empty'),
                                         'departure_reason IS NULL OR length(departure_reason) > 0')
    op.create_index(op.f('ix_scores_panel_member_id'), 'scores', ['panel_member_id'], unique=False)
    _backfill_submissions()


def downgrade():
    op.drop_index(op.f('ix_scores_panel_member_id'), table_name='scores')
    with op.batch_alter_table('moderated_scores', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_moderated_scores_departure_reason_not_empty'), type_='check')
        batch_op.drop_column('departure_reason')
    with op.batch_alter_table('panel_members', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_panel_members_submitted_after_declaring'), type_='check')
        batch_op.drop_column('scores_submitted_at')
