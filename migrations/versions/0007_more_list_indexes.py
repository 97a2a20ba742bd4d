"""Indexes for the keyset pages of a buyer's lists: its competitions newest first.

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


def downgrade():
    op.drop_index('ix_competitions_buyer_created', table_name='competitions')
