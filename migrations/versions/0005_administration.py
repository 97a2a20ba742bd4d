"""Administration: the installation, several agreements (with their regime and publication),
lots' scope, CPV codes and closing, members' status and dates, and questionnaire versions held
in the database.

Existing data is carried over: each agreement keeps its regime (read from its old free-text
legal_regime), counts as published (it was public before), and the one installation row names the
first agreement's accountable body. Members of the kinds that are contracting authorities become
contracting authorities. The questionnaire version applications answered until now, shipped as
dps/questionnaires/ccin-sq-2020-04.yaml, becomes a published version of the first agreement, so
every application keeps pointing at the exact questions it answered (now a foreign key).

A published questionnaire version is fixed: triggers refuse an UPDATE or DELETE of it, on
PostgreSQL and SQLite. On SQLite a batch operation on questionnaire_versions would copy the table
and lose them: later migrations must create them again if they do that.

Revision ID: 5a1d0c9e7f21
Revises: 8cbfe4562bd1
Create Date: 2026-12-01 22:30:18.767731
"""
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
import yaml
from alembic import op

revision = '5a1d0c9e7f21'
down_revision = '8cbfe4562bd1'
branch_labels = None
depends_on = None

SHIPPED_VERSION = "ccin-sq-2020-04"
SHIPPED_FILE = Path(__file__).resolve().parents[2] / "dps" / "questionnaires" / f"{SHIPPED_VERSION}.yaml"
CONTRACTING_AUTHORITY_KINDS = "('council', 'combined_authority', 'town_parish_community_council')"


def upgrade():
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    if bind.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)

    op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('accountable_body_id', sa.Integer(), nullable=False),
    sa.Column('set_up_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_installation_single_row')),
    sa.ForeignKeyConstraint(['accountable_body_id'], ['organisations.id'], name=op.f('fk_installation_accountable_body_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installation'))
    )
    op.create_table('questionnaire_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_questionnaire_versions_agreement_id_agreements')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_questionnaire_versions_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_questionnaire_versions')),
    sa.UniqueConstraint('version', name=op.f('uq_questionnaire_versions_version'))
    )
    op.create_index(op.f('ix_questionnaire_versions_agreement_id'), 'questionnaire_versions', ['agreement_id'], unique=False)

    # Agreements: a regime code instead of free text; published (they were all public before).
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('regime', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
    agreements = sa.table('agreements', sa.column('regime'), sa.column('created_at'), sa.column('published_at'),
                          sa.column('legal_regime'))
    op.execute(agreements.update().values(
        regime=sa.case((agreements.c.legal_regime.like('%Procurement Act%'), 'pa2023_dynamic_market'),
                       else_='pcr2015_dps'),
        created_at=now, published_at=now))
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.alter_column('regime', nullable=False)
        batch_op.alter_column('created_at', nullable=False)
        batch_op.drop_column('legal_regime')
        batch_op.create_check_constraint(op.f('ck_agreements_regime'),
                                         "regime IN ('pcr2015_dps', 'pa2023_dynamic_market')")

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('cpv_codes', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_lots_agreement_id'), ['agreement_id'], unique=False)
        batch_op.create_check_constraint(op.f('ck_lots_number_positive'), 'number > 0')

    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contracting_authority', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('joined_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('left_on', sa.Date(), nullable=True))
        batch_op.create_check_constraint(op.f('ck_organisations_left_after_joining'),
                                         'left_on IS NULL OR joined_on IS NULL OR left_on > joined_on')
    op.execute(f"UPDATE organisations SET contracting_authority = (kind IN {CONTRACTING_AUTHORITY_KINDS}) "
               "WHERE kind <> 'supplier'")

    first = bind.execute(sa.text("SELECT id, accountable_body_id FROM agreements ORDER BY id LIMIT 1")).first()
    if first is not None:
        op.execute(sa.text("INSERT INTO installation (id, accountable_body_id, set_up_at) VALUES (1, :body, :now)")
                   .bindparams(body=first.accountable_body_id, now=now))
        text = SHIPPED_FILE.read_text(encoding="utf-8")
        op.execute(sa.text(
            "INSERT INTO questionnaire_versions (agreement_id, version, title, source, sha256, uploaded_at, published_at) "
            "VALUES (:agreement, :version, :title, :source, :sha, :now, :now)").bindparams(
                agreement=first.id, version=SHIPPED_VERSION, title=yaml.safe_load(text)["title"], source=text,
                sha=hashlib.sha256(text.encode("utf-8")).hexdigest(), now=now))

    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_applications_questionnaire_version_questionnaire_versions'),
                                    'questionnaire_versions', ['questionnaire_version'], ['version'])

    _create_questionnaire_triggers()


def _create_questionnaire_triggers():
    message = "a published questionnaire version cannot be changed or deleted"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION questionnaire_versions_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{message}';
            END $$;
        """)
        op.execute("CREATE TRIGGER questionnaire_versions_fixed BEFORE UPDATE OR DELETE ON questionnaire_versions "
                   "FOR EACH ROW WHEN (OLD.published_at IS NOT NULL) EXECUTE FUNCTION questionnaire_versions_fixed()")
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER questionnaire_versions_fixed_{operation.lower()} BEFORE {operation} "
                       f"ON questionnaire_versions WHEN OLD.published_at IS NOT NULL "
                       f"BEGIN SELECT RAISE(ABORT, '{message}'); END")


def _drop_questionnaire_triggers():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER questionnaire_versions_fixed ON questionnaire_versions")
        op.execute("DROP FUNCTION questionnaire_versions_fixed()")
    else:
        op.execute("DROP TRIGGER questionnaire_versions_fixed_update")
        op.execute("DROP TRIGGER questionnaire_versions_fixed_delete")


def downgrade():
    _drop_questionnaire_triggers()
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_applications_questionnaire_version_questionnaire_versions'), type_='foreignkey')

    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_organisations_left_after_joining'), type_='check')
        batch_op.drop_column('left_on')
        batch_op.drop_column('joined_on')
        batch_op.drop_column('contracting_authority')

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_lots_number_positive'), type_='check')
        batch_op.drop_index(batch_op.f('ix_lots_agreement_id'))
        batch_op.drop_column('closed_at')
        batch_op.drop_column('cpv_codes')
        batch_op.drop_column('scope')

    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('legal_regime', sa.String(length=100), server_default='', nullable=False))
    op.execute("UPDATE agreements SET legal_regime = CASE regime WHEN 'pa2023_dynamic_market' "
               "THEN 'Procurement Act 2023, sections 34 to 40' "
               "ELSE 'Public Contracts Regulations 2015, regulation 34' END")
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_agreements_regime'), type_='check')
        batch_op.drop_column('published_at')
        batch_op.drop_column('created_at')
        batch_op.drop_column('regime')

    op.drop_index(op.f('ix_questionnaire_versions_agreement_id'), table_name='questionnaire_versions')
    op.drop_table('questionnaire_versions')
    op.drop_table('installation')
