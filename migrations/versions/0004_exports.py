"""Exports: audit log indexes for keyset pagination; irrecoverable VAT on call-offs.

The audit log page filters by organisation, action or object and shows newest first, a page
after a given id. An index ending in id for each filter lets the database read just the rows
shown, however long the log grows. Plain CREATE/DROP INDEX (not batch mode): on SQLite a batch
would copy the table and lose its append-only triggers.

The Transparency Code asks for each contract's irrecoverable VAT. Values are recorded including
VAT; this is the part of that VAT the buyer cannot recover (0 for existing call-offs, as for
most councils).

Revision ID: 8cbfe4562bd1
Revises: e2d857408d4a
Create Date: 2026-11-22 21:56:56.541650
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8cbfe4562bd1'
down_revision = 'e2d857408d4a'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_audit_events_organisation_id', table_name='audit_events')
    op.drop_index('ix_audit_events_object', table_name='audit_events')
    op.create_index('ix_audit_events_object', 'audit_events', ['object_type', 'object_id', 'id'], unique=False)
    op.create_index('ix_audit_events_object_type', 'audit_events', ['object_type', 'id'], unique=False)
    op.create_index('ix_audit_events_action', 'audit_events', ['action', 'id'], unique=False)
    op.create_index('ix_audit_events_organisation', 'audit_events', ['organisation_id', 'id'], unique=False)

    with op.batch_alter_table('call_offs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('irrecoverable_vat_pence', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_check_constraint(
            'irrecoverable_vat_within_value',
            'irrecoverable_vat_pence >= 0 AND irrecoverable_vat_pence <= value_pence',
        )


def downgrade():
    with op.batch_alter_table('call_offs', schema=None) as batch_op:
        batch_op.drop_constraint('irrecoverable_vat_within_value', type_='check')
        batch_op.drop_column('irrecoverable_vat_pence')

    op.drop_index('ix_audit_events_organisation', table_name='audit_events')
    op.drop_index('ix_audit_events_action', table_name='audit_events')
    op.drop_index('ix_audit_events_object_type', table_name='audit_events')
    op.drop_index('ix_audit_events_object', table_name='audit_events')
    op.create_index('ix_audit_events_object', 'audit_events', ['object_type', 'object_id'], unique=False)
    op.create_index('ix_audit_events_organisation_id', 'audit_events', ['organisation_id'], unique=False)
