"""Background jobs: the export jobs of the Exports page, and procrastinate's queue on PostgreSQL.

``export_jobs``: who asked for which export and period, how far a worker has got, and the file
kept for them (dps.models.jobs.ExportJob).

On PostgreSQL, the job queue's own tables and functions (``procrastinate_*``), made by
procrastinate's own SQL shipped in the package: its first schema and then every migration it
ships, in order, each in a transaction of its own, up to the version the project pins (3.10.0).
Those files are never changed
once released, so this migration makes the same schema whichever later procrastinate is
installed. **Upgrading procrastinate**: a new Alembic migration applies the files the new
version adds to ``procrastinate/sql/migrations`` (``_pre_`` files are meant to run before the
new code is deployed, ``_post_`` ones after; a migration run before the deploy, with the post
files in the next one, keeps old workers working), and the pin moves with it;
``tests/test_jobs.py`` compares the migrated schema with the installed version's ``schema.sql``,
so a version bump without its migration fails the suite. On SQLite the embedded queue (huey)
keeps its jobs in a file of its own, so nothing is made here.

Revision ID: 8e4a2b3c0d51
Revises: 7d3f1a2b9c40
Create Date: 2026-12-03 10:00:00
"""
from importlib import resources

import sqlalchemy as sa
from alembic import op

revision = '8e4a2b3c0d51'
down_revision = '7d3f1a2b9c40'
branch_labels = None
depends_on = None

# procrastinate 3.10.0's schema: its initial SQL and each migration it ships, in order.
PROCRASTINATE_SQL = (
    "00.00.00_01_initial.sql",
    "00.05.00_01_drop_started_at_column.sql",
    "00.05.00_02_drop_started_at_column.sql",
    "00.05.00_03_drop_procrastinate_version_table.sql",
    "00.06.00_01_fix_procrastinate_fetch_job.sql",
    "00.07.01_01_fix_trigger_status_events_insert.sql",
    "00.08.01_01_add_queueing_lock_column.sql",
    "00.10.00_01_close_fetch_job_race_condition.sql",
    "00.10.00_02_add_defer_job_function.sql",
    "00.11.00_03_add_procrastinate_periodic_defers.sql",
    "00.12.00_01_add_foreign_key_index.sql",
    "00.14.00_01_add_locks_to_periodic_defer.sql",
    "00.15.02_01_fix_procrastinate_defer_periodic_job.sql",
    "00.16.00_01_add_finish_job_and_retry_job_functions.sql",
    "00.17.00_01_add_trigger_on_job_deletion.sql",
    "00.17.00_02_delete_finished_jobs.sql",
    "00.17.00_03_add_checks_to_finish_job.sql",
    "00.17.00_04_add_checks_to_retry_job.sql",
    "00.18.01_01_fix_finish_job_compat_issue.sql",
    "00.19.00_01_add_index_on_procrastinate_jobs.sql",
    "00.22.00_01_add_kwargs_to_defer_periodic_job.sql",
    "00.23.00_01_null_locks_excluded.sql",
    "01.00.00_01_remove_old_finish_job_function.sql",
    "01.01.01_01_job_id_bigint.sql",
    "02.00.03_01_add_job_priority.sql",
    "02.05.00_01_add_periodic_job_priority.sql",
    "02.06.00_01_add_cancel_states.sql",
    "02.08.00_01_add_additional_params_to_retry_job.sql",
    "02.14.01_01_add_indexes_for_fetch_job.sql",
    "03.00.00_01_pre_cancel_notification.sql",
    "03.00.00_50_post_cancel_notification.sql",
    "03.01.00_01_pre_add_heartbeat.sql",
    "03.01.00_50_post_add_heartbeat.sql",
    "03.02.00_01_pre_batch_defer_jobs.sql",
    "03.02.00_50_post_batch_defer_jobs.sql",
    "03.03.00_01_pre_priority_lock_fetch_job.sql",
    "03.04.00_01_pre_add_retry_failed_job_procedure.sql",
    "03.04.00_50_post_add_retry_failed_job_procedure.sql",
)

# Everything procrastinate made, found by its prefix: functions (their triggers go with them),
# tables, then its enum and composite types.
DROP_PROCRASTINATE = r"""
DO $$
DECLARE
    found record;
BEGIN
    FOR found IN SELECT p.oid::regprocedure AS name FROM pg_proc p
                 WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'procrastinate\_%'
    LOOP
        EXECUTE format('DROP ROUTINE %s CASCADE', found.name);
    END LOOP;
    FOR found IN SELECT c.oid::regclass AS name FROM pg_class c
                 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
                   AND c.relname LIKE 'procrastinate\_%'
    LOOP
        EXECUTE format('DROP TABLE %s CASCADE', found.name);
    END LOOP;
    FOR found IN SELECT t.oid::regtype AS name FROM pg_type t
                 WHERE t.typnamespace = current_schema()::regnamespace AND t.typname LIKE 'procrastinate\_%'
                   AND (t.typtype = 'e' OR (t.typtype = 'c' AND EXISTS (
                        SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))
    LOOP
        EXECUTE format('DROP TYPE %s CASCADE', found.name);
    END LOOP;
END
$$;
"""


def upgrade():
    op.create_table(
        'export_jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('requested_by_id', sa.Integer(), nullable=False),
        sa.Column('export', sa.String(length=40), nullable=False),
        sa.Column('period_from', sa.Date(), nullable=True),
        sa.Column('period_to', sa.Date(), nullable=True),
        sa.Column('agreement', sa.String(length=40), nullable=True),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('rows_done', sa.Integer(), nullable=False),
        sa.Column('rows_total', sa.Integer(), nullable=True),
        sa.Column('file_key', sa.String(length=200), nullable=True),
        sa.Column('file_size', sa.BigInteger(), nullable=True),
        sa.Column('file_sha256', sa.String(length=64), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.CheckConstraint('finished_at IS NULL OR failed_at IS NULL', name=op.f('ck_export_jobs_one_ending')),
        sa.CheckConstraint('finished_at IS NULL OR (started_at IS NOT NULL AND file_key IS NOT NULL '
                           'AND file_size IS NOT NULL)', name=op.f('ck_export_jobs_done_has_its_file')),
        sa.CheckConstraint('failed_at IS NULL OR error IS NOT NULL', name=op.f('ck_export_jobs_failure_says_why')),
        sa.CheckConstraint('rows_done >= 0 AND (rows_total IS NULL OR rows_total >= 0)',
                           name=op.f('ck_export_jobs_rows_counted')),
        sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'],
                                name=op.f('fk_export_jobs_requested_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_export_jobs')),
    )
    op.create_index('ix_export_jobs_requested_by_id_id', 'export_jobs', ['requested_by_id', 'id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        migrations = resources.files("procrastinate.sql.migrations")
        # Each file in a transaction of its own, as procrastinate applies them: one adds values to
        # an enum that a later one uses, which PostgreSQL allows only once they are committed.
        with op.get_context().autocommit_block():
            # On the driver's own connection: the files are plain SQL, with % and : that a
            # parameter-parsing layer would take for placeholders. Sent as one query, a file's
            # statements run in one implicit transaction.
            driver = op.get_bind().connection.driver_connection
            for name in PROCRASTINATE_SQL:
                driver.execute(migrations.joinpath(name).read_text(encoding="utf-8"))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.get_bind().connection.driver_connection.execute(DROP_PROCRASTINATE)
    op.drop_index('ix_export_jobs_requested_by_id_id', table_name='export_jobs')
    op.drop_table('export_jobs')
