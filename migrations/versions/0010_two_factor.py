"""Two-factor sign-in (TOTP, RFC 6238) and single-use recovery codes.

``users.totp_secret``: the shared secret, encrypted with a key derived from ``DPS_SECRET_KEY``
(dps/services/two_factor.py); NULL when the person has no two-factor sign-in.
``users.totp_enabled_at``: when enrolment completed. ``users.totp_last_step``: the RFC 6238 time
step of the last code accepted, so a code cannot be used twice.

``user_recovery_codes``: ten per person, argon2 hashes only, each used once.

Existing people have no two-factor sign-in; downgrading drops the columns and the table.

Revision ID: a1b2c3d4e5f6
Revises: 9f5b3c4d1e62
Create Date: 2026-12-08 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'a1b2c3d4e5f6'
down_revision = '9f5b3c4d1e62'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE, not a batch: on SQLite a batch copies the table, and the copy would
    # lose the index on lower(name), which SQLite cannot reflect.
    op.add_column('users', sa.Column('totp_secret', sa.String(length=255), nullable=True))
    op.add_column('users', sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
    op.create_table('user_recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_recovery_codes_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_recovery_codes'))
    )
    with op.batch_alter_table('user_recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_recovery_codes_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('user_recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_recovery_codes_user_id'))
    op.drop_table('user_recovery_codes')
    op.drop_column('users', 'totp_last_step')
    op.drop_column('users', 'totp_enabled_at')
    op.drop_column('users', 'totp_secret')
