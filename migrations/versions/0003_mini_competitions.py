"""Mini-competitions: criteria, invitations, clarifications, sealed bids, panel scores and
moderation, the one award per competition, call-offs and invoices.

The budget's invariants are in the database too: UNIQUE on a competition's award and call-off,
and CHECK that a call-off's paid amount stays within its value.

Revision ID: e2d857408d4a
Revises: 9822be4d50f4
Create Date: 2026-11-22 20:29:03.038185

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e2d857408d4a'
down_revision = '9822be4d50f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('competitions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=40), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('buyer_organisation_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('estimated_value_pence', sa.BigInteger(), nullable=False),
    sa.Column('allocation_id', sa.Integer(), nullable=False),
    sa.Column('clarification_deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('tender_deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('standstill', sa.Boolean(), nullable=False),
    sa.Column('standstill_days', sa.Integer(), nullable=False),
    sa.Column('price_formula', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('opened_by_id', sa.Integer(), nullable=True),
    sa.Column('closed_without_award_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('no_award_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("price_formula IN ('lowest_price_ratio', 'linear_from_lowest')", name=op.f('ck_competitions_price_formula')),
    sa.CheckConstraint('cancelled_at IS NULL OR length(cancel_reason) > 0', name=op.f('ck_competitions_cancellation_has_reason')),
    sa.CheckConstraint('clarification_deadline < tender_deadline', name=op.f('ck_competitions_clarifications_before_tenders')),
    sa.CheckConstraint('estimated_value_pence > 0', name=op.f('ck_competitions_estimated_value_positive')),
    sa.CheckConstraint('standstill_days >= 0', name=op.f('ck_competitions_standstill_not_negative')),
    sa.ForeignKeyConstraint(['allocation_id'], ['allocations.id'], name=op.f('fk_competitions_allocation_id_allocations')),
    sa.ForeignKeyConstraint(['buyer_organisation_id'], ['organisations.id'], name=op.f('fk_competitions_buyer_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_competitions_created_by_id_users')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_competitions_lot_id_lots')),
    sa.ForeignKeyConstraint(['opened_by_id'], ['users.id'], name=op.f('fk_competitions_opened_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_competitions')),
    sa.UniqueConstraint('reference', name=op.f('uq_competitions_reference'))
    )
    with op.batch_alter_table('competitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_competitions_allocation_id'), ['allocation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_competitions_buyer_organisation_id'), ['buyer_organisation_id'], unique=False)
        batch_op.create_index('ix_competitions_lot_deadline', ['lot_id', 'tender_deadline'], unique=False)

    op.create_table('bids',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('price_pence', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('receipt_reference', sa.String(length=40), nullable=True),
    sa.CheckConstraint("state <> 'submitted' OR submitted_at IS NOT NULL", name=op.f('ck_bids_submitted_has_receipt')),
    sa.CheckConstraint("state IN ('draft', 'submitted', 'withdrawn')", name=op.f('ck_bids_state')),
    sa.CheckConstraint('price_pence IS NULL OR price_pence > 0', name=op.f('ck_bids_price_positive')),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_bids_competition_id_competitions')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_bids_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bids')),
    sa.UniqueConstraint('competition_id', 'organisation_id', name='uq_bids_pair')
    )
    with op.batch_alter_table('bids', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bids_competition_id'), ['competition_id'], unique=False)

    op.create_table('clarifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('asked_by_organisation_id', sa.Integer(), nullable=False),
    sa.Column('asked_by_id', sa.Integer(), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('asked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_question', sa.Text(), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['answered_by_id'], ['users.id'], name=op.f('fk_clarifications_answered_by_id_users')),
    sa.ForeignKeyConstraint(['asked_by_id'], ['users.id'], name=op.f('fk_clarifications_asked_by_id_users')),
    sa.ForeignKeyConstraint(['asked_by_organisation_id'], ['organisations.id'], name=op.f('fk_clarifications_asked_by_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_clarifications_competition_id_competitions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clarifications'))
    )
    with op.batch_alter_table('clarifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clarifications_competition_id'), ['competition_id'], unique=False)

    op.create_table('competition_documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_competition_documents_competition_id_competitions')),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_competition_documents_document_id_documents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_competition_documents')),
    sa.UniqueConstraint('competition_id', 'document_id', name='uq_competition_documents_pair')
    )
    with op.batch_alter_table('competition_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_competition_documents_competition_id'), ['competition_id'], unique=False)

    op.create_table('criteria',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('word_limit', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('quality', 'price', 'social_value')", name=op.f('ck_criteria_kind')),
    sa.CheckConstraint('weight > 0 AND weight <= 100', name=op.f('ck_criteria_weight_range')),
    sa.CheckConstraint('word_limit IS NULL OR word_limit > 0', name=op.f('ck_criteria_word_limit_positive')),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_criteria_competition_id_competitions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_criteria'))
    )
    with op.batch_alter_table('criteria', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_criteria_competition_id'), ['competition_id'], unique=False)

    op.create_table('invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('invited_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_invitations_competition_id_competitions')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_invitations_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitations')),
    sa.UniqueConstraint('competition_id', 'organisation_id', name='uq_invitations_pair')
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_competition_id'), ['competition_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitations_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('panel_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('declared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('conflicted', sa.Boolean(), nullable=True),
    sa.Column('declaration', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_panel_members_competition_id_competitions')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_panel_members_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_panel_members')),
    sa.UniqueConstraint('competition_id', 'user_id', name='uq_panel_members_pair')
    )
    with op.batch_alter_table('panel_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_panel_members_competition_id'), ['competition_id'], unique=False)

    op.create_table('awards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('bid_id', sa.Integer(), nullable=False),
    sa.Column('value_pence', sa.BigInteger(), nullable=False),
    sa.Column('not_best_reason', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=False),
    sa.Column('standstill_ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('standstill_ends_at IS NULL OR standstill_ends_at > decided_at', name=op.f('ck_awards_standstill_after_decision')),
    sa.CheckConstraint('value_pence > 0', name=op.f('ck_awards_value_positive')),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_awards_bid_id_bids')),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_awards_competition_id_competitions')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_awards_decided_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_awards')),
    sa.UniqueConstraint('competition_id', name=op.f('uq_awards_competition_id'))
    )
    op.create_table('bid_answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bid_id', sa.Integer(), nullable=False),
    sa.Column('criterion_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_bid_answers_bid_id_bids')),
    sa.ForeignKeyConstraint(['criterion_id'], ['criteria.id'], name=op.f('fk_bid_answers_criterion_id_criteria')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bid_answers')),
    sa.UniqueConstraint('bid_id', 'criterion_id', name='uq_bid_answers_pair')
    )
    op.create_table('bid_documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bid_id', sa.Integer(), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_bid_documents_bid_id_bids')),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_bid_documents_document_id_documents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bid_documents')),
    sa.UniqueConstraint('bid_id', 'document_id', name='uq_bid_documents_pair'),
    sa.UniqueConstraint('document_id', name=op.f('uq_bid_documents_document_id'))
    )
    op.create_table('moderated_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bid_id', sa.Integer(), nullable=False),
    sa.Column('criterion_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('justification', sa.Text(), nullable=False),
    sa.Column('moderated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('moderated_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('length(justification) > 0', name=op.f('ck_moderated_scores_justified')),
    sa.CheckConstraint('score >= 0 AND score <= 100', name=op.f('ck_moderated_scores_score_range')),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_moderated_scores_bid_id_bids')),
    sa.ForeignKeyConstraint(['criterion_id'], ['criteria.id'], name=op.f('fk_moderated_scores_criterion_id_criteria')),
    sa.ForeignKeyConstraint(['moderated_by_id'], ['users.id'], name=op.f('fk_moderated_scores_moderated_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_moderated_scores')),
    sa.UniqueConstraint('bid_id', 'criterion_id', name='uq_moderated_scores_pair')
    )
    with op.batch_alter_table('moderated_scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_moderated_scores_bid_id'), ['bid_id'], unique=False)

    op.create_table('scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bid_id', sa.Integer(), nullable=False),
    sa.Column('criterion_id', sa.Integer(), nullable=False),
    sa.Column('panel_member_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('justification', sa.Text(), nullable=False),
    sa.Column('scored_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(justification) > 0', name=op.f('ck_scores_justified')),
    sa.CheckConstraint('score >= 0 AND score <= 100', name=op.f('ck_scores_score_range')),
    sa.ForeignKeyConstraint(['bid_id'], ['bids.id'], name=op.f('fk_scores_bid_id_bids')),
    sa.ForeignKeyConstraint(['criterion_id'], ['criteria.id'], name=op.f('fk_scores_criterion_id_criteria')),
    sa.ForeignKeyConstraint(['panel_member_id'], ['panel_members.id'], name=op.f('fk_scores_panel_member_id_panel_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scores')),
    sa.UniqueConstraint('bid_id', 'criterion_id', 'panel_member_id', name='uq_scores_triple')
    )
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scores_bid_id'), ['bid_id'], unique=False)

    op.create_table('call_offs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=40), nullable=False),
    sa.Column('competition_id', sa.Integer(), nullable=False),
    sa.Column('award_id', sa.Integer(), nullable=False),
    sa.Column('supplier_organisation_id', sa.Integer(), nullable=False),
    sa.Column('buyer_organisation_id', sa.Integer(), nullable=False),
    sa.Column('allocation_id', sa.Integer(), nullable=False),
    sa.Column('value_pence', sa.BigInteger(), nullable=False),
    sa.Column('paid_pence', sa.BigInteger(), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_on >= starts_on', name=op.f('ck_call_offs_period')),
    sa.CheckConstraint('paid_pence >= 0 AND paid_pence <= value_pence', name=op.f('ck_call_offs_paid_within_value')),
    sa.CheckConstraint('value_pence > 0', name=op.f('ck_call_offs_value_positive')),
    sa.ForeignKeyConstraint(['allocation_id'], ['allocations.id'], name=op.f('fk_call_offs_allocation_id_allocations')),
    sa.ForeignKeyConstraint(['award_id'], ['awards.id'], name=op.f('fk_call_offs_award_id_awards')),
    sa.ForeignKeyConstraint(['buyer_organisation_id'], ['organisations.id'], name=op.f('fk_call_offs_buyer_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['competition_id'], ['competitions.id'], name=op.f('fk_call_offs_competition_id_competitions')),
    sa.ForeignKeyConstraint(['supplier_organisation_id'], ['organisations.id'], name=op.f('fk_call_offs_supplier_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call_offs')),
    sa.UniqueConstraint('award_id', name=op.f('uq_call_offs_award_id')),
    sa.UniqueConstraint('competition_id', name=op.f('uq_call_offs_competition_id')),
    sa.UniqueConstraint('reference', name=op.f('uq_call_offs_reference'))
    )
    with op.batch_alter_table('call_offs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_offs_allocation_id'), ['allocation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_offs_buyer_organisation_id'), ['buyer_organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_offs_supplier_organisation_id'), ['supplier_organisation_id'], unique=False)

    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_off_id', sa.Integer(), nullable=False),
    sa.Column('supplier_reference', sa.String(length=100), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_invoices_amount_positive')),
    sa.ForeignKeyConstraint(['call_off_id'], ['call_offs.id'], name=op.f('fk_invoices_call_off_id_call_offs')),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_invoices_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices'))
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoices_call_off_id'), ['call_off_id'], unique=False)



def downgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoices_call_off_id'))

    op.drop_table('invoices')
    with op.batch_alter_table('call_offs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_offs_supplier_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_call_offs_buyer_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_call_offs_allocation_id'))

    op.drop_table('call_offs')
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scores_bid_id'))

    op.drop_table('scores')
    with op.batch_alter_table('moderated_scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_moderated_scores_bid_id'))

    op.drop_table('moderated_scores')
    op.drop_table('bid_documents')
    op.drop_table('bid_answers')
    op.drop_table('awards')
    with op.batch_alter_table('panel_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_panel_members_competition_id'))

    op.drop_table('panel_members')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_invitations_competition_id'))

    op.drop_table('invitations')
    with op.batch_alter_table('criteria', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_criteria_competition_id'))

    op.drop_table('criteria')
    with op.batch_alter_table('competition_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_competition_documents_competition_id'))

    op.drop_table('competition_documents')
    with op.batch_alter_table('clarifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clarifications_competition_id'))

    op.drop_table('clarifications')
    with op.batch_alter_table('bids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bids_competition_id'))

    op.drop_table('bids')
    with op.batch_alter_table('competitions', schema=None) as batch_op:
        batch_op.drop_index('ix_competitions_lot_deadline')
        batch_op.drop_index(batch_op.f('ix_competitions_buyer_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_competitions_allocation_id'))

    op.drop_table('competitions')
