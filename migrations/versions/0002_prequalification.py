"""Pre-qualification: applications, answers, documents, admissions, renewals; suppliers' Part 1
details; each lot's own insurance levels and case studies.

Existing lots get zero insurance minimums and 2 case studies (server defaults used only to fill
existing rows, then dropped: the application sets every value).

Revision ID: 9822be4d50f4
Revises: 998ee93ec24a
Create Date: 2026-11-22 19:50:24.633116

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9822be4d50f4'
down_revision = '998ee93ec24a'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('questionnaire_version', sa.String(length=40), nullable=False),
    sa.Column('previous_application_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('supplier_snapshot', sa.JSON(), nullable=True),
    sa.Column('decision_due_on', sa.Date(), nullable=True),
    sa.Column('extended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('extended_by_id', sa.Integer(), nullable=True),
    sa.Column('extension_reason', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('extension_reason IS NULL OR extended_at IS NOT NULL', name=op.f('ck_applications_extension_recorded')),
    sa.CheckConstraint('submitted_at IS NOT NULL OR decision_due_on IS NULL', name=op.f('ck_applications_due_only_when_submitted')),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_applications_agreement_id_agreements')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_applications_created_by_id_users')),
    sa.ForeignKeyConstraint(['extended_by_id'], ['users.id'], name=op.f('fk_applications_extended_by_id_users')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_applications_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['previous_application_id'], ['applications.id'], name=op.f('fk_applications_previous_application_id_applications')),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'], name=op.f('fk_applications_submitted_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_applications'))
    )
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.create_index('ix_applications_due', ['decision_due_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_applications_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('storage_key', sa.String(length=200), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('size_bytes >= 0', name=op.f('ck_documents_size_not_negative')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_documents_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_documents_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_documents')),
    sa.UniqueConstraint('storage_key', name=op.f('uq_documents_storage_key'))
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_documents_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('renewal_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('responded_by_id', sa.Integer(), nullable=True),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_renewal_requests_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_renewal_requests_requested_by_id_users')),
    sa.ForeignKeyConstraint(['responded_by_id'], ['users.id'], name=op.f('fk_renewal_requests_responded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_renewal_requests'))
    )
    with op.batch_alter_table('renewal_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_renewal_requests_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.String(length=60), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_answers_application_id_applications')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_answers')),
    sa.UniqueConstraint('application_id', 'question_id', name='uq_answers_application_question')
    )
    op.create_table('application_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=20), nullable=True),
    sa.Column('reasons', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("decision <> 'rejected' OR length(reasons) > 0", name=op.f('ck_application_lots_rejection_has_reasons')),
    sa.CheckConstraint("decision IS NULL OR decision IN ('admitted', 'rejected')", name=op.f('ck_application_lots_decision')),
    sa.CheckConstraint('decision IS NULL OR decided_at IS NOT NULL', name=op.f('ck_application_lots_decided_at_recorded')),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_application_lots_application_id_applications')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_application_lots_decided_by_id_users')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_application_lots_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application_lots')),
    sa.UniqueConstraint('application_id', 'lot_id', name='uq_application_lots_application_lot')
    )
    with op.batch_alter_table('application_lots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_lots_application_id'), ['application_id'], unique=False)

    op.create_table('admissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('application_lot_id', sa.Integer(), nullable=False),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status = 'admitted' OR length(status_reason) > 0", name=op.f('ck_admissions_standing_change_has_reason')),
    sa.CheckConstraint("status IN ('admitted', 'suspended', 'removed')", name=op.f('ck_admissions_status')),
    sa.ForeignKeyConstraint(['application_lot_id'], ['application_lots.id'], name=op.f('fk_admissions_application_lot_id_application_lots')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_admissions_lot_id_lots')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_admissions_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admissions')),
    sa.UniqueConstraint('organisation_id', 'lot_id', name='uq_admissions_organisation_lot')
    )
    with op.batch_alter_table('admissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admissions_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_admissions_organisation_id'), ['organisation_id'], unique=False)

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('public_liability_min_pence', sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column('professional_indemnity_min_pence', sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column('case_studies_required', sa.Integer(), nullable=False, server_default="2"))
        batch_op.create_check_constraint(
            op.f('ck_lots_insurance_not_negative'),
            "public_liability_min_pence >= 0 AND professional_indemnity_min_pence >= 0")
        batch_op.create_check_constraint(op.f('ck_lots_case_studies_not_negative'), "case_studies_required >= 0")
    with op.batch_alter_table('lots', schema=None) as batch_op:
        for column in ('public_liability_min_pence', 'professional_indemnity_min_pence', 'case_studies_required'):
            batch_op.alter_column(column, server_default=None)

    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trading_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('address_line_1', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('address_line_2', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('town', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('postcode', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('vat_number', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('parent_company', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('contact_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('contact_email', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('contact_phone', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('identity_changed_at', sa.DateTime(timezone=True), nullable=True))



def downgrade():
    with op.batch_alter_table('organisations', schema=None) as batch_op:
        batch_op.drop_column('identity_changed_at')
        batch_op.drop_column('contact_phone')
        batch_op.drop_column('contact_email')
        batch_op.drop_column('contact_name')
        batch_op.drop_column('parent_company')
        batch_op.drop_column('vat_number')
        batch_op.drop_column('postcode')
        batch_op.drop_column('town')
        batch_op.drop_column('address_line_2')
        batch_op.drop_column('address_line_1')
        batch_op.drop_column('trading_name')

    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_lots_case_studies_not_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_lots_insurance_not_negative'), type_='check')
        batch_op.drop_column('case_studies_required')
        batch_op.drop_column('professional_indemnity_min_pence')
        batch_op.drop_column('public_liability_min_pence')

    with op.batch_alter_table('admissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admissions_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_admissions_lot_id'))

    op.drop_table('admissions')
    with op.batch_alter_table('application_lots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_lots_application_id'))

    op.drop_table('application_lots')
    op.drop_table('answers')
    with op.batch_alter_table('renewal_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_renewal_requests_organisation_id'))

    op.drop_table('renewal_requests')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_documents_organisation_id'))

    op.drop_table('documents')
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_applications_organisation_id'))
        batch_op.drop_index('ix_applications_due')

    op.drop_table('applications')
