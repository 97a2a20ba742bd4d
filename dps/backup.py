"""Backups that restore (issue 14, item 7): `flask --app dps backup` and `flask --app dps restore`.

One archive (a tar, gzip-compressed when its name ends in ``.gz`` or ``.tgz``) holds:

- ``database.sqlite3`` (SQLite, taken with the online backup API, consistent while the site
  runs) or ``database.pgdump`` (PostgreSQL, ``pg_dump --format=custom``);
- ``jobs.sqlite3``: the embedded job queue's file, when the service uses it (taken first, so
  every job it holds belongs to a change the database copy already has);
- ``documents/<key>``: every document the database copy refers to (uploads and prepared
  export files), read from the storage, local folder or S3;
- ``manifest.json`` (last): when, the schema revision, the audit chain's head, counts and the
  size and SHA-256 of every other part.

Everything is streamed through temporary files: memory stays flat whatever the size. On
PostgreSQL the document list, the counts and the audit head are read in the very snapshot
``pg_dump`` dumps (``pg_export_snapshot``); on SQLite from the copy itself.

A restore goes only into an empty database and an empty storage. It first reads the whole
archive and checks every part against the manifest (nothing is written if one part is wrong),
then restores the database (SQLite: the file; PostgreSQL: ``pg_restore --no-owner``) and the
documents, checking each again as it is written, and finally verifies the audit chain and that
the head recorded at backup time is in it unchanged.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url

from .exports import deliver
from .extensions import db
from .storage import LocalStorage, S3Storage, Storage, StorageError, check_key, get_storage

FORMAT = "dps-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_PART = "database.sqlite3"
PG_PART = "database.pgdump"
JOBS_PART = "jobs.sqlite3"
DOCUMENTS = "documents/"
CHUNK = 1024 * 1024
PG_CLIENT_HINT = ("install PostgreSQL's client tools of the server's major version (Debian and Ubuntu: "
                  "`apt-get install postgresql-client`, or `postgresql-client-15` from apt.postgresql.org "
                  "for a PostgreSQL 15 server) on the host that runs the command")
# Tables whose rows do not make a database "hold data".
_IGNORED_TABLES = {"alembic_version", "sqlite_sequence"}


class BackupError(Exception):
    """The backup or restore could not be done; the message says why, for the operator."""


@dataclass
class Summary:
    destination: str
    size: int
    sha256: str
    manifest: dict


@dataclass
class RestoreResult:
    manifest: dict
    documents: int
    audit_ok: bool
    audit_message: str
    notes: list[str] = field(default_factory=list)


# --- Helpers ----------------------------------------------------------------------------------------

class _Hashing:
    """A file-like reader that hashes what passes through it and counts it."""

    def __init__(self, source: IO[bytes]):
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _database_kind(url: str) -> str:
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"backups know SQLite and PostgreSQL, not {backend}")
    return backend


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("the database is in memory: there is no file to back up or restore")
    return Path(database).absolute()


def _pg_connection(url: str) -> tuple[str, dict[str, str]]:
    """A libpq conninfo without the password (it goes on a command line, visible in `ps`), and
    the environment that carries the password."""
    parsed = make_url(url)
    params: dict[str, str] = {}
    if parsed.host:
        params["host"] = parsed.host
    if parsed.port:
        params["port"] = str(parsed.port)
    if parsed.username:
        params["user"] = parsed.username
    if parsed.database:
        params["dbname"] = parsed.database
    for key, value in parsed.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return psycopg.conninfo.make_conninfo(**params), env


def _pg_connect(url: str, **kwargs) -> psycopg.Connection:
    conninfo, env = _pg_connection(url)
    password = env.get("PGPASSWORD")
    return psycopg.connect(conninfo, **({"password": password} if password is not None else {}), **kwargs)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not on PATH: {PG_CLIENT_HINT}.")
    return found


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    completed = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, check=False)
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip() or f"exit status {completed.returncode}"
        raise BackupError(f"{what} failed: {message}")


def _jobs_file() -> Path | None:
    """The embedded job queue's SQLite file, when the service uses one."""
    queue = current_app.config.get("DPS_JOB_QUEUE") or ""
    if not queue.startswith("sqlite:///"):
        return None
    path = Path(queue[len("sqlite:///"):])
    return path if path.is_absolute() else Path(current_app.instance_path) / path


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database through the online backup API."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                # A self-contained file: no WAL beside it to carry.
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"could not copy the SQLite database {source}: {exc}") from exc


# --- What the database holds ------------------------------------------------------------------------

@dataclass
class _Snapshot:
    revision: str | None
    audit_head: dict | None
    tables: dict[str, int]
    documents: list[tuple[str, str | None]]  # (storage key, SHA-256 the database records)


_DOCUMENT_KEYS = ("SELECT storage_key, sha256 FROM documents "
                  "UNION SELECT file_key, file_sha256 FROM export_jobs WHERE file_key IS NOT NULL "
                  "ORDER BY 1")
_HEAD = "SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1"


def _snapshot_sqlite(path: Path) -> _Snapshot:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        tables = {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        head = conn.execute(_HEAD).fetchone()
        documents = conn.execute(_DOCUMENT_KEYS).fetchall()
    return _Snapshot(revision[0] if revision else None, {"id": head[0], "hash": head[1]} if head else None,
                     tables, [(key, sha) for key, sha in documents])


def _snapshot_pg(conn: psycopg.Connection) -> _Snapshot:
    names = [row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
    tables = {name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
              for name in names}
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    head = conn.execute(_HEAD).fetchone()
    documents = conn.execute(_DOCUMENT_KEYS).fetchall()
    return _Snapshot(revision[0] if revision else None, {"id": head[0], "hash": head[1]} if head else None,
                     tables, [(key, sha) for key, sha in documents])


# --- Documents in the storage -----------------------------------------------------------------------

@contextlib.contextmanager
def _open_document(storage: Storage, key: str) -> Iterator[tuple[IO[bytes], int]]:
    """A stream of one document's bytes and its size, without reading it all into memory."""
    check_key(key)
    if isinstance(storage, LocalStorage):
        path = storage.root.joinpath(*key.split("/"))
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as exc:
            raise StorageError(f"could not read {key!r} under {storage.root}: {exc}") from exc
        with handle:
            yield handle, os.fstat(handle.fileno()).st_size
        return
    if isinstance(storage, S3Storage):
        try:
            answer = storage.client.get_object(Bucket=storage.bucket, Key=storage.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(key) from None
            raise StorageError(f"could not read {key!r} from s3://{storage.bucket}/{storage.prefix}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not read {key!r} from s3://{storage.bucket}/{storage.prefix}: {exc}") from exc
        body = answer["Body"]
        try:
            yield body, int(answer["ContentLength"])
        finally:
            body.close()
        return
    raise BackupError(f"backups do not know the storage {storage!r}")


def _storage_is_empty(storage: Storage) -> bool:
    if isinstance(storage, LocalStorage):
        if not storage.root.exists():
            return True
        return not any(path.is_file() for path in storage.root.rglob("*"))
    if isinstance(storage, S3Storage):
        prefix = f"{storage.prefix}/" if storage.prefix else ""
        try:
            answer = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=prefix, MaxKeys=1)
        except (BotoCoreError, ClientError) as exc:
            raise BackupError(f"could not list s3://{storage.bucket}/{storage.prefix}: {exc}") from exc
        return not answer.get("KeyCount", 0)
    raise BackupError(f"backups do not know the storage {storage!r}")


def _put_stream(storage: Storage, key: str, source: IO[bytes]) -> None:
    """Store a stream under ``key``, all or nothing, without holding it in memory."""
    check_key(key)
    if isinstance(storage, LocalStorage):
        path = storage.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".restore-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(source, handle, CHUNK)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        return
    if isinstance(storage, S3Storage):
        try:
            storage.client.upload_fileobj(source, storage.bucket, storage.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not store {key!r} in s3://{storage.bucket}/{storage.prefix}: {exc}") from exc
        return
    raise BackupError(f"backups do not know the storage {storage!r}")


def _describe(storage: Storage) -> str:
    if isinstance(storage, LocalStorage):
        return str(storage.root)
    if isinstance(storage, S3Storage):
        return f"s3://{storage.bucket}/{storage.prefix}"
    return repr(storage)


# --- Backup -----------------------------------------------------------------------------------------

def _add_file(archive: tarfile.TarFile, name: str, path: Path, parts: list[dict], **extra) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o600
    info.mtime = int(datetime.now(timezone.utc).timestamp())
    with open(path, "rb") as handle:
        reader = _Hashing(handle)
        archive.addfile(info, reader)
    parts.append({"name": name, "size": reader.size, "sha256": reader.hexdigest(), **extra})


def backup(destination: str, echo: Callable[[str], None] = lambda _m: None) -> Summary:
    """Write the archive to ``destination`` (a file path or ``s3://bucket/key``)."""
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    kind = _database_kind(url)
    to_s3 = destination.startswith("s3://")
    if to_s3:
        try:
            deliver.parse_s3_url(destination)
        except deliver.DeliveryError as exc:
            raise BackupError(str(exc)) from exc
        work_parent = None
    else:
        target = Path(destination).absolute()
        if target.is_dir():
            raise BackupError(f"{target} is a folder: give a file name")
        if not target.parent.is_dir():
            raise BackupError(f"the folder {target.parent} does not exist")
        work_parent = str(target.parent)
    if kind == "postgresql":
        pg_dump = _tool("pg_dump")
    storage = get_storage()
    # Nothing of the session's stays open: on SQLite it would hold the write lock.
    db.session.remove()
    name = destination.rsplit("/", 1)[-1]
    mode = "w:gz" if name.endswith((".gz", ".tgz")) else "w"

    with tempfile.TemporaryDirectory(prefix=".dps-backup-", dir=work_parent) as work_dir:
        work = Path(work_dir)
        parts: list[dict] = []
        jobs_copy = None
        jobs_file = _jobs_file()
        if jobs_file is not None and jobs_file.exists():
            jobs_copy = work / JOBS_PART
            _sqlite_copy(jobs_file, jobs_copy)
        if kind == "sqlite":
            dump = work / SQLITE_PART
            echo("Copying the SQLite database (online backup)...")
            _sqlite_copy(_sqlite_path(url), dump)
            snapshot = _snapshot_sqlite(dump)
        else:
            dump = work / PG_PART
            conninfo, env = _pg_connection(url)
            echo("Dumping the PostgreSQL database (pg_dump --format=custom)...")
            try:
                with _pg_connect(url) as conn:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
                    snapshot = _snapshot_pg(conn)
                    _run([pg_dump, "--format=custom", f"--snapshot={snapshot_id}", f"--file={dump}",
                          f"--dbname={conninfo}"], env, "pg_dump")
                    conn.rollback()
            except psycopg.Error as exc:
                raise BackupError(f"could not read the PostgreSQL database: {exc}") from exc

        archive_path = work / "archive"
        missing: list[str] = []
        changed: list[str] = []
        document_bytes = 0
        with tarfile.open(archive_path, mode, format=tarfile.PAX_FORMAT) as archive:
            if jobs_copy is not None:
                _add_file(archive, JOBS_PART, jobs_copy, parts)
            _add_file(archive, dump.name, dump, parts)
            dump.unlink()
            echo(f"Copying {len(snapshot.documents):,} documents from {_describe(storage)}...")
            for key, recorded_sha in snapshot.documents:
                try:
                    with _open_document(storage, key) as (stream, size):
                        info = tarfile.TarInfo(DOCUMENTS + key)
                        info.size = size
                        info.mode = 0o600
                        info.mtime = int(datetime.now(timezone.utc).timestamp())
                        reader = _Hashing(stream)
                        archive.addfile(info, reader)
                except KeyError:
                    missing.append(key)
                    continue
                except StorageError as exc:
                    raise BackupError(f"the storage failed reading document {key}: {exc}") from exc
                if recorded_sha and reader.hexdigest() != recorded_sha:
                    changed.append(key)
                document_bytes += reader.size
                parts.append({"name": DOCUMENTS + key, "key": key, "size": reader.size,
                              "sha256": reader.hexdigest()})
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "database": {"kind": kind, "part": dump.name},
                "jobs": JOBS_PART if jobs_copy is not None else None,
                "schema_revision": snapshot.revision,
                "audit_head": snapshot.audit_head,
                "counts": {"tables": snapshot.tables,
                           "documents": sum(1 for part in parts if part["name"].startswith(DOCUMENTS)),
                           "document_bytes": document_bytes},
                # Documents the database names that the storage did not have, or whose bytes
                # no longer match the SHA-256 the database recorded at upload: a problem of
                # the live service, reported rather than hidden.
                "documents_missing": missing,
                "documents_changed": changed,
                "parts": parts,
            }
            data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(datetime.now(timezone.utc).timestamp())
            archive.addfile(info, _Hashing(_BytesReader(data)))
        archive_sha = _sha256_file(archive_path)
        try:
            with open(archive_path, "rb") as tmp:
                if to_s3:
                    size = deliver.to_s3(tmp, destination, content_type="application/x-tar")
                else:
                    size = deliver.to_path(tmp, target)
        except deliver.DeliveryError as exc:
            raise BackupError(str(exc)) from exc
    return Summary(destination if to_s3 else str(target), size, archive_sha, manifest)


class _BytesReader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.at = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n is None or n < 0 else self.at + n
        chunk = bytes(self.data[self.at:end])
        self.at += len(chunk)
        return chunk


# --- Restore ----------------------------------------------------------------------------------------

def _fetch(source: str, work: Path) -> Path:
    """The archive as a local file: an S3 object is downloaded first (streamed to disk)."""
    if not source.startswith("s3://"):
        path = Path(source)
        if not path.is_file():
            raise BackupError(f"there is no backup file at {path.absolute()}")
        return path
    try:
        location = deliver.parse_s3_url(source)
    except deliver.DeliveryError as exc:
        raise BackupError(str(exc)) from exc
    path = work / "archive"
    try:
        deliver.s3_client(location.bucket).download_file(location.bucket, location.key, str(path))
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"could not download {source}: {exc}") from exc
    return path


def _read_manifest(archive_path: Path) -> tuple[dict, dict[str, str]]:
    """Read every part once, in order: the manifest and the SHA-256 of every other part."""
    hashes: dict[str, str] = {}
    manifest = None
    try:
        with tarfile.open(archive_path, "r|*") as archive:
            for member in archive:
                if not member.isfile():
                    raise BackupError(f"the archive holds {member.name!r}, which is not a file: not a DPS backup")
                stream = archive.extractfile(member)
                if member.name == MANIFEST:
                    try:
                        manifest = json.loads(stream.read(10 * 1024 * 1024 + 1))
                    except ValueError as exc:
                        raise BackupError(f"the manifest is not JSON: {exc}") from exc
                    continue
                if member.name in hashes:
                    raise BackupError(f"the archive holds {member.name!r} twice")
                reader = _Hashing(stream)
                for _chunk in iter(lambda: reader.read(CHUNK), b""):
                    pass
                hashes[member.name] = reader.hexdigest()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"{archive_path} is not a readable backup archive: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("the archive has no DPS backup manifest: not a backup made by `flask --app dps backup`")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"the backup's format version {manifest.get('format_version')} is not one this "
                          f"version of the service reads ({FORMAT_VERSION})")
    return manifest, hashes


def check_archive(manifest: dict, hashes: dict[str, str]) -> list[str]:
    """Every way the archive's parts differ from its manifest; empty when they all match."""
    problems = []
    listed = {part["name"]: part for part in manifest.get("parts", [])}
    for name, part in listed.items():
        if name not in hashes:
            problems.append(f"{name} is listed in the manifest but missing from the archive")
        elif hashes[name] != part.get("sha256"):
            problems.append(f"{name} does not match its SHA-256 in the manifest "
                            f"(archive {hashes[name]}, manifest {part.get('sha256')})")
    for name in hashes:
        if name not in listed:
            problems.append(f"{name} is in the archive but not in the manifest")
    return problems


def _database_holds_data(url: str, kind: str) -> str | None:
    """None when the database holds no rows (it may have no tables at all); otherwise why not."""
    if kind == "sqlite":
        path = _sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return None
        return _sqlite_holds_data(path)
    try:
        with _pg_connect(url, autocommit=True) as conn:
            tables = [(schema, name) for schema, name in conn.execute(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")]
            for schema, name in tables:
                if name in _IGNORED_TABLES:
                    continue
                if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(
                        sql.Identifier(schema), sql.Identifier(name))).fetchone()[0]:
                    return f"its table {name} has rows"
    except psycopg.Error as exc:
        raise BackupError(f"could not read the target database: {exc}") from exc
    return None


def _sqlite_holds_data(path: Path) -> str | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            names = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            for name in names:
                if name in _IGNORED_TABLES:
                    continue
                if conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0]:
                    return f"its table {name} has rows"
    except sqlite3.Error as exc:
        raise BackupError(f"could not read the target database {path}: {exc}") from exc
    return None


def _members(archive_path: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    with tarfile.open(archive_path, "r|*") as archive:
        for member in archive:
            yield member, archive.extractfile(member)


def _replace_sqlite(part: _Hashing, target: Path) -> None:
    """Write the database file beside ``target`` and rename it over: no connection is open."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".restore")
    try:
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(part, handle, CHUNK)
            handle.flush()
            os.fsync(handle.fileno())
        # A WAL left by the empty database would be replayed over the restored one.
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{target}{suffix}")
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def verify_audit(head: dict | None) -> tuple[bool, str]:
    """`audit verify --head ID:HASH` against the restored database: the chain holds and the head
    recorded at backup time is in it unchanged."""
    from . import audit
    from .models import AuditEvent

    result = audit.verify_chain()
    if not result.ok:
        return False, (f"Audit log BROKEN at event {result.broken_id}: {result.reason}. "
                       f"{result.count} events before it verified.")
    if head is not None:
        stored = db.session.get(AuditEvent, int(head["id"]))
        if stored is None or stored.hash != head["hash"]:
            return False, (f"Audit log BROKEN: the head recorded at backup time, event {head['id']}, is "
                           f"{'missing' if stored is None else 'changed'}. {result.count} events verified.")
        if result.head_id != int(head["id"]):
            return False, (f"Audit log does not end at the head recorded at backup time ({head['id']}) but at "
                           f"{result.head_id}: the database restored is not the one backed up.")
    elif result.count:
        return False, "The backup recorded an empty audit log, but the restored one has events."
    db.session.rollback()
    message = f"Audit log intact: {result.count} events, chain verified"
    if head is not None:
        message += f", ending at the head recorded at backup time, {head['id']}:{head['hash']}"
    return True, message + "."


def restore(source: str, echo: Callable[[str], None] = lambda _m: None,
            confirm: Callable[[str], None] | None = None) -> RestoreResult:
    """Restore the archive at ``source`` into this service's (empty) database and storage."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from .extensions import migrate

    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    kind = _database_kind(url)
    storage = get_storage()
    db.session.remove()
    db.engine.dispose()

    with tempfile.TemporaryDirectory(prefix=".dps-restore-") as work_dir:
        archive_path = _fetch(source, Path(work_dir))
        echo(f"Checking every part of {source} against its manifest...")
        manifest, hashes = _read_manifest(archive_path)
        problems = check_archive(manifest, hashes)
        if problems:
            raise BackupError("The archive does not match its manifest; nothing was restored:\n  "
                              + "\n  ".join(problems))
        if manifest["database"]["kind"] != kind:
            raise BackupError(f"the backup is of a {manifest['database']['kind']} database, and DPS_DATABASE_URL "
                              f"names a {kind} one: restore it into the same kind of database")
        revision = manifest.get("schema_revision")
        script = ScriptDirectory.from_config(migrate.get_config())
        try:
            known = revision is not None and script.get_revision(revision) is not None
        except CommandError:
            known = False
        if not known:
            raise BackupError(f"the backup's schema revision {revision!r} is not one this version of the service "
                              "knows: restore it with the version that made it (or a later one)")

        reason = _database_holds_data(url, kind)
        if reason:
            raise BackupError(f"the database DPS_DATABASE_URL names is not empty ({reason}): a backup is "
                              "restored only into an empty database, so nothing is overwritten. Create a new "
                              "database (or remove this one's data) and run the restore again.")
        jobs_target = _jobs_file() if manifest.get("jobs") else None
        if jobs_target is not None and jobs_target.exists() and jobs_target.stat().st_size:
            if _sqlite_holds_data(jobs_target):
                raise BackupError(f"the job queue's file {jobs_target} is not empty: move it away and run the "
                                  "restore again")
        if not _storage_is_empty(storage):
            raise BackupError(f"the document storage {_describe(storage)} is not empty: a backup is restored "
                              "only into an empty storage. Point DPS_STORAGE_URL at an empty folder or prefix.")
        if confirm is not None:
            confirm(f"Restore the backup of {manifest['created_at']} ({manifest['counts']['documents']:,} documents) "
                    f"into {make_url(url).render_as_string(hide_password=True)} and {_describe(storage)}?")

        expected = {part["name"]: part["sha256"] for part in manifest["parts"]}
        documents = 0
        for member, stream in _members(archive_path):
            if member.name == MANIFEST:
                continue
            reader = _Hashing(stream)
            if member.name == SQLITE_PART:
                echo("Restoring the SQLite database...")
                _replace_sqlite(reader, _sqlite_path(url))
            elif member.name == JOBS_PART:
                if jobs_target is None:
                    for _chunk in iter(lambda: reader.read(CHUNK), b""):
                        pass
                else:
                    _replace_sqlite(reader, jobs_target)
            elif member.name == PG_PART:
                echo("Restoring the PostgreSQL database (pg_restore --no-owner)...")
                dump = Path(work_dir) / PG_PART
                with open(dump, "wb") as handle:
                    shutil.copyfileobj(reader, handle, CHUNK)
                if reader.hexdigest() != expected[member.name]:
                    raise BackupError(f"{member.name} changed while it was being restored; nothing was restored")
                _pg_restore(url, dump)
                dump.unlink()
            elif member.name.startswith(DOCUMENTS):
                key = member.name[len(DOCUMENTS):]
                try:
                    _put_stream(storage, key, reader)
                except StorageError as exc:
                    raise BackupError(f"could not restore document {key}: {exc}") from exc
                documents += 1
            if reader.hexdigest() != expected[member.name]:
                raise BackupError(f"{member.name} changed while it was being restored (it no longer matches "
                                  "the manifest): the restore is incomplete; empty the database and the "
                                  "storage and run it again from a good copy")

    echo("Verifying the audit log against the head recorded at backup time...")
    ok, message = verify_audit(manifest.get("audit_head"))
    notes = []
    # Each document's bytes, checked against the manifest as they were written, against the
    # SHA-256 the restored database recorded at upload too: a manifest rewritten to match a
    # changed document does not get past this.
    written = {part["key"]: part["sha256"] for part in manifest["parts"] if "key" in part}
    from .models import Document

    for key, recorded in db.session.execute(select(Document.storage_key, Document.sha256)):
        if key in written and written[key] != recorded:
            ok = False
            message += f" Document {key} does not match the SHA-256 the database recorded at upload."
    db.session.rollback()
    code_heads = set(script.get_heads())
    if revision not in code_heads:
        notes.append(f"The backup's schema is at revision {revision}; this version needs {', '.join(sorted(code_heads))}: "
                     "run `flask --app dps db upgrade` before starting the service.")
    for key in manifest.get("documents_missing", []):
        notes.append(f"Document {key} was already missing from the storage when the backup was taken.")
    for key in manifest.get("documents_changed", []):
        notes.append(f"Document {key} no longer matched its recorded SHA-256 when the backup was taken.")
    return RestoreResult(manifest, documents, ok, message, notes)


def _pg_restore(url: str, dump: Path) -> None:
    pg_restore = _tool("pg_restore")
    conninfo, env = _pg_connection(url)
    with _pg_connect(url, autocommit=True) as conn:
        has_tables = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public')").fetchone()[0]
    command = [pg_restore, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    if has_tables:
        # A database already migrated (but empty): its tables are dropped and made again from
        # the dump, in the same transaction.
        command += ["--clean", "--if-exists"]
    _run(command + [f"--dbname={conninfo}", str(dump)], env, "pg_restore")
