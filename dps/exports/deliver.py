"""Handing an export out: to a temporary file first, then a local path, an S3 object, a web
response, or the file of an export prepared in the background.

The rule behind every function here: nothing is handed out until the whole export has been
written and has passed its own checks. ``produce`` writes into a temporary file and gives it
back only when ``Export.write`` returned; ``to_path`` renames a finished file into place;
``to_s3`` aborts a multipart upload that failed, so a bucket never holds half an export.

Memory stays flat whatever the size: exports stream into the temporary file, and it is copied
out in fixed-size pieces (64 KiB to disk and the web, one 8 MiB part at a time to S3).

An export too large for a page request (``too_big_for_a_request``) is prepared by a worker
(``ask_for`` defers the ``exports.prepare`` job): the worker writes it as above, reports the rows
written into its ``ExportJob`` row as it goes, and keeps the finished file in the project's
storage for the person who asked, who downloads it from the Exports page.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from typing import IO
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from flask import Response, current_app, has_request_context, redirect

from .. import audit, clock, jobs
from ..database import read_only_transaction
from ..extensions import db
from ..models import ExportJob, User
from ..storage import LocalStorage, S3Storage, StorageError, check_key, content_disposition, get_storage
from . import Export, ExportInvalid, Filters, NothingToExport, Progress, get, iter_chunks, no_progress

CHUNK_SIZE = 64 * 1024
# S3 takes parts of at least 5 MiB (except the last) and at most 10,000 of them: 8 MiB parts
# carry exports up to about 78 GiB, with one part in memory at a time.
PART_SIZE = 8 * 1024 * 1024


# The periods people may ask for: wide enough for any record, narrow enough that the day after
# the last one still exists (``Filters.end_utc``).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)


def calendar_quarter(year: int, quarter: int) -> tuple[date, date]:
    """First and last day of a calendar quarter: Q1 is January to March. (The Transparency Code
    publishes by calendar quarter; April to June is financial Q1 but calendar Q2.)"""
    if not 1 <= quarter <= 4:
        raise ValueError("a quarter is 1 to 4")
    start = date(year, 3 * quarter - 2, 1)
    after = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return start, after - timedelta(days=1)


class DeliveryError(Exception):
    """The finished export could not be put where it was asked to go. The message says why."""


def produce(export: Export, filters: Filters, progress: Progress = no_progress) -> IO[bytes]:
    """Write the whole export into a temporary file and return it rewound.

    If ``write`` raises (``ExportInvalid``, a database error, anything), the temporary file is
    closed, which removes it, and the exception goes on to the caller: there is nothing to hand
    out. The caller closes the returned file when it is done with it.

    The export reads in a transaction of its own (``read_only_transaction``): on SQLite it then
    leaves the site's writers free however long it runs. The session must have no unsaved
    changes; the transaction open before is ended first."""
    tmp = tempfile.TemporaryFile(prefix=f"dps-export-{export.name}-")
    try:
        with read_only_transaction():
            export.write(export.applicable(filters), tmp, progress)
        tmp.flush()
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp


def size_of(tmp: IO[bytes]) -> int:
    return os.fstat(tmp.fileno()).st_size


def to_path(tmp: IO[bytes], path: str | os.PathLike) -> int:
    """Copy the finished export to ``path`` atomically; return the bytes written.

    It is written to a hidden temporary file beside ``path`` and renamed over it only once it is
    complete and on disk, so ``path`` holds either its old content or the whole export, never a
    part of it. The file is readable by its owner only: audit exports hold people's names and
    email addresses."""
    target = os.path.abspath(os.fspath(path))
    if os.path.isdir(target):
        raise DeliveryError(f"Could not write {target}: it is a folder; give a file name")
    folder, name = os.path.split(target)
    tmp.seek(0)
    try:
        fd, part_path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise DeliveryError(f"Could not write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as part:
            written = 0
            for chunk in iter_chunks(tmp, CHUNK_SIZE):
                part.write(chunk)
                written += len(chunk)
            part.flush()
            os.fsync(part.fileno())
        os.replace(part_path, target)
    except BaseException as exc:
        try:
            os.unlink(part_path)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise DeliveryError(f"Could not write {target}: {exc.strerror or exc}") from exc
        raise
    finally:
        tmp.seek(0)
    return written


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Location:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Never repeat it: the part before "@" may be a key and secret, and the address goes into
        # messages and the audit log.
        raise DeliveryError("An S3 address must not carry credentials (s3://key:secret@...): use "
                            "s3://bucket/path/to/file, with credentials from the environment or an instance role")
    key = unquote(parts.path).lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key or key.endswith("/") or parts.query or parts.fragment:
        raise DeliveryError(f"{url!r} is not an S3 object address: use s3://bucket/path/to/file")
    return S3Location(parts.netloc, key)


def s3_client(bucket: str):
    """A boto3 client configured like the document storage's (region, timeouts, path-style
    addressing for S3-compatible endpoints); credentials come from boto3's usual chain."""
    endpoint = current_app.config.get("DPS_S3_ENDPOINT_URL") or None
    return S3Storage(bucket, "", endpoint).client


def _reason(exc: BaseException) -> str:
    # Botocore's messages name the operation, bucket and endpoint, never the credentials.
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Error"
        message = error.get("Message") or str(exc)
        return f"{code}: {message}"
    return f"{type(exc).__name__}: {exc}"


def to_s3(tmp: IO[bytes], url: str, *, content_type: str = "application/octet-stream",
          client=None, part_size: int = PART_SIZE) -> int:
    """Upload the finished export to ``s3://bucket/key``; return the bytes uploaded.

    Below ``part_size`` one PUT (all or nothing by nature); above it, a multipart upload whose
    parts S3 keeps out of sight until it is completed. Any failure aborts the upload, so no
    partial object and no dangling parts (which S3 would bill for) remain, and raises
    ``DeliveryError`` with the reason."""
    location = parse_s3_url(url)
    size = size_of(tmp)
    tmp.seek(0)
    upload_id = None
    try:
        if client is None:
            client = s3_client(location.bucket)
        if size < part_size:
            client.put_object(Bucket=location.bucket, Key=location.key, Body=tmp.read(),
                              ContentType=content_type)
            return size
        upload_id = client.create_multipart_upload(
            Bucket=location.bucket, Key=location.key, ContentType=content_type)["UploadId"]
        parts = []
        number = 0
        while True:
            body = tmp.read(part_size)
            if not body:
                break
            number += 1
            answer = client.upload_part(Bucket=location.bucket, Key=location.key, UploadId=upload_id,
                                        PartNumber=number, Body=body)
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            del body  # one part in memory at a time
        client.complete_multipart_upload(Bucket=location.bucket, Key=location.key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        return size
    except BaseException as exc:
        abort_problem = None
        if upload_id is not None:
            try:
                client.abort_multipart_upload(Bucket=location.bucket, Key=location.key, UploadId=upload_id)
            except (BotoCoreError, ClientError) as abort_exc:
                abort_problem = _reason(abort_exc)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt and the like: aborted above, now let it through
        message = f"Upload to {location} failed: {_reason(exc)}"
        if abort_problem:
            message += (f". Its unfinished multipart upload {upload_id} could not be aborted ({abort_problem}): "
                        "remove it, or let a bucket lifecycle rule do so")
        raise DeliveryError(message) from exc
    finally:
        tmp.seek(0)


def record_taken(export: Export, filters: Filters, destination: str, size: int, *, actor=None,
                 path: str | None = None, job: ExportJob | None = None) -> None:
    """The audit event of taking an export (issue 5, point 7): who, which, for what period and
    agreement, where to.

    In a web request the signed-in user is the actor (``audit.record`` finds them); elsewhere it
    is the command line. The caller commits."""
    data = {
        "export": export.name,
        "title": export.title,
        # What the export was taken with: the audit log, taken whole, records no agreement.
        "filters": export.applicable(filters).as_dict(),
        "destination": destination,
        "bytes": size,
    }
    if path is not None:
        data["path"] = path
    if job is not None:
        data["job"] = job.id  # prepared in the background, downloaded now
    label = None if (actor is not None or has_request_context()) else "command line"
    audit.record("export.taken", "export", export.name, data, actor=actor, actor_label=label)


def response(export: Export, filters: Filters, tmp: IO[bytes]) -> Response:
    """A download of the finished export, read from its temporary file 64 KiB at a time.

    The file is closed (and so removed) when the response is closed, whether or not the
    browser read it to the end."""
    size = size_of(tmp)
    tmp.seek(0)
    resp = Response(iter_chunks(tmp, CHUNK_SIZE), content_type=export.media_type, direct_passthrough=True)
    resp.call_on_close(tmp.close)
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = content_disposition(export.filename(filters))
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


# --- Exports prepared in the background ------------------------------------------------------------

# The most a page request does itself; anything larger goes to a worker. Reports are measured by
# the rows they count; the OCDS packages, which build each release from many rows, by the
# contracting processes they walk (each a few queries and dozens of rows).
IN_REQUEST_ROWS = 20_000
IN_REQUEST_PROCESSES = 200
WORKER_LABEL = "background job"


def too_big_for_a_request(export: Export, filters: Filters) -> bool:
    """Whether ``export`` of ``filters`` is for a worker (one that cannot count ahead is not)."""
    if export.count is None:
        return False
    limit = IN_REQUEST_PROCESSES if export.unit == "contracting processes" else IN_REQUEST_ROWS
    return export.count(export.applicable(filters)) > limit


def filters_of(job: ExportJob) -> Filters:
    return Filters(job.period_from, job.period_to, job.agreement)


def ask_for(export: Export, filters: Filters, user: User) -> ExportJob:
    """Queue ``export`` for ``user``: the job row, its audit event and the worker's job, all in
    the caller's transaction (the caller commits)."""
    filters = export.applicable(filters)
    job = ExportJob(requested_by_id=user.id, export=export.name, period_from=filters.start, period_to=filters.end,
                    agreement=filters.agreement, requested_at=clock.now(), rows_done=0)
    db.session.add(job)
    db.session.flush()
    audit.record("export_job.requested", "export_job", job.id,
                 {"export": export.name, "title": export.title, "filters": filters.as_dict()})
    prepare.defer(job_id=job.id)
    return job


class JobProgress:
    """The ``Progress`` of a job: counts the rows as the export writes them and records the
    count in the job's row, in a short transaction of its own on a connection of its own (the
    export reads in one long read-only transaction, which must not write), at each whole per
    cent of the total, or every ``EVERY`` rows when the total is not known."""

    EVERY = 1000

    def __init__(self, job_id: int, total: int | None):
        self.job_id = job_id
        self.done = 0
        self.recorded = 0
        self.step = max(1, total // 100) if total else self.EVERY

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.done - self.recorded >= self.step:
            with db.engine.begin() as connection:
                connection.execute(ExportJob.progress(self.job_id, self.done))
            self.recorded = self.done


@jobs.task("exports.prepare", queue="exports")
def prepare(job_id: int) -> None:
    """The worker's side: write the export, check it, keep its file in storage for the person
    who asked. Whatever goes wrong ends the job as failed, with words for that person (the
    details go to the log); a job that is done or failed already is not run again."""
    job = db.session.get(ExportJob, job_id)
    if job is None or job.state not in ("queued", "running"):
        db.session.rollback()
        return
    filters = filters_of(job)
    try:
        export = get(job.export)
    except KeyError:
        return _failed(job_id, "This export is no longer offered by the service.")
    total = export.count(filters) if export.count is not None else None
    job.start(clock.now(), total)
    audit.record("export_job.started", "export_job", job.id, {"export": job.export, "rows_total": total},
                 actor_label=WORKER_LABEL, organisation_id=job.requested_by.organisation_id)
    db.session.commit()

    progress = JobProgress(job_id, total)
    try:
        tmp = produce(export, filters, progress)
    except NothingToExport as exc:
        db.session.rollback()
        advice = "choose another period or agreement" if filters.agreement else "choose another period"
        return _failed(job_id, f"{exc.message}: {advice}.")
    except ExportInvalid as exc:
        db.session.rollback()
        current_app.logger.error("Export job %s (%s, %s) failed its checks: %s", job_id, export.name, filters.as_dict(), exc.message)
        return _failed(job_id, f"The export failed its own checks, so no file was kept: {exc.message}. "
                               "The problem has been written to the service’s log for whoever runs it.")
    except Exception:
        db.session.rollback()
        current_app.logger.exception("Export job %s (%s, %s) failed", job_id, export.name, filters.as_dict())
        return _failed(job_id, "The export stopped because of a problem in the service, so no file was kept. "
                               "The problem has been written to the service’s log: ask for the export again later.")
    with tmp:
        digest = _sha256(tmp)
        key = f"exports/{job_id}/{secrets.token_hex(16)}"
        try:
            size = to_storage(tmp, key, export.media_type)
        except (DeliveryError, StorageError) as exc:
            current_app.logger.error("Export job %s could not keep its file: %s", job_id, exc)
            return _failed(job_id, "The export was written but could not be kept in the service’s file storage. "
                                   "The problem has been written to the service’s log: ask for it again later.")
    job = db.session.get(ExportJob, job_id)
    job.finish(clock.now(), rows_done=progress.done, file_key=key, file_size=size, file_sha256=digest)
    audit.record("export_job.done", "export_job", job_id,
                 {"export": job.export, "rows": progress.done, "bytes": size, "sha256": digest},
                 actor_label=WORKER_LABEL, organisation_id=job.requested_by.organisation_id)
    db.session.commit()


def _failed(job_id: int, message: str) -> None:
    job = db.session.get(ExportJob, job_id)
    job.fail(clock.now(), message)
    audit.record("export_job.failed", "export_job", job_id, {"export": job.export, "error": message},
                 actor_label=WORKER_LABEL, organisation_id=job.requested_by.organisation_id)
    db.session.commit()


def _sha256(tmp: IO[bytes]) -> str:
    tmp.seek(0)
    digest = hashlib.sha256()
    for chunk in iter_chunks(tmp, CHUNK_SIZE):
        digest.update(chunk)
    tmp.seek(0)
    return digest.hexdigest()


def to_storage(tmp: IO[bytes], key: str, content_type: str) -> int:
    """Keep a finished export in the project's storage under ``key``; return its size. Copied
    as a file (local folder) or in 8 MiB parts (S3), never read whole into memory."""
    backend = get_storage()
    if isinstance(backend, S3Storage):
        return to_s3(tmp, f"s3://{backend.bucket}/{backend.object_key(key)}", content_type=content_type,
                     client=backend.client)
    if isinstance(backend, LocalStorage):
        target = backend.root.joinpath(*check_key(key).split("/"))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"Could not write {target}: {exc.strerror or exc}") from exc
        return to_path(tmp, target)
    raise TypeError(f"no way to keep an export in {backend!r}")


def stored_response(export: Export, job: ExportJob) -> Response:
    """The download of a job's file: a short-lived link to S3, or the file streamed from disk."""
    backend = get_storage()
    filename = export.filename(filters_of(job))
    url = backend.download_url(job.file_key, filename, export.media_type)
    if url is not None:
        return redirect(url, 303)
    if not isinstance(backend, LocalStorage):
        raise TypeError(f"no way to serve an export from {backend!r}")
    try:
        stored = open(backend.root.joinpath(*check_key(job.file_key).split("/")), "rb")
    except OSError as exc:
        raise StorageError(f"could not read export job {job.id}'s file: {exc}") from exc
    return response(export, filters_of(job), stored)
