"""Hostile uploads (issue 14, items 1 and 2): a virus, zip bombs, an HTML page dressed as a PDF,
locked files, and a virus scanner that is down or hangs. Each is refused by its field with a
plain message, and nothing is stored. The scanner is a real clamd (tests/clamd.py), never a mock."""
from __future__ import annotations

import io
import itertools
import socket
import struct
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest
from flask import Flask
from sqlalchemy import select

from dps.extensions import db
from dps.models import AuditEvent, User
from dps.services import ServiceError, documents
from tests.clamd import EICAR, EICAR_SIGNATURE
from tests.conftest import Factory, sign_in
from tests.test_documents import (
    DOCX, ODT, PDF, XLSX, _add_test_pages, _documents_app, document_count, files_under, upload,
)

MB = 1024 * 1024
COULD_NOT_CHECK = "The file could not be checked for viruses. Try again in a few minutes."
_UPLOADERS = itertools.count(1)
LOCKED = "The selected file is protected with a password: save it without a password and upload it again"


def _real_pdf(**encrypt) -> bytes:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(595, 842)
    if encrypt:
        writer.encrypt(algorithm="AES-256", **encrypt)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _docx_with(name: str, body: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        archive.writestr("word/document.xml", b"<w:document/>")
        archive.writestr(name, body)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """A .docx holding a 200 MB entry of zeros, about 200 KB packed (as in the issue)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        archive.writestr("word/document.xml", b"<w:document/>")
        with archive.open("word/media/padding.bin", "w") as entry:
            zeros = bytes(MB)
            for _ in range(200):
                entry.write(zeros)
    return buffer.getvalue()


def _lying_about_its_size(data: bytes, name: str, declared: int) -> bytes:
    """Rewrite the uncompressed size ``name`` declares (local header and central directory)."""
    out = bytearray(data)
    end = data.rindex(b"PK\x05\x06")
    count, _size, offset = struct.unpack("<HII", data[end + 10:end + 20])
    for _ in range(count):
        assert out[offset:offset + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack("<HHH", out[offset + 28:offset + 34])
        header = struct.unpack("<I", out[offset + 42:offset + 46])[0]
        if out[offset + 46:offset + 46 + name_len].decode() == name:
            struct.pack_into("<I", out, offset + 24, declared)
            struct.pack_into("<I", out, header + 22, declared)
        offset += 46 + name_len + extra_len + comment_len
    return bytes(out)


@pytest.fixture
def storage_root(tmp_path) -> Path:
    return tmp_path / "documents"


@pytest.fixture
def scanned_app(database_url, storage_root, clamd) -> Iterator[Flask]:
    application = _documents_app(database_url, DPS_STORAGE_URL=f"file://{storage_root}", DPS_CLAMD_URL=clamd.url)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def _app_scanning_with(database_url: str, storage_root: Path, url: str, **extra) -> Flask:
    return _documents_app(database_url, DPS_STORAGE_URL=f"file://{storage_root}", DPS_CLAMD_URL=url, **extra)


def _refused(app: Flask, data: bytes, filename: str, field: str = "evidence") -> ServiceError:
    """Upload as a new supplier; the refusal, after checking nothing was stored."""
    supplier = Factory(app).user("supplier", email=f"uploader{next(_UPLOADERS)}@example.org")
    with app.app_context():
        user = db.session.get(User, supplier["id"])
        with pytest.raises(ServiceError) as refused:
            documents.store(user, upload(data, filename), field=field)
        db.session.rollback()
        assert document_count() == 0
    assert refused.value.field == field
    return refused.value


# --- Viruses --------------------------------------------------------------------------------

def test_the_eicar_file_is_refused_audited_and_not_stored(scanned_app, storage_root):
    _add_test_pages(scanned_app)
    supplier = Factory(scanned_app).user("supplier")
    browser = scanned_app.test_client()
    sign_in(browser, supplier["email"])
    response = browser.post("/test/documents", data={"file": (io.BytesIO(EICAR), "readme.txt", "text/plain")})
    assert response.status_code == 400
    message = response.get_data(as_text=True)
    assert message.startswith(f"readme.txt contains a virus ({EICAR_SIGNATURE}")
    assert message.endswith(") and was not saved")
    assert files_under(storage_root) == []
    with scanned_app.app_context():
        assert document_count() == 0
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "document.refused_infected"))
        assert event is not None, "the refusal was rolled back with the request"
        assert event.actor_user_id == supplier["id"]
        assert event.data["signature"].startswith(EICAR_SIGNATURE)
        assert event.data["sha256"] == "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
        assert event.data["filename"] == "readme.txt" and event.data["field"] == "file"
        assert "X5O!P" not in str(event.data)  # the file itself is never in the log


def test_a_virus_inside_a_docx_is_found_too(scanned_app, storage_root):
    error = _refused(scanned_app, _docx_with("word/embeddings/eicar.com", EICAR), "Method statement.docx")
    assert f"contains a virus ({EICAR_SIGNATURE}" in error.message
    assert files_under(storage_root) == []


def test_a_sealed_upload_keeps_its_name_out_of_the_message_and_the_log(scanned_app):
    supplier = Factory(scanned_app).user("supplier")
    with scanned_app.app_context():
        user = db.session.get(User, supplier["id"])
        with pytest.raises(ServiceError) as refused:
            documents.store(user, upload(EICAR, "bid-document.txt"), field="document", sealed=True)
        db.session.rollback()
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "document.refused_infected"))
        assert "filename" not in event.data
    assert refused.value.message.startswith("The selected file contains a virus")


def test_a_clean_pdf_is_scanned_and_stored(scanned_app, storage_root):
    supplier = Factory(scanned_app).user("supplier")
    data = _real_pdf()
    with scanned_app.app_context():
        user = db.session.get(User, supplier["id"])
        document = documents.store(user, upload(data, "Insurance certificate.pdf"))
        db.session.commit()
        assert document.content_type == "application/pdf"
        assert document_count() == 1
    assert [path.read_bytes() for path in files_under(storage_root)] == [data]


def test_clamd_stopped_refuses_a_real_pdf_and_stores_nothing(database_url, storage_root, clamd, tmp_path):
    # Where clamd listened: the socket file of a daemon that is gone (as after `systemctl stop`).
    gone = Path(tempfile.mkdtemp(prefix="dps-gone-")) / "clamd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(gone))
    listener.close()  # the file stays; nothing listens on it: connect() is refused
    app = _app_scanning_with(database_url, storage_root, f"unix://{gone}")
    assert _refused(app, _real_pdf(), "accounts.pdf").message == COULD_NOT_CHECK
    assert files_under(storage_root) == []
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "document.refused_infected")) is None
        db.engine.dispose()


def test_no_daemon_on_the_tcp_port_refuses(database_url, storage_root):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = _app_scanning_with(database_url, storage_root, f"tcp://127.0.0.1:{port}")
    assert _refused(app, PDF, "accounts.pdf").message == COULD_NOT_CHECK
    assert files_under(storage_root) == []


def test_a_scanner_that_never_answers_times_out_and_refuses(database_url, storage_root):
    """A socket that accepts and reads but never replies: the scan gives up after the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)
            conn.settimeout(0.2)
            while not stop.is_set():
                try:
                    if not conn.recv(65536):
                        break
                except OSError:
                    continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        app = _app_scanning_with(database_url, storage_root, f"tcp://127.0.0.1:{port}", DPS_CLAMD_TIMEOUT_SECONDS=1)
        assert _refused(app, PDF, "accounts.pdf").message == COULD_NOT_CHECK
        assert held, "the scan never reached the silent scanner"
        assert files_under(storage_root) == []
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_without_a_scanner_the_dps_team_is_told_uploads_are_not_scanned(database_url, storage_root, clamd):
    warning = "Uploads are not scanned for viruses: set DPS_CLAMD_URL"
    for url, shown in ((None, True), (clamd.url, False)):
        app = _app_scanning_with(database_url, storage_root, url)
        admin = Factory(app).user("dps_admin", email=f"team-{shown}@example.org")
        browser = app.test_client()
        sign_in(browser, admin["email"])
        page = browser.get("/team/").get_data(as_text=True)
        assert (warning in page) is shown, page
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- Archives -------------------------------------------------------------------------------

def test_a_zip_bomb_docx_is_refused(scanned_app, storage_root, zip_bomb):
    assert len(zip_bomb) < 1 * MB
    error = _refused(scanned_app, zip_bomb, "Method statement.docx")
    assert error.message == ("The selected file unpacks to more than 100 MB: save it again without embedded "
                             "files, or split it into smaller files")
    assert files_under(storage_root) == []


def test_the_ratio_limit_catches_a_bomb_under_the_size_limit(scanned_app):
    bomb = _docx_with("word/media/padding.bin", bytes(20 * MB))  # 20 MB in about 20 KB
    error = _refused(scanned_app, bomb, "pricing.docx")
    assert error.message == ("The selected file is compressed more than 100 times, as archive bombs are: "
                             "save it again from the program that made it")


def test_declared_sizes_are_not_believed(scanned_app):
    """An entry declaring 100 bytes that unpacks to 5 MB: the unpacking itself catches it."""
    liar = _lying_about_its_size(_docx_with("word/media/padding.bin", bytes(5 * MB)), "word/media/padding.bin", 100)
    with zipfile.ZipFile(io.BytesIO(liar)) as archive:
        assert sum(info.file_size for info in archive.infolist()) < 1000  # what it claims
    error = _refused(scanned_app, liar, "tender.docx")
    assert error.message.startswith("The selected file is damaged")


def test_limits_are_configurable(database_url, storage_root, clamd):
    app = _app_scanning_with(database_url, storage_root, clamd.url, DPS_UPLOAD_MAX_ENTRIES=2)
    many = _docx_with("word/styles.xml", b"<w:styles/>")  # three entries
    assert _refused(app, many, "a.docx").message == "The selected file holds more than 2 parts: save it again, or split it"
    app = _app_scanning_with(database_url, storage_root, clamd.url, DPS_UPLOAD_MAX_UNPACKED_MB=1,
                             DPS_UPLOAD_MAX_RATIO=1000)
    big = _docx_with("word/media/image.bin", bytes(2 * MB))
    assert _refused(app, big, "b.docx").message.startswith("The selected file unpacks to more than 1 MB")


def test_a_zip_with_encrypted_entries_is_refused(scanned_app):
    data = bytearray(DOCX)
    # Set the "encrypted" flag on every entry, as `zip -e` does.
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            struct.pack_into("<H", data, start + flag_at, struct.unpack_from("<H", data, start + flag_at)[0] | 1)
            start += 4
    assert _refused(scanned_app, bytes(data), "locked.docx").message == LOCKED


def test_a_password_protected_odt_is_refused(scanned_app):
    manifest = (b'<manifest:manifest><manifest:file-entry manifest:full-path="content.xml">'
                b'<manifest:encryption-data manifest:checksum-type="SHA1/1K"/></manifest:file-entry></manifest:manifest>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), b"application/vnd.oasis.opendocument.text",
                         compress_type=zipfile.ZIP_STORED)
        archive.writestr("content.xml", b"\x8a\x13 encrypted bytes")
        archive.writestr("META-INF/manifest.xml", manifest)
    assert _refused(scanned_app, buffer.getvalue(), "policy.odt").message == LOCKED


def test_ordinary_office_files_pass_the_archive_checks(scanned_app, storage_root):
    supplier = Factory(scanned_app).user("supplier")
    with scanned_app.app_context():
        user = db.session.get(User, supplier["id"])
        for data, name in ((DOCX, "a.docx"), (XLSX, "b.xlsx"), (ODT, "c.odt")):
            documents.store(user, upload(data, name))
        db.session.commit()
        assert document_count() == 3


# --- PDFs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"%PDF-1.7\n<!DOCTYPE html><html><body><script>fetch('/dps/users')</script></body></html>\n",
    b"%PDF-<html><script>alert(document.cookie)</script></html>",
    b"%PDF-1.4\n" + b"MZ\x90\x00" + bytes(200),
])
def test_a_file_that_only_starts_like_a_pdf_is_refused(scanned_app, storage_root, body):
    error = _refused(scanned_app, body, "evidence.pdf")
    assert error.message == "The selected file is not a real .pdf file: its contents do not match its name"
    assert files_under(storage_root) == []


def test_a_pdf_that_needs_a_password_to_open_is_refused(scanned_app):
    assert _refused(scanned_app, _real_pdf(user_password="s3cret", owner_password="owner"), "locked.pdf").message == LOCKED


def test_a_pdf_with_only_an_owner_password_is_accepted(scanned_app):
    """"Protected" against printing or copying, but opens for anyone: evaluators can read it."""
    supplier = Factory(scanned_app).user("supplier")
    with scanned_app.app_context():
        user = db.session.get(User, supplier["id"])
        documents.store(user, upload(_real_pdf(user_password="", owner_password="owner"), "restricted.pdf"))
        db.session.commit()
        assert document_count() == 1


def test_a_pdf_downloads_as_an_attachment_never_sniffed(scanned_app):
    _add_test_pages(scanned_app)
    supplier = Factory(scanned_app).user("supplier")
    browser = scanned_app.test_client()
    sign_in(browser, supplier["email"])
    data = _real_pdf()
    created = browser.post("/test/documents", data={"file": (io.BytesIO(data), "Report.pdf", "text/html")})
    assert created.status_code == 201, created.get_data(as_text=True)
    response = browser.get(f"/test/documents/{created.get_data(as_text=True)}")
    assert response.status_code == 200 and response.data == data
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="Report.pdf"')
    assert response.headers["X-Content-Type-Options"] == "nosniff"
