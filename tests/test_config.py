"""Configuration from DPS_* variables: defaults, production checks, documentation."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dps import config, create_app

ROOT = Path(__file__).resolve().parent.parent


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    with pytest.raises(config.ConfigError, match="DPS_SECRET_KEY"):
        config.load(str(tmp_path), environ={"DPS_ENV": "production", "DPS_DATABASE_URL": "postgresql://db/dps"})


def test_production_app_factory_refuses_too(monkeypatch):
    monkeypatch.setenv("DPS_ENV", "production")
    monkeypatch.delenv("DPS_SECRET_KEY", raising=False)
    monkeypatch.setenv("DPS_DATABASE_URL", "postgresql://db/dps")
    with pytest.raises(config.ConfigError, match="DPS_SECRET_KEY is not set"):
        create_app()


def test_production_without_a_database_refuses_to_start(tmp_path):
    with pytest.raises(config.ConfigError, match="DPS_DATABASE_URL"):
        config.load(str(tmp_path), environ={"DPS_ENV": "production", "DPS_SECRET_KEY": "x" * 64})


def test_production_uses_secure_cookies(tmp_path):
    loaded = config.load(str(tmp_path), environ={"DPS_ENV": "production", "DPS_SECRET_KEY": "k" * 64,
                                                 "DPS_DATABASE_URL": "postgresql://u@db/dps",
                                                 "DPS_CLAMD_URL": "tcp://127.0.0.1:3310"})
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/dps"


def test_embedded_defaults(tmp_path):
    loaded = config.load(str(tmp_path), environ={})
    assert loaded["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'dps.sqlite3'}"
    assert loaded["DPS_STORAGE_URL"] == f"file://{tmp_path / 'documents'}"
    assert loaded["DPS_CLOCK"] is None and loaded["DPS_SMTP_URL"] is None
    assert loaded["DPS_MAX_UPLOAD_MB"] == 20
    # The development secret is generated once, kept in the instance folder, and reused.
    key_file = tmp_path / "secret_key"
    assert key_file.exists() and oct(key_file.stat().st_mode)[-3:] == "600"
    assert config.load(str(tmp_path), environ={})["SECRET_KEY"] == loaded["SECRET_KEY"]


def test_bad_values_name_the_variable(tmp_path):
    with pytest.raises(config.ConfigError, match="DPS_MAX_UPLOAD_MB"):
        config.load(str(tmp_path), environ={"DPS_MAX_UPLOAD_MB": "twenty"})
    with pytest.raises(config.ConfigError, match="DPS_ENV"):
        config.load(str(tmp_path), environ={"DPS_ENV": "staging"})


def test_every_setting_the_code_reads_is_documented_in_the_readme():
    """The README's configuration table and the code cannot drift apart."""
    readme = (ROOT / "README.md").read_text()
    source = "\n".join(p.read_text() for p in (ROOT / "dps").rglob("*.py"))
    read_by_code = set(re.findall(r'"(DPS_[A-Z0-9_]+)"', source)) - {"DPS_TEST_DATABASE_URL"}
    declared = {s.env for s in config.SETTINGS}
    assert read_by_code <= declared, read_by_code - declared
    for name in declared:
        assert f"`{name}`" in readme, f"{name} is missing from the README's configuration table"


def test_a_storage_url_that_cannot_work_stops_the_start(monkeypatch, tmp_path):
    monkeypatch.setenv("DPS_STORAGE_URL", "ftp://files.example.org/dps")
    monkeypatch.setenv("DPS_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with pytest.raises(config.ConfigError, match="DPS_STORAGE_URL must start with file:// or s3://"):
        create_app()
