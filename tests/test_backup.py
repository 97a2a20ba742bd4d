"""Backups that restore (issue 14, item 7): `flask --app dps backup` and `flask --app dps restore`.

Real components throughout: the demo data, a real upload, SQLite's backup API or pg_dump and
pg_restore against the suite's PostgreSQL, a local storage folder, and moto's S3 server over HTTP.
"""
from __future__ import annotations

import io
import itertools
import json
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from werkzeug.datastructures import FileStorage

from dps.extensions import db
from tests.conftest import DEMO_PASSWORD, _pg_admin_dsn, demo_application, make_app, sign_in

UPLOADED = b"\n% uploaded by tests/test_backup.py: these bytes must come back exactly\n"
_targets = itertools.count(1)


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture(scope="module")
def source(database_template, tmp_path_factory) -> Iterator[dict]:
    """The demo, one more document uploaded by a supplier, and a backup of it all to a file."""
    from dps.demo import DEMO_PDF
    from dps.models import Document, User
    from dps.services import documents

    with demo_application(database_template, tmp_path_factory) as app:
        supplier = next(entry for entry in app.config["DEMO_SIGN_INS"] if entry["role"] == "supplier")
        content = DEMO_PDF + UPLOADED
        with app.app_context():
            user = db.session.scalar(select(User).where(User.email == supplier["email"]))
            document = documents.store(user, FileStorage(stream=io.BytesIO(content), filename="backup-test.pdf",
                                                         content_type="application/pdf"))
            db.session.commit()
            document_id = document.id
            document_key = document.storage_key
            document_count = db.session.scalar(select(func.count()).select_from(Document))
        archive = tmp_path_factory.mktemp("backup") / "dps-backup.tar.gz"
        result = run(app, "backup", "--out", str(archive))
        assert result.exit_code == 0, result.output
        head = verified_head(app)
        yield {"app": app, "archive": archive, "output": result.output, "head": head, "supplier": supplier,
               "document_id": document_id, "document_key": document_key, "content": content,
               "document_count": document_count}


def verified_head(app) -> str:
    result = run(app, "audit", "verify")
    assert result.exit_code == 0, result.output
    return result.output.split("Head: ", 1)[1].strip()


@contextmanager
def empty_database(database_template, tmp_path: Path, *, migrated: bool = True) -> Iterator[str]:
    """A database of its own holding no data: migrated (as `db upgrade` leaves it) or bare."""
    if database_template["kind"] == "sqlite":
        path = tmp_path / f"restored-{next(_targets)}.sqlite3"
        if migrated:
            shutil.copyfile(database_template["path"], path)
        yield f"sqlite:///{path}"
        return
    admin_dsn, name = _pg_admin_dsn(database_template["url"])
    target = f"{name}_restore_{next(_targets)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        # A copy of the migrated, empty template is what `db upgrade` leaves; template0 is bare.
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE template0')
    url = make_url(database_template["url"]).set(database=target).render_as_string(hide_password=False)
    try:
        if migrated:
            from flask_migrate import upgrade

            app = make_app(url)
            with app.app_context():
                upgrade()
                db.engine.dispose()
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


@contextmanager
def target_app(url: str, storage_url: str, **extra):
    app = make_app(url, DPS_STORAGE_URL=storage_url, **extra)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def rows_in(app, model) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(model))
        finally:
            db.session.remove()


# The archive ---------------------------------------------------------------------------------------

def test_backup_writes_the_database_documents_and_a_manifest_with_the_audit_head(source):
    from dps.models import AuditEvent

    with tarfile.open(source["archive"], "r:gz") as archive:
        names = archive.getnames()
        manifest = json.load(archive.extractfile("manifest.json"))
        uploaded = archive.extractfile(f"documents/{source['document_key']}").read()
    assert names[-1] == "manifest.json"
    kind = source["app"].config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0].split("+")[0]
    assert manifest["database"]["kind"] == ("postgresql" if kind == "postgresql" else "sqlite")
    assert manifest["database"]["part"] in names
    assert uploaded == source["content"]
    # Every document the database names is in the archive, under its key, with its SHA-256.
    assert manifest["counts"]["documents"] == source["document_count"] > 1
    assert manifest["documents_missing"] == [] and manifest["documents_changed"] == []
    assert sorted(p["name"] for p in manifest["parts"]) == sorted(n for n in names if n != "manifest.json")
    assert manifest["counts"]["tables"]["audit_events"] == rows_in(source["app"], AuditEvent)
    with source["app"].app_context():
        from alembic.script import ScriptDirectory

        from dps.extensions import migrate

        assert [manifest["schema_revision"]] == ScriptDirectory.from_config(migrate.get_config()).get_heads()
    # The head printed and recorded is the chain's head, as `audit verify` prints it.
    head = manifest["audit_head"]
    assert f"{head['id']}:{head['hash']}" == source["head"]
    assert f"Audit head to keep: {source['head']}" in source["output"]


def test_backup_refuses_a_folder_that_does_not_exist(source, tmp_path):
    result = run(source["app"], "backup", "--out", str(tmp_path / "nowhere" / "backup.tar"))
    assert result.exit_code == 1
    assert "does not exist" in result.output


# Restoring -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("migrated", [True, False], ids=["migrated-empty", "bare"])
def test_restore_into_an_empty_database_verifies_the_audit_head_and_documents_come_back(
        source, database_template, tmp_path, migrated):
    from dps.models import AuditEvent, Document

    storage = tmp_path / "restored-documents"
    with empty_database(database_template, tmp_path, migrated=migrated) as url, \
            target_app(url, f"file://{storage}") as restored:
        result = run(restored, "restore", "--from", str(source["archive"]), "--yes")
        assert result.exit_code == 0, result.output
        assert f"ending at the head recorded at backup time, {source['head']}" in result.output

        # `audit verify --head` with the head printed at backup time passes on the restored copy.
        verify = run(restored, "audit", "verify", "--head", source["head"])
        assert verify.exit_code == 0, verify.output
        assert rows_in(restored, AuditEvent) == rows_in(source["app"], AuditEvent)
        assert rows_in(restored, Document) == source["document_count"]
        assert (storage / source["document_key"]).read_bytes() == source["content"]

        # The supplier signs in to the restored service and downloads the document byte for byte.
        browser = restored.test_client()
        assert sign_in(browser, source["supplier"]["email"], DEMO_PASSWORD).status_code == 302
        response = browser.get(f"/documents/{source['document_id']}")
        assert response.status_code == 200
        assert response.data == source["content"]


def tampered_copy(archive: Path, target: Path, member_name: str, *, rewrite_manifest: bool = False) -> None:
    """The archive with one byte of one part changed; the manifest left as it was, or rewritten
    to match (as someone covering their tracks would)."""
    import hashlib

    with tarfile.open(archive, "r:gz") as original, tarfile.open(target, "w:gz") as copy:
        new_sha = None
        for member in original.getmembers():
            data = original.extractfile(member).read()
            if member.name == member_name:
                data = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
                new_sha = hashlib.sha256(data).hexdigest()
            if member.name == "manifest.json" and rewrite_manifest:
                manifest = json.loads(data)
                for part in manifest["parts"]:
                    if part["name"] == member_name:
                        part["sha256"] = new_sha
                data = json.dumps(manifest).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))


def test_a_tampered_archive_is_refused_and_nothing_is_restored(source, database_template, tmp_path):
    from dps.models import Document

    part = f"documents/{source['document_key']}"
    tampered = tmp_path / "tampered.tar.gz"
    tampered_copy(source["archive"], tampered, part)
    storage = tmp_path / "restored-documents"
    with empty_database(database_template, tmp_path) as url, target_app(url, f"file://{storage}") as restored:
        result = run(restored, "restore", "--from", str(tampered), "--yes")
        assert result.exit_code == 1, result.output
        assert f"{part} does not match its SHA-256 in the manifest" in result.output
        assert "nothing was restored" in result.output
        assert rows_in(restored, Document) == 0
        assert not storage.exists() or not any(p.is_file() for p in storage.rglob("*"))


def test_a_document_changed_with_its_manifest_entry_is_caught_by_the_database_record(
        source, database_template, tmp_path):
    part = f"documents/{source['document_key']}"
    tampered = tmp_path / "tampered.tar.gz"
    tampered_copy(source["archive"], tampered, part, rewrite_manifest=True)
    storage = tmp_path / "restored-documents"
    with empty_database(database_template, tmp_path) as url, target_app(url, f"file://{storage}") as restored:
        result = run(restored, "restore", "--from", str(tampered), "--yes")
        assert result.exit_code == 1, result.output
        assert (f"Document {source['document_key']} does not match the SHA-256 the database recorded at upload"
                in result.output)


def test_a_restore_whose_database_does_not_end_at_the_recorded_head_fails(source, database_template, tmp_path):
    """The head in the manifest is the one printed at backup time; a database that does not
    end there (rows cut off, another database's dump) fails the restore's audit check."""
    edited = tmp_path / "other-head.tar.gz"
    with tarfile.open(source["archive"], "r:gz") as original, tarfile.open(edited, "w:gz") as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                manifest["audit_head"]["id"] += 1  # a head the restored chain never reaches
                data = json.dumps(manifest).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    with empty_database(database_template, tmp_path) as url, \
            target_app(url, f"file://{tmp_path / 'restored-documents'}") as restored:
        result = run(restored, "restore", "--from", str(edited), "--yes")
    assert result.exit_code == 1, result.output
    assert "Audit log BROKEN: the head recorded at backup time" in result.output
    assert "is missing" in result.output


def test_a_restore_into_a_database_holding_data_is_refused(source, tmp_path):
    from dps.models import Document

    before = rows_in(source["app"], Document)
    storage = tmp_path / "restored-documents"
    url = source["app"].config["SQLALCHEMY_DATABASE_URI"]
    with target_app(url, f"file://{storage}") as restored:
        result = run(restored, "restore", "--from", str(source["archive"]), "--yes")
    assert result.exit_code == 1, result.output
    assert "is not empty" in result.output and "has rows" in result.output
    assert rows_in(source["app"], Document) == before
    assert not storage.exists()


def test_a_restore_into_a_storage_holding_documents_is_refused(source, database_template, tmp_path):
    storage = tmp_path / "used-storage"
    (storage / "1").mkdir(parents=True)
    (storage / "1" / "someone-elses").write_bytes(b"already here")
    with empty_database(database_template, tmp_path) as url, target_app(url, f"file://{storage}") as restored:
        result = run(restored, "restore", "--from", str(source["archive"]), "--yes")
        assert result.exit_code == 1, result.output
        assert "storage" in result.output and "is not empty" in result.output
        from dps.models import AuditEvent

        assert rows_in(restored, AuditEvent) == 0


# S3 ------------------------------------------------------------------------------------------------

def test_backup_to_s3_restores_into_s3_storage(source, database_template, tmp_path, moto_endpoint, aws_env):
    from dps.storage import S3Storage

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-2")
    for bucket in ("dps-backups", "dps-restored"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    app = source["app"]
    app.config["DPS_S3_ENDPOINT_URL"] = moto_endpoint
    try:
        result = run(app, "backup", "--out", "s3://dps-backups/nightly/dps.tar")
    finally:
        app.config["DPS_S3_ENDPOINT_URL"] = None
    assert result.exit_code == 0, result.output
    assert "s3://dps-backups/nightly/dps.tar" in result.output
    assert s3.head_object(Bucket="dps-backups", Key="nightly/dps.tar")["ContentLength"] > 0

    with empty_database(database_template, tmp_path) as url, \
            target_app(url, "s3://dps-restored/documents", DPS_S3_ENDPOINT_URL=moto_endpoint) as restored:
        result = run(restored, "restore", "--from", "s3://dps-backups/nightly/dps.tar", "--yes")
        assert result.exit_code == 0, result.output
        assert run(restored, "audit", "verify", "--head", source["head"]).exit_code == 0
        stored = S3Storage("dps-restored", "documents", moto_endpoint).get(source["document_key"])
        assert stored == source["content"]
        listed = s3.list_objects_v2(Bucket="dps-restored", Prefix="documents/")["KeyCount"]
        assert listed == source["document_count"]


def test_without_pg_dump_on_path_postgresql_is_refused_plainly_and_sqlite_needs_none(
        source, monkeypatch, tmp_path, is_postgres):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no PostgreSQL client on it
    result = run(source["app"], "backup", "--out", str(tmp_path / "b.tar"))
    if is_postgres:
        assert result.exit_code == 1
        assert "pg_dump is not on PATH" in result.output and "postgresql-client" in result.output
        assert not (tmp_path / "b.tar").exists()
    else:
        assert result.exit_code == 0, result.output
        assert tarfile.is_tarfile(tmp_path / "b.tar")
