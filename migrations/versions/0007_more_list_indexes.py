"""Indexes for the keyset pages of buyers' and suppliers' lists: a buyer's competitions and its
call-offs newest first, and a supplier's invitations the latest first.

Each holds its list's rows in page order after the organisation, so a page reads only the rows
it shows instead of sorting all of the organisation's rows. A competition's invited suppliers
need none: they are read through uq_invitations_pair and ix_organisations_name_lower. Plain
CREATE INDEX, no table is copied.

Revision ID: 7d3f1a2b9c40
Revises: 6b2e9f4c1a70
Create Date: 2026-12-02 01:05:00
"""
from alembic import op

revision = '7d3f1a2b9c40'
down_revision = '6b2e9f4c1a70'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_competitions_buyer_created', 'competitions',
                    ['buyer_organisation_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_call_offs_buyer_created', 'call_offs',
                    ['buyer_organisation_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_invitations_organisation_invited', 'invitations',
                    ['organisation_id', 'invited_at', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_invitations_organisation_invited', table_name='invitations')
    op.drop_index('ix_call_offs_buyer_created', table_name='call_offs')
    op.drop_index('ix_competitions_buyer_created', table_name='competitions')
