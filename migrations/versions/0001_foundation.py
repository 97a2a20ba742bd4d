"""Foundation: organisations, users, agreements and lots, the network budget, the audit log.

The audit log is made append-only here by database triggers (DESIGN 5): UPDATE and DELETE are
refused on SQLite and PostgreSQL, and TRUNCATE too on PostgreSQL (SQLite has no TRUNCATE).

Revision ID: 998ee93ec24a
Revises: 
Create Date: 2026-11-22 19:38:00.840834

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '998ee93ec24a'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('budget_years',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=10), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.CheckConstraint('ends_on > starts_on', name=op.f('ck_budget_years_period')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_years')),
    sa.UniqueConstraint('label', name=op.f('uq_budget_years_label')),
    sa.UniqueConstraint('starts_on', name=op.f('uq_budget_years_starts_on'))
    )
    op.create_table('organisations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('membership', sa.String(length=20), nullable=True),
    sa.Column('nation', sa.String(length=20), nullable=True),
    sa.Column('identifier_scheme', sa.String(length=20), nullable=True),
    sa.Column('identifier_id', sa.String(length=40), nullable=True),
    sa.Column('legal_form', sa.String(length=40), nullable=True),
    sa.Column('registration_number', sa.String(length=40), nullable=True),
    sa.Column('size', sa.String(length=10), nullable=True),
    sa.Column('is_vcse', sa.Boolean(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('council', 'combined_authority', 'town_parish_community_council', 'opposition_group', 'organisation', 'network', 'supplier')", name=op.f('ck_organisations_kind')),
    sa.CheckConstraint("legal_form IS NULL OR legal_form IN ('company', 'cic', 'co_operative', 'community_benefit_society', 'charity', 'partnership', 'sole_trader')", name=op.f('ck_organisations_legal_form')),
    sa.CheckConstraint("membership IS NULL OR membership IN ('full', 'associate', 'affiliate')", name=op.f('ck_organisations_membership')),
    sa.CheckConstraint("nation IS NULL OR nation IN ('England', 'Wales', 'Scotland', 'Northern Ireland')", name=op.f('ck_organisations_nation')),
    sa.CheckConstraint("size IS NULL OR size IN ('micro', 'small', 'medium', 'large')", name=op.f('ck_organisations_size')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations')),
    sa.UniqueConstraint('identifier_scheme', 'identifier_id', name='uq_organisations_identifier')
    )
    op.create_table('outbox_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('to_address', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages'))
    )
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_messages_created_at'), ['created_at'], unique=False)

    op.create_table('sign_in_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_attempts'))
    )
    with op.batch_alter_table('sign_in_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_sign_in_attempts_email_at', ['email', 'attempted_at'], unique=False)
        batch_op.create_index('ix_sign_in_attempts_ip_at', ['ip_address', 'attempted_at'], unique=False)

    op.create_table('simulated_clock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('configured', sa.String(length=40), nullable=False),
    sa.Column('anchor_simulated', sa.DateTime(timezone=True), nullable=False),
    sa.Column('anchor_real', sa.DateTime(timezone=True), nullable=False),
    sa.Column('frozen', sa.Boolean(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_simulated_clock_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_simulated_clock'))
    )
    op.create_table('agreements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=50), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('accountable_body_id', sa.Integer(), nullable=False),
    sa.Column('legal_regime', sa.String(length=100), nullable=False),
    sa.Column('nation', sa.String(length=20), nullable=False),
    sa.CheckConstraint("nation IN ('England', 'Wales', 'Scotland', 'Northern Ireland')", name=op.f('ck_agreements_nation')),
    sa.CheckConstraint('ends_on > starts_on', name=op.f('ck_agreements_period')),
    sa.ForeignKeyConstraint(['accountable_body_id'], ['organisations.id'], name=op.f('fk_agreements_accountable_body_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agreements')),
    sa.UniqueConstraint('reference', name=op.f('uq_agreements_reference'))
    )
    op.create_table('budget_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('year_id', sa.Integer(), nullable=False),
    sa.Column('programme', sa.String(length=100), nullable=False),
    sa.Column('total_pence', sa.BigInteger(), nullable=False),
    sa.Column('cap_per_call_off_pence', sa.BigInteger(), nullable=True),
    sa.Column('allocated_pence', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('allocated_pence >= 0 AND allocated_pence <= total_pence', name=op.f('ck_budget_lines_allocated_within_total')),
    sa.CheckConstraint('cap_per_call_off_pence IS NULL OR cap_per_call_off_pence > 0', name=op.f('ck_budget_lines_cap_positive')),
    sa.CheckConstraint('total_pence >= 0', name=op.f('ck_budget_lines_total_not_negative')),
    sa.ForeignKeyConstraint(['year_id'], ['budget_years.id'], name=op.f('fk_budget_lines_year_id_budget_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_lines')),
    sa.UniqueConstraint('year_id', 'programme', name='uq_budget_lines_year_programme')
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('session_version', sa.Integer(), nullable=False),
    sa.Column('email_confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_signed_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('supplier', 'buyer', 'dps_admin', 'auditor')", name=op.f('ck_users_role')),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_users_email_lower_case')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_users_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('allocations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('line_id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('project_title', sa.String(length=200), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('committed_pence', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_allocations_amount_positive')),
    sa.CheckConstraint('committed_pence >= 0 AND committed_pence <= amount_pence', name=op.f('ck_allocations_committed_within_amount')),
    sa.ForeignKeyConstraint(['line_id'], ['budget_lines.id'], name=op.f('fk_allocations_line_id_budget_lines')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_allocations_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_allocations'))
    )
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_allocations_line_id'), ['line_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_allocations_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=320), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=80), nullable=False),
    sa.Column('object_type', sa.String(length=40), nullable=False),
    sa.Column('object_id', sa.String(length=40), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_audit_events_actor_user_id_users')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_audit_events_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_actor_user_id'), ['actor_user_id'], unique=False)
        batch_op.create_index('ix_audit_events_object', ['object_type', 'object_id'], unique=False)
        batch_op.create_index('ix_audit_events_occurred_at', ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_organisation_id'), ['organisation_id'], unique=False)

    _make_audit_log_append_only()

    op.create_table('lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('selection_criteria', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_lots_agreement_id_agreements')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots')),
    sa.UniqueConstraint('agreement_id', 'number', name='uq_lots_agreement_number')
    )
    op.create_table('user_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("purpose IN ('reset_password', 'confirm_email', 'invitation')", name=op.f('ck_user_tokens_purpose')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_tokens_token_hash'))
    )
    with op.batch_alter_table('user_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_tokens_user_id'), ['user_id'], unique=False)



def _make_audit_log_append_only():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{operation.lower()} BEFORE {operation} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: {operation} is not allowed'); END"
            )


def _drop_audit_log_triggers():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")


def downgrade():
    _drop_audit_log_triggers()
    with op.batch_alter_table('user_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_tokens_user_id'))

    op.drop_table('user_tokens')
    op.drop_table('lots')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_organisation_id'))
        batch_op.drop_index('ix_audit_events_occurred_at')
        batch_op.drop_index('ix_audit_events_object')
        batch_op.drop_index(batch_op.f('ix_audit_events_actor_user_id'))

    op.drop_table('audit_events')
    with op.batch_alter_table('allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_allocations_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_allocations_line_id'))

    op.drop_table('allocations')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_organisation_id'))

    op.drop_table('users')
    op.drop_table('budget_lines')
    op.drop_table('agreements')
    op.drop_table('simulated_clock')
    with op.batch_alter_table('sign_in_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_in_attempts_ip_at')
        batch_op.drop_index('ix_sign_in_attempts_email_at')

    op.drop_table('sign_in_attempts')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_messages_created_at'))

    op.drop_table('outbox_messages')
    op.drop_table('organisations')
    op.drop_table('budget_years')
