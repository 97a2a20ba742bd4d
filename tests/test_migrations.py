"""The schema is made only by migrations; models and migrations agree."""
from __future__ import annotations

from alembic import command
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from dps.extensions import db, migrate
from tests.conftest import make_app


def test_models_and_migrations_agree(app):
    with app.app_context():
        command.check(migrate.get_config())  # raises if autogenerate would find anything


def test_migrations_go_down_and_up_again(app):
    with app.app_context():
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        assert "audit_events" in inspect(db.engine).get_table_names()
        command.check(migrate.get_config())


def test_a_database_behind_the_migrations_says_how_to_upgrade(app, database_url):
    with app.app_context():
        downgrade(revision="base")
        db.engine.dispose()
    fresh = make_app(database_url)
    response = fresh.test_client().get("/sign-in")
    assert response.status_code == 503
    assert "flask --app dps db upgrade" in response.get_data(as_text=True)
    result = fresh.test_cli_runner().invoke(args=["users", "list"])
    assert result.exit_code != 0 and "flask --app dps db upgrade" in result.output
    with fresh.app_context():
        upgrade()
        db.engine.dispose()
    assert fresh.test_client().get("/sign-in").status_code == 200


def test_the_administration_migration_carries_a_working_dps_down_and_up_again(database_template, tmp_path_factory):
    """Migration 0005 on a database holding the demo's data (applications, admissions, call-offs,
    the audit chain): down to the schema before it and up again, nothing lost and the chain whole."""
    from sqlalchemy import func, select, text

    from dps.audit import verify_chain
    from dps.models import Application, Installation, QuestionnaireVersion
    from tests.conftest import demo_application

    with demo_application(database_template, tmp_path_factory) as demo:
        with demo.app_context():
            before = {table: db.session.scalar(text(f"SELECT count(*) FROM {table}"))
                      for table in ("applications", "admissions", "call_offs", "organisations", "audit_events", "lots")}
            db.session.commit()
            downgrade(revision="8cbfe4562bd1")
            legal = db.session.execute(text("SELECT legal_regime FROM agreements")).scalars().all()
            assert "Public Contracts Regulations 2015, regulation 34" in legal
            db.session.commit()
            upgrade()
            command.check(migrate.get_config())
            after = {table: db.session.scalar(text(f"SELECT count(*) FROM {table}")) for table in before}
            assert after == before
            # What 0005 makes of existing data: the installation, and the version applications answered.
            assert db.session.get(Installation, 1).accountable_body.name == "Oldham Council"
            regimes = set(db.session.scalars(text("SELECT regime FROM agreements")))
            assert "pcr2015_dps" in regimes and regimes <= {"pcr2015_dps", "pa2023_dynamic_market"}
            versions = set(db.session.scalars(select(QuestionnaireVersion.version)))
            assert versions >= set(db.session.scalars(select(Application.questionnaire_version).distinct()))
            assert db.session.scalar(select(func.count()).select_from(QuestionnaireVersion)
                                     .where(QuestionnaireVersion.published_at.is_not(None))) >= 1
            assert verify_chain().ok
