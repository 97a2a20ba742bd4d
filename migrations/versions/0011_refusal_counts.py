"""Refused reads of sealed bid content, counted per person, competition and hour (issue 14).

``sealed_read_refusals``: one row per person (``actor``: the user's id as text, or
"anonymous"), competition and UTC hour, with how many reads were refused and the first and last
moment. The first refusal of the hour writes the ``bid_content.refused`` audit event; later ones
only count here, so refused reads cannot flood the append-only audit log.

Existing audit events are untouched (each stays the record of its refusal). Downgrading drops the
table; the counts go with it, the audit events stay.

Revision ID: b2c3d4e5f6a7
Revises: a1b2c3d4e5f6
Create Date: 2026-12-09 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'b2c3d4e5f6a7'
down_revision = 'a1b2c3d4e5f6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sealed_read_refusals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'],
                            name=op.f('fk_sealed_read_refusals_competition_id_competitions')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sealed_read_refusals_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sealed_read_refusals')),
    sa.UniqueConstraint('actor', 'competition_id', 'hour',
                        name=op.f('uq_sealed_read_refusals_actor'))
    )
    with op.batch_alter_table('sealed_read_refusals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sealed_read_refusals_competition_id'), ['competition_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sealed_read_refusals_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('sealed_read_refusals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sealed_read_refusals_user_id'))
        batch_op.drop_index(batch_op.f('ix_sealed_read_refusals_competition_id'))
    op.drop_table('sealed_read_refusals')
