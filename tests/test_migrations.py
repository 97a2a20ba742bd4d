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
