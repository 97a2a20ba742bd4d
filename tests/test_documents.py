"""Documents: what is accepted, what the user is told when it is not, where the bytes go, and that a
failure anywhere leaves neither a row without a file nor a file without a row."""
from __future__ import annotations

import hashlib
import io
import socket
import struct
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from flask import Flask, abort, request
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from dps import clock
from dps.config import ConfigError
from dps.database import writes_on_safe_request
from dps.extensions import csrf, db
from dps.models import AuditEvent, Document, User
from dps.services import ServiceError, documents
from dps.storage import LocalStorage, S3Storage, StorageError, content_disposition, get_storage
from tests.conftest import DEFAULT_NOW, Factory, make_app, sign_in

MB = 1024 * 1024
NOT_SAVED = "The file could not be saved. Try again."


# --- Sample files, built the way the real programs build them ---------------------------------

def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def _zip(entries: dict[str, bytes], stored_first: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if stored_first:  # ODF: `mimetype` first and uncompressed
            archive.writestr(zipfile.ZipInfo(stored_first), entries[stored_first], compress_type=zipfile.ZIP_STORED)
        for name, body in entries.items():
            if name != stored_first:
                archive.writestr(name, body)
    return buffer.getvalue()


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
PNG = _png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
DOCX = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
XLSX = _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
ODT = _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<office:document-content/>"},
           stored_first="mimetype")
ODS = _zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
           stored_first="mimetype")
CSV = "\ufeffSupplier,Amount\nCaerdydd Cyf,£1,234.56\n".encode("utf-8")  # Excel's "CSV UTF-8" has a BOM
TXT = "Method statement – version 2\n".encode("utf-8")
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"This program cannot be run in DOS mode"

ACCEPTED = [
    ("Tender response.pdf", PDF, "application/pdf"),
    ("site-photo.png", PNG, "image/png"),
    ("IMG_0042.JPEG", JPEG, "image/jpeg"),
    ("Method statement.docx", DOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("pricing.xlsx", XLSX, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("policy.odt", ODT, "application/vnd.oasis.opendocument.text"),
    ("rates.ods", ODS, "application/vnd.oasis.opendocument.spreadsheet"),
    ("invoices.csv", CSV, "text/csv"),
    ("notes.txt", TXT, "text/plain"),
]


def upload(data: bytes, filename: str, content_type: str = "application/octet-stream") -> FileStorage:
    # The browser's content type is deliberately wrong: the service must not believe it.
    return FileStorage(stream=io.BytesIO(data), filename=filename, content_type=content_type)


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def document_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Document))


# --- Fixtures -------------------------------------------------------------------------------

def _documents_app(database_url: str, **extra) -> Flask:
    application = make_app(database_url, **extra)
    with application.app_context():
        clock.set_simulated(clock.parse_london(DEFAULT_NOW), frozen=True)
        db.session.commit()
    return application


@pytest.fixture
def storage_root(tmp_path) -> Path:
    return tmp_path / "documents"


@pytest.fixture
def docs_app(database_url, storage_root) -> Iterator[Flask]:
    """The app with documents in a folder of this test's own (never the repository's instance/)."""
    application = _documents_app(database_url, DPS_STORAGE_URL=f"file://{storage_root}")
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def people(docs_app) -> Factory:
    return Factory(docs_app)


@pytest.fixture
def supplier(people) -> dict:
    return people.user("supplier")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _add_test_pages(app: Flask) -> None:
    """A bare upload form handler and download link, as the real pages will use the service."""

    @login_required
    def upload_page():
        try:
            document = documents.store(current_user._get_current_object(), request.files.get("file"))
        except ServiceError as error:
            db.session.rollback()
            return error.message, 400
        db.session.commit()
        return str(document.id), 201

    @login_required
    @writes_on_safe_request
    def download_page(document_id: int):
        document = db.get_or_404(Document, document_id)
        if not documents.can_view(current_user, document):
            abort(404)
        response = documents.open_for_download(document)
        db.session.commit()
        return response

    app.add_url_rule("/test/documents", view_func=upload_page, methods=["POST"])
    app.add_url_rule("/test/documents/<int:document_id>", view_func=download_page)
    csrf.exempt(upload_page)


# --- Accepted files ---------------------------------------------------------------------------

def test_real_files_are_accepted_with_size_hash_and_a_server_made_key(docs_app, supplier, storage_root):
    with docs_app.app_context():
        user = db.session.get(User, supplier["id"])
        for filename, data, content_type in ACCEPTED:
            document = documents.store(user, upload(data, filename))
            db.session.commit()

            assert document.filename == filename
            assert document.content_type == content_type
            assert document.size_bytes == len(data)
            assert document.sha256 == hashlib.sha256(data).hexdigest()
            assert document.organisation_id == supplier["organisation_id"]
            assert document.uploaded_by_id == supplier["id"]
            key_org, key_name = document.storage_key.split("/")
            assert key_org == str(supplier["organisation_id"])
            assert len(key_name) == 32 and filename.rsplit(".", 1)[0] not in document.storage_key
            assert (storage_root / key_org / key_name).read_bytes() == data

            event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()
            assert (event.action, event.object_id, event.actor_user_id) == ("document.uploaded", str(document.id), supplier["id"])
            assert event.data == {"filename": filename, "size_bytes": len(data), "sha256": document.sha256,
                                  "content_type": content_type}
        assert document_count() == len(ACCEPTED)
    # Nothing but the documents themselves: no temporary files left beside them.
    assert len(files_under(storage_root)) == len(ACCEPTED)


def test_the_recorded_filename_is_the_last_path_part_without_control_characters(docs_app, supplier):
    with docs_app.app_context():
        user = db.session.get(User, supplier["id"])
        document = documents.store(user, upload(PDF, "C:\\fakepath\\Annual \u202ereport\x07  2024.pdf"))
        assert document.filename == "Annual report 2024.pdf"
        long = documents.store(user, upload(PDF, "a" * 400 + ".pdf"))
        assert len(long.filename) == 255 and long.filename.endswith("a.pdf")
        db.session.commit()


# --- Refused files: what the user is told -------------------------------------------------------

def _refusal(app: Flask, user_id: int, file: FileStorage | None, field: str = "file") -> ServiceError:
    with app.app_context():
        user = db.session.get(User, user_id)
        with pytest.raises(ServiceError) as refused:
            documents.store(user, file, field=field)
        db.session.rollback()
        assert document_count() == 0
        return refused.value


def test_no_file_or_an_empty_one_is_refused(docs_app, supplier, storage_root):
    for file in (None, FileStorage(stream=io.BytesIO(b""), filename="")):
        error = _refusal(docs_app, supplier["id"], file, field="evidence")
        assert (error.message, error.field) == ("Select a file", "evidence")
    error = _refusal(docs_app, supplier["id"], upload(b"", "blank.pdf"))
    assert (error.message, error.field) == ("The selected file is empty", "file")
    assert files_under(storage_root) == []


def test_a_type_not_on_the_list_is_refused(docs_app, supplier):
    for filename in ("setup.exe", "page.html", "README", "archive.pdf.zip"):
        error = _refusal(docs_app, supplier["id"], upload(PDF, filename))
        assert error.message == "The selected file must be a PDF, DOCX, XLSX, ODT, ODS, CSV, TXT, PNG or JPEG", filename


# One app for all the cases: each app costs a database reset, and these need nothing but the service.
MISMATCHED = [
    ("report.pdf", EXE),
    ("x.docx", _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})),
    ("x.docx", b"PK\x03\x04 not really a zip at all"),
    ("budget.xlsx", DOCX),
    ("photo.jpg", PNG),
    ("logo.png", JPEG),
    ("policy.ods", ODT),
    ("policy.odt", _zip({"mimetype": b"x" * 500})),
    ("data.csv", b"name\x00,value\n"),
    ("notes.txt", "Café".encode("latin-1")),
]


def test_contents_that_do_not_match_the_extension_are_refused(docs_app, supplier, storage_root):
    for filename, data in MISMATCHED:
        error = _refusal(docs_app, supplier["id"], upload(data, filename, "application/pdf"))
        extension = filename.rsplit(".", 1)[1]
        assert error.message == f"The selected file is not a real .{extension} file: its contents do not match its name", filename
    assert files_under(storage_root) == []


def test_the_size_limit_is_configurable_and_inclusive(database_url, tmp_path):
    root = tmp_path / "small"
    app = _documents_app(database_url, DPS_STORAGE_URL=f"file://{root}", DPS_MAX_UPLOAD_MB=1)
    _add_test_pages(app)
    supplier = Factory(app).user("supplier")
    browser = app.test_client()
    assert sign_in(browser, supplier["email"]).status_code == 302

    too_big = PDF + b"\n" * (MB + 1 - len(PDF))
    response = browser.post("/test/documents", data={"file": (io.BytesIO(too_big), "big.pdf")})
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "The selected file must be smaller than 1 MB"
    assert files_under(root) == []

    exactly = too_big[:MB]
    response = browser.post("/test/documents", data={"file": (io.BytesIO(exactly), "limit.pdf")})
    assert response.status_code == 201
    with app.app_context():
        assert db.session.get(Document, int(response.get_data(as_text=True))).size_bytes == MB
        db.session.remove()
        db.engine.dispose()


# --- Failures leave nothing half-saved ------------------------------------------------------------

def test_local_storage_failing_asks_to_try_again_and_saves_nothing(database_url, tmp_path):
    (tmp_path / "storage").mkdir()
    blocker = tmp_path / "storage" / "not-a-folder"
    blocker.write_text("a file where the storage folder should be")  # root can write anywhere; a file cannot be entered
    app = _documents_app(database_url, DPS_STORAGE_URL=f"file://{blocker / 'documents'}")
    supplier = Factory(app).user("supplier")
    error = _refusal(app, supplier["id"], upload(PDF, "report.pdf"), field="evidence")
    assert (error.message, error.field) == (NOT_SAVED, "evidence")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "document.uploaded")) == 0
    assert files_under(tmp_path / "storage") == [blocker]


def test_a_database_failure_after_storing_removes_the_object(docs_app, supplier, storage_root):
    with docs_app.app_context():
        real = db.session.get(User, supplier["id"])
        # An organisation that does not exist: the row's foreign key fails when it is flushed.
        ghost = User(id=real.id, organisation_id=987654, email=real.email, role="supplier")
        with pytest.raises(IntegrityError):
            documents.store(ghost, upload(PDF, "report.pdf"))
        db.session.rollback()
        assert document_count() == 0
    assert files_under(storage_root) == []


def test_a_later_failure_in_the_same_request_removes_the_object(docs_app, supplier, storage_root):
    with docs_app.app_context():
        user = db.session.get(User, supplier["id"])
        backend = get_storage()

        rolled_back = documents.store(user, upload(PDF, "a.pdf")).storage_key
        assert backend.exists(rolled_back)
        db.session.rollback()  # e.g. the form's next service refused
        assert not backend.exists(rolled_back)

        # Never committed: the request ends (the session is closed) without a commit.
        abandoned = documents.store(user, upload(PDF, "b.pdf")).storage_key
        db.session.close()
        assert not backend.exists(abandoned)

        # Stored inside a savepoint that was rolled back, while the outer transaction commits.
        user = db.session.get(User, supplier["id"])
        savepoint = db.session.begin_nested()
        in_savepoint = documents.store(user, upload(PDF, "c.pdf")).storage_key
        savepoint.rollback()
        kept = documents.store(user, upload(PDF, "d.pdf"))
        db.session.commit()
        assert not backend.exists(in_savepoint)
        assert backend.exists(kept.storage_key)

        # After a commit the object belongs to its row; a later rollback must not touch it.
        db.session.rollback()
        assert backend.exists(kept.storage_key)
        assert [d.filename for d in db.session.scalars(select(Document))] == ["d.pdf"]
    assert len(files_under(storage_root)) == 1


# --- Downloads ----------------------------------------------------------------------------------

def test_local_download_is_an_attachment_for_permitted_users_only(docs_app, people, storage_root):
    _add_test_pages(docs_app)
    owner = people.user("supplier")
    colleague = people.user("supplier", organisation_id=owner["organisation_id"])
    other = people.user("supplier")
    admin = people.user("dps_admin")

    browser = docs_app.test_client()
    sign_in(browser, owner["email"])
    created = browser.post("/test/documents", data={"file": (io.BytesIO(CSV), "Rhestr costau – terfynol.csv", "text/html")})
    assert created.status_code == 201, created.get_data(as_text=True)
    url = f"/test/documents/{created.get_data(as_text=True)}"

    for person in (owner, colleague):
        browser = docs_app.test_client()
        sign_in(browser, person["email"])
        response = browser.get(url)
        assert response.status_code == 200
        assert response.data == CSV
        assert response.mimetype == "text/csv"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"] == (
            "attachment; filename=\"Rhestr costau _ terfynol.csv\"; "
            "filename*=UTF-8''Rhestr%20costau%20%E2%80%93%20terfynol.csv")

    for person in (other, admin):  # the team sees only evidence of a submitted application
        stranger = docs_app.test_client()
        sign_in(stranger, person["email"])
        assert stranger.get(url).status_code == 404

    with docs_app.app_context():
        downloads = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "document.downloaded")
                                       .order_by(AuditEvent.id)).all()
        assert [event.actor_user_id for event in downloads] == [owner["id"], colleague["id"]]


def test_a_download_whose_bytes_changed_on_disk_is_not_served(docs_app, supplier, storage_root):
    with docs_app.app_context():
        user = db.session.get(User, supplier["id"])
        document = documents.store(user, upload(PDF, "a.pdf"))
        db.session.commit()
        (storage_root / document.storage_key).write_bytes(PDF + b"tampered")
        with pytest.raises(StorageError):
            documents.open_for_download(document, actor=user)


def test_can_view_is_the_organisation_the_dps_team_and_auditors(docs_app, people):
    owner = people.user("supplier")
    people_who_may = [owner, people.user("supplier", organisation_id=owner["organisation_id"])]
    # Not attached to a submitted application: the DPS team and auditors may not see it yet
    # (tests/test_applications.py shows them seeing submitted evidence).
    people_who_may_not = [people.user("supplier"), people.user("buyer"), people.user("dps_admin"),
                          people.user("auditor")]
    with docs_app.app_context():
        document = documents.store(db.session.get(User, owner["id"]), upload(PDF, "a.pdf"))
        db.session.commit()
        for person in people_who_may:
            assert documents.can_view(db.session.get(User, person["id"]), document), person
        for person in people_who_may_not:
            assert not documents.can_view(db.session.get(User, person["id"]), document), person
        assert not documents.can_view(None, document)


# --- S3 -----------------------------------------------------------------------------------------

def test_s3_round_trip_through_a_presigned_url(database_url, aws_env, moto_endpoint):
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-2").create_bucket(
        Bucket="test-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    app = _documents_app(database_url, DPS_STORAGE_URL="s3://test-bucket/dps", DPS_S3_ENDPOINT_URL=moto_endpoint)
    supplier = Factory(app).user("supplier")
    inspector = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-2")

    with app.app_context():
        backend = get_storage()
        assert isinstance(backend, S3Storage) and backend.client.meta.region_name == "eu-west-2"
        user = db.session.get(User, supplier["id"])
        document = documents.store(user, upload(DOCX, "Datganiad dull – 2024.docx"))
        db.session.commit()

        stored = inspector.get_object(Bucket="test-bucket", Key=f"dps/{document.storage_key}")
        assert stored["Body"].read() == DOCX
        assert stored["ContentType"] == document.content_type

        response = documents.open_for_download(document, actor=user)
        db.session.commit()
        assert response.status_code == 302
        assert response.headers["Cache-Control"] == "private, no-store"
        location = response.headers["Location"]
        parts = urlsplit(location)
        assert (parts.scheme, parts.netloc) == ("http", moto_endpoint.removeprefix("http://"))
        assert parts.path == f"/test-bucket/dps/{document.storage_key}"
        query = parse_qs(parts.query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["60"]
        assert "/eu-west-2/s3/" in query["X-Amz-Credential"][0]
        assert query["response-content-disposition"] == [content_disposition("Datganiad dull – 2024.docx")]
        with urllib.request.urlopen(location, timeout=5) as fetched:
            assert fetched.read() == DOCX
            assert fetched.headers["Content-Type"] == document.content_type
            assert fetched.headers["Content-Disposition"] == content_disposition("Datganiad dull – 2024.docx")

        # A rollback after storing removes the object from the bucket too.
        key = documents.store(user, upload(PDF, "draft.pdf")).storage_key
        assert backend.exists(key)
        db.session.rollback()
        assert not backend.exists(key)
        db.session.remove()
        db.engine.dispose()


def test_unreachable_s3_asks_to_try_again_and_saves_nothing(database_url, aws_env):
    app = _documents_app(database_url, DPS_STORAGE_URL="s3://test-bucket/dps",
                         DPS_S3_ENDPOINT_URL=f"http://127.0.0.1:{_closed_port()}")
    supplier = Factory(app).user("supplier")
    error = _refusal(app, supplier["id"], upload(PDF, "report.pdf"))
    assert (error.message, error.field) == (NOT_SAVED, "file")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


# --- The storage layer itself ---------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "/etc/passwd", "../secrets", "1/../../x", "1//x", "1/./x", "1\\x", "1/x\x00"])
def test_local_storage_refuses_keys_that_could_leave_its_folder(tmp_path, key):
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).put(key, b"x", "text/plain")


def test_content_disposition_is_safe_for_any_filename():
    assert content_disposition('Café "final"\\draft.pdf') == (
        "attachment; filename=\"Cafe _final__draft.pdf\"; filename*=UTF-8''Caf%C3%A9%20%22final%22%5Cdraft.pdf")
    assert content_disposition("日本語") == "attachment; filename=\"___\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E"


def test_storage_url_choices(docs_app, storage_root, aws_env):
    with docs_app.app_context():
        backend = get_storage()
        assert isinstance(backend, LocalStorage) and backend.root == storage_root
        assert get_storage() is backend  # built once per app
        docs_app.config["DPS_STORAGE_URL"] = None
        assert get_storage().root == Path(docs_app.instance_path) / "documents"
        docs_app.config["DPS_STORAGE_URL"] = "s3://bucket/some/prefix/"
        s3 = get_storage()
        assert (s3.bucket, s3.prefix, s3.object_key("1/abc")) == ("bucket", "some/prefix", "some/prefix/1/abc")
        for wrong in ("ftp://example.org/x", "file://server/share", "s3:///prefix"):
            docs_app.config["DPS_STORAGE_URL"] = wrong
            with pytest.raises(ConfigError, match="DPS_STORAGE_URL"):
                get_storage()
