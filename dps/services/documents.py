"""Uploaded documents: checking, storing and serving them (DESIGN 5).

A document is accepted only if its size is within the configured limit and its contents really
are the kind of file its extension says (magic bytes, and for the ZIP-based office formats the
entry that makes them what they are), the ZIP-based formats are not archive bombs (total
unpacked size, compression ratio and entry count within limits, found by really unpacking in
bounded chunks, not by believing the sizes the archive declares) nor password-protected, a PDF
parses as one (pypdf), and ClamAV's daemon finds no virus in it (``dps.antivirus``; with
``DPS_CLAMD_URL`` unset, development only, nothing is scanned). The bytes go to storage under a
key the server makes; the row records the user's filename, the type, size and SHA-256.

"No half-saved document": the bytes are stored first and the row added after, so a storage
failure leaves nothing behind. An object whose row never reaches a commit (the flush fails, or
the transaction is rolled back or abandoned later in the request) is deleted again by the
session hooks at the end of this module.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import unicodedata
import uuid
import zipfile
import zlib
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

import pypdf
from flask import Response, current_app, redirect
from pypdf.errors import PyPdfError
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, SessionTransaction
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response as BaseResponse

from .. import antivirus, audit, clock
from ..extensions import db
from ..models import Bid, BidDocument, Document, User
from ..storage import Storage, StorageError, content_disposition, get_storage
from . import ServiceError, sealed

logger = logging.getLogger(__name__)

# Roles that may read any organisation's documents: the DPS team runs the system, auditors check it.
ALL_DOCUMENTS_ROLES = frozenset({"dps_admin", "auditor"})


# pypdf reports what it repairs through logging; a supplier's odd PDF is not the operator's problem.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def _is_pdf(data: bytes) -> bool:
    """A PDF header on a body pypdf can read: objects, a trailer and a catalog (``/Root``). A file
    that only starts ``%PDF-`` (an HTML page, a renamed executable) has none of them.

    Like PDF viewers, a file missing only its ``startxref`` footer is repaired, by pypdf
    rebuilding the cross-reference table from the objects themselves. A PDF that opens without
    a password (at most an owner password restricting printing or copying) is read; one that
    needs a password to open is refused separately, by ``_pdf_needs_password``."""
    if not data.startswith(b"%PDF-"):
        return False
    reader = _pdf_reader(data)
    if reader is None:
        return False
    try:
        if reader.is_encrypted and not reader.decrypt(""):
            return True  # a real PDF, locked: told apart by _pdf_needs_password
        root = reader.trailer.get("/Root")
        catalog = root.get_object() if root is not None else None
        return isinstance(catalog, dict) and catalog.get("/Type") == "/Catalog"
    except (PyPdfError, ValueError, TypeError, KeyError, AttributeError, RecursionError, NotImplementedError):
        return False


def _pdf_reader(data: bytes) -> pypdf.PdfReader | None:
    if b"startxref" not in data[-2048:]:
        data = data + b"\nstartxref\n0\n%%EOF\n"  # a wrong pointer makes pypdf rebuild the table
    try:
        return pypdf.PdfReader(io.BytesIO(data), strict=False)
    except (PyPdfError, ValueError, TypeError, KeyError, AttributeError, RecursionError, NotImplementedError):
        return None


def _pdf_needs_password(data: bytes) -> bool:
    """Locked PDFs are refused: the evaluators could not open them, nor ClamAV look inside."""
    reader = _pdf_reader(data)
    try:
        return reader is not None and reader.is_encrypted and not reader.decrypt("")
    except (PyPdfError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError):
        return True  # encrypted in a way that cannot be opened here: no one can read or scan it


def _is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")


def _is_jpeg(data: bytes) -> bool:
    return data.startswith(b"\xff\xd8\xff")


def _open_zip(data: bytes) -> zipfile.ZipFile | None:
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError):
        return None


def _zip_containing(entry: str) -> Callable[[bytes], bool]:
    """OOXML files are ZIPs; the main part is what tells a DOCX from an XLSX (or from any ZIP)."""

    def sniff(data: bytes) -> bool:
        archive = _open_zip(data)
        if archive is None:
            return False
        with archive:
            return entry in archive.namelist()

    return sniff


# The ODF `mimetype` entry is one short line; anything bigger is not a real one (and must not be
# decompressed: a crafted entry could be a zip bomb).
_ODF_MIMETYPE_MAX_BYTES = 100


def _odf(mimetype: str) -> Callable[[bytes], bool]:
    """ODF files are ZIPs whose `mimetype` entry names the kind of document."""

    def sniff(data: bytes) -> bool:
        archive = _open_zip(data)
        if archive is None:
            return False
        with archive:
            try:
                info = archive.getinfo("mimetype")
                if info.file_size > _ODF_MIMETYPE_MAX_BYTES:
                    return False
                return archive.read(info).strip() == mimetype.encode("ascii")
            except (KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError, ValueError, EOFError, OSError):
                # Missing entry, corrupt or encrypted archive, unsupported compression.
                return False

    return sniff


def _is_utf8_text(data: bytes) -> bool:
    # NUL bytes mean a binary file (or UTF-16, which the people reading these files cannot open
    # reliably); a byte-order mark is what Excel's "CSV UTF-8" writes, so it is allowed.
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


ODT_TYPE = "application/vnd.oasis.opendocument.text"
ODS_TYPE = "application/vnd.oasis.opendocument.spreadsheet"

# Extension (lower case, no dot) -> (the content type recorded and served, the content check).
ALLOWED: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    "pdf": ("application/pdf", _is_pdf),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             _zip_containing("word/document.xml")),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             _zip_containing("xl/workbook.xml")),
    "odt": (ODT_TYPE, _odf(ODT_TYPE)),
    "ods": (ODS_TYPE, _odf(ODS_TYPE)),
    "csv": ("text/csv", _is_utf8_text),
    "txt": ("text/plain", _is_utf8_text),
    "png": ("image/png", _is_png),
    "jpg": ("image/jpeg", _is_jpeg),
    "jpeg": ("image/jpeg", _is_jpeg),
}
ALLOWED_DESCRIPTION = "PDF, DOCX, XLSX, ODT, ODS, CSV, TXT, PNG or JPEG"

MAX_FILENAME_LENGTH = 255  # the column's length
_CONTROL_CATEGORIES = ("Cc", "Cf")  # control characters, and format ones such as U+202E (right-to-left override)
_WHITESPACE_RUNS = re.compile(r"\s+")


def clean_filename(raw: str) -> str:
    """The name to record and offer back on download: the last path segment only (old browsers
    send C:\\fakepath\\...), without control or bidi-override characters, at most 255 characters
    with the extension kept."""
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _CONTROL_CATEGORIES)
    name = _WHITESPACE_RUNS.sub(" ", name).strip()
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) < 20:
            name = stem[: MAX_FILENAME_LENGTH - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


def _extension(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    return extension.lower() if dot else ""


def max_upload_bytes() -> int:
    return current_app.config["DPS_MAX_UPLOAD_MB"] * 1024 * 1024


ARCHIVE_EXTENSIONS = frozenset({"docx", "xlsx", "odt", "ods"})
_UNPACK_CHUNK_BYTES = 64 * 1024
_ODF_MANIFEST = "META-INF/manifest.xml"
_ODF_MANIFEST_MAX_BYTES = 1024 * 1024


def _config_int(name: str, default: int) -> int:
    return int(current_app.config.get(name) or default)


def _check_archive(data: bytes, field: str) -> None:
    """Refuse a ZIP-based office file that is an archive bomb, password-protected or damaged.

    The central directory gives the entry count and the declared sizes, so most bombs are
    refused before anything is unpacked. Declared sizes can lie, so every entry is then really
    unpacked, 64 KB at a time, counting the bytes that come out and stopping as soon as a limit
    is passed; zipfile also checks each entry's CRC, so an entry that does not match what it
    declares is refused as damaged."""
    max_unpacked = _config_int("DPS_UPLOAD_MAX_UNPACKED_MB", 100) * 1024 * 1024
    max_ratio = _config_int("DPS_UPLOAD_MAX_RATIO", 100)
    max_entries = _config_int("DPS_UPLOAD_MAX_ENTRIES", 10000)
    too_big = ServiceError(
        f"The selected file unpacks to more than {max_unpacked // (1024 * 1024)} MB: "
        "save it again without embedded files, or split it into smaller files", field)
    too_packed = ServiceError(
        f"The selected file is compressed more than {max_ratio} times, as archive bombs are: "
        "save it again from the program that made it", field)
    damaged = ServiceError("The selected file is damaged: its contents cannot be read. Save it again and upload it", field)
    locked = ServiceError(
        "The selected file is protected with a password: save it without a password and upload it again", field)
    # Unpacked bytes may reach max_ratio times the file's size, and never more than max_unpacked.
    budget = min(max_unpacked, max_ratio * len(data))
    archive = _open_zip(data)
    if archive is None:
        return  # not a ZIP at all: the content check that follows says it is not a real file
    try:
        with archive:
            entries = archive.infolist()
            if len(entries) > max_entries:
                raise ServiceError(
                    f"The selected file holds more than {max_entries:,} parts: save it again, or split it", field)
            if any(info.flag_bits & 0x1 for info in entries):
                raise locked
            declared = sum(info.file_size for info in entries)
            if declared > max_unpacked:
                raise too_big
            if declared > budget:
                raise too_packed
            unpacked = 0
            for info in entries:
                manifest = b"" if info.filename == _ODF_MANIFEST else None
                with archive.open(info) as entry:
                    while chunk := entry.read(_UNPACK_CHUNK_BYTES):
                        unpacked += len(chunk)
                        if unpacked > budget:
                            raise too_big if unpacked > max_unpacked else too_packed
                        if manifest is not None and len(manifest) < _ODF_MANIFEST_MAX_BYTES:
                            manifest += chunk
                if manifest and b"encryption-data" in manifest:
                    raise locked  # ODF's own encryption: LibreOffice's "Save with password"
    except ServiceError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError,
            EOFError, OSError, zlib.error):
        raise damaged from None


def _scan_for_viruses(uploader: User, data: bytes, filename: str, field: str, *, sealed: bool) -> None:
    """Refuse infected files, and any file when the configured scanner cannot give an answer."""
    url = current_app.config.get("DPS_CLAMD_URL")
    if not url:
        return  # development without a scanner: the DPS team's dashboard says uploads are not scanned
    timeout = _config_int("DPS_CLAMD_TIMEOUT_SECONDS", 30)
    try:
        signature = antivirus.scan(data, url, timeout)
    except antivirus.ScannerUnavailable:
        logger.exception("Virus scan of an upload by user %s failed; the file was refused", uploader.id)
        raise ServiceError("The file could not be checked for viruses. Try again in a few minutes.", field) from None
    if signature is None:
        return
    details: dict[str, Any] = {"signature": signature, "sha256": hashlib.sha256(data).hexdigest(),
                               "size_bytes": len(data), "field": field}
    if not sealed:
        details["filename"] = filename
    audit.record("document.refused_infected", "user", uploader.id, details, actor=uploader)
    # Committed now, as refused sealed reads are: the caller rolls back on the ServiceError below,
    # and the attempt must stay on record. store() runs before its callers change anything else.
    db.session.commit()
    logger.warning("Refused an infected upload (%s) by user %s", signature, uploader.id)
    shown = filename if not sealed else "The selected file"
    raise ServiceError(f"{shown} contains a virus ({signature}) and was not saved", field)


def store(uploader: User, file: FileStorage | None, *, field: str = "file", sealed: bool = False) -> Document:
    """Check an uploaded file, store its bytes and add its ``Document`` row (flushed, not committed).

    ``sealed``: the file is sealed content (a bid's). Its audit event then says only that a file
    was uploaded: auditors read the log before the tender deadline, and a size or hash would let
    them confirm a guess at its content. The row keeps them.

    Refusals raise ``ServiceError`` naming ``field``. If storage fails the user is asked to try
    again and nothing is added to the session. A ``DPS_STORAGE_URL`` that names no usable
    backend raises ``ConfigError``: that is for whoever runs the service, not the user. The caller commits; if it rolls back instead, or
    never commits, the stored object is deleted again.

    An infected file is refused and its ``document.refused_infected`` audit event committed at
    once (the caller will roll back): call ``store`` before changing anything else in the
    transaction. With ``DPS_CLAMD_URL`` set, a file that cannot be scanned is refused too.
    """
    if file is None or not file.filename:
        raise ServiceError("Select a file", field)
    filename = clean_filename(file.filename)
    if not filename:
        raise ServiceError("Select a file", field)
    extension = _extension(filename)
    if extension not in ALLOWED:
        raise ServiceError(f"The selected file must be a {ALLOWED_DESCRIPTION}", field)

    limit = max_upload_bytes()
    # One byte past the limit is enough to know it is too big, without reading the rest.
    data = file.stream.read(limit + 1)
    if not data:
        raise ServiceError("The selected file is empty", field)
    if len(data) > limit:
        raise ServiceError(
            f"The selected file must be smaller than {current_app.config['DPS_MAX_UPLOAD_MB']} MB", field)
    content_type, sniff = ALLOWED[extension]
    if extension in ARCHIVE_EXTENSIONS and data.startswith(b"PK\x03\x04"):
        _check_archive(data, field)  # before the sniff, which opens the archive too
    if not sniff(data):
        raise ServiceError(
            f"The selected file is not a real .{extension} file: its contents do not match its name", field)
    if extension == "pdf" and _pdf_needs_password(data):
        raise ServiceError(
            "The selected file is protected with a password: save it without a password and upload it again", field)
    _scan_for_viruses(uploader, data, filename, field, sealed=sealed)

    backend = get_storage()
    document = Document(
        organisation_id=uploader.organisation_id,
        # Made here, never from the user's filename: nothing they type reaches a path or a key.
        storage_key=f"{uploader.organisation_id}/{uuid.uuid4().hex}",
        filename=filename,
        content_type=content_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        uploaded_at=clock.now(),
        uploaded_by_id=uploader.id,
    )
    try:
        backend.put(document.storage_key, data, content_type)
    except StorageError:
        logger.exception("Storing an upload by user %s failed", uploader.id)
        raise ServiceError("The file could not be saved. Try again.", field) from None

    pending = _Unsaved(backend, document.storage_key, document)
    _unsaved(db.session()).append(pending)
    db.session.add(document)
    try:
        db.session.flush()
    except Exception:
        # The row cannot be written, so the object must go now: the caller may not roll back.
        with contextlib.suppress(ValueError):
            _unsaved(db.session()).remove(pending)
        _delete_quietly(backend, document.storage_key)
        raise
    details = {"filename": document.filename, "sealed": True} if sealed else {
        "filename": document.filename,
        "size_bytes": document.size_bytes,
        "sha256": document.sha256,
        "content_type": document.content_type,
    }
    audit.record("document.uploaded", "document", document.id, details, actor=uploader)
    return document


def can_view(user, document: Document) -> bool:
    """The one gate for reading a document. Views call it right after loading a document and
    answer 404 when it says no.

    - A bid's document is sealed content: the bidder's organisation always sees it; anyone else
      only when ``sealed.may_read`` allows (after the deadline and the opening, to the declared
      panel, the DPS team and auditors). A refusal is written to the audit log (and committed,
      see ``sealed.record_refusal``), so attempts before the deadline are detectable.
    - Its own organisation's users: always.
    - A competition's specification: every supplier invited to it.
    - The DPS team and auditors: only evidence of an application that has been submitted. A
      supplier's draft, and anything it removed before submitting, are the supplier's alone.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    # Checked before any other rule, so no broader rule (such as the DPS team's) can open a bid.
    bid = db.session.scalar(select(Bid).join(BidDocument, BidDocument.bid_id == Bid.id)
                            .where(BidDocument.document_id == document.id))
    if bid is not None:
        if user.organisation_id == bid.organisation_id:
            return True
        if sealed.may_read(user, bid.competition, bid.organisation_id):
            return True
        sealed.record_refusal(user, bid.competition, bid, f"bid document {document.id}")
        return False
    if user.organisation_id == document.organisation_id:
        return True
    if _specification_for_invitee(user, document):
        return True
    if user.role in ALL_DOCUMENTS_ROLES:
        return _in_a_submitted_application(document)
    return False


def _specification_for_invitee(user, document: Document) -> bool:
    """A competition's specification is for every supplier invited to it (once published)."""
    from ..models import CompetitionDocument, Invitation

    return db.session.scalar(
        select(CompetitionDocument.id)
        .join(Invitation, Invitation.competition_id == CompetitionDocument.competition_id)
        .where(CompetitionDocument.document_id == document.id, Invitation.organisation_id == user.organisation_id)
    ) is not None


def _in_a_submitted_application(document: Document) -> bool:
    from .. import questionnaire
    from ..models import Answer, Application

    rows = db.session.execute(
        select(Application.questionnaire_version, Answer.question_id, Answer.value)
        .join(Answer.application)
        .where(Application.organisation_id == document.organisation_id, Application.submitted_at.is_not(None))
    ).all()
    for version, question_id, value in rows:
        question = questionnaire.load(version).question(question_id)
        # JSON containment differs between SQLite and PostgreSQL, so the few answers of one
        # organisation are checked here.
        if question is not None and question.type == "file" and document.id in (value or []):
            return True
    return False


def open_for_download(document: Document, *, actor: User | None = None) -> BaseResponse:
    """The response that hands ``document`` to the browser, as an attachment.

    Local storage: the bytes, checked against the recorded SHA-256, with the recorded type,
    ``Content-Disposition: attachment`` and ``nosniff``. S3: a redirect to a presigned URL that
    works for ``PRESIGNED_URL_SECONDS``.

    This function does not check permission: the caller must have checked
    ``can_view(user, document)`` first. It writes the ``document.downloaded`` audit event
    (``actor`` defaults to the signed-in user) and flushes; the caller commits. A storage
    failure raises ``StorageError``.
    """
    backend = get_storage()
    url = backend.download_url(document.storage_key, document.filename, document.content_type)
    if url is None:
        data = backend.get(document.storage_key)
        if hashlib.sha256(data).hexdigest() != document.sha256:
            # Changed or damaged on disk since upload: serving it would hand out a file that is
            # not the one on record.
            raise StorageError(f"document {document.id}: stored bytes do not match the recorded SHA-256")
        response: BaseResponse = Response(data, mimetype=document.content_type)
        response.headers["Content-Disposition"] = content_disposition(document.filename)
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Should a browser render it anyway, nothing in it may run script on this site's origin.
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    else:
        # The presigned URL carries the disposition and type, so S3 sends those headers itself.
        response = redirect(url, 302)
    # Neither the file nor a redirect carrying a signed URL may be kept by a shared cache.
    response.headers["Cache-Control"] = "private, no-store"
    # A bid's document name is sealed content too (the audit log is open to auditors before
    # the deadline): its download is recorded by id alone.
    is_bid_document = db.session.scalar(select(BidDocument.id).where(BidDocument.document_id == document.id)) is not None
    audit.record(
        "document.downloaded",
        "document",
        document.id,
        {"filename": None if is_bid_document else document.filename,
         "sha256": None if is_bid_document else document.sha256,
         "via": "app" if url is None else "presigned_url"},
        actor=actor,
    )
    return response


# --- Objects stored in a transaction that never commits ------------------------------------
#
# Each store() notes (backend, key, document) on the session. When the outermost transaction
# commits, the note is dropped, except for documents whose row did not survive (inserted inside
# a savepoint that was rolled back, or deleted again): their objects are deleted. When the
# outermost transaction ends any other way (rollback, or the session closed without a commit),
# every noted object is deleted. Either way no object outlives its row's chance of existing.

_UNSAVED_KEY = "dps_unsaved_documents"


@dataclass(eq=False)
class _Unsaved:
    backend: Storage
    key: str
    document: Document


def _unsaved(session: Session) -> list[_Unsaved]:
    return session.info.setdefault(_UNSAVED_KEY, [])


def _delete_quietly(backend: Storage, key: str) -> None:
    # Runs while another error is being handled or inside session events: it must never raise.
    try:
        backend.delete(key)
    except StorageError:
        logger.exception("Could not delete the stored object %r of a document that was not saved; "
                         "it is an orphan and can be removed by hand", key)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released; the outer transaction can still roll back
    for entry in session.info.pop(_UNSAVED_KEY, None) or ():
        state = inspect(entry.document)
        if not state.has_identity or state.deleted:
            _delete_quietly(entry.backend, entry.key)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return  # a savepoint: what happens to its rows is settled when the outer transaction ends
    # A commit has already taken its entries in _after_commit; anything left was never committed.
    for entry in session.info.pop(_UNSAVED_KEY, None) or ():
        _delete_quietly(entry.backend, entry.key)
