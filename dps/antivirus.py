"""Scanning uploads with ClamAV's daemon, clamd (DESIGN 5 and 8).

A small client of clamd's INSTREAM command: ``zINSTREAM\\0``, then the file in chunks, each
preceded by its length as 4 bytes big-endian, then a zero-length chunk; clamd answers one
NUL-terminated line: ``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR``.

``DPS_CLAMD_URL`` names the daemon: ``unix:///run/clamav/clamd.ctl`` (a Unix socket, Debian's
default) or ``tcp://127.0.0.1:3310``. ``DPS_CLAMD_TIMEOUT_SECONDS`` bounds a whole scan,
connection included. Anything but a clear ``OK`` or ``FOUND`` (no daemon, a timeout, a reply
that is not understood, clamd's own ``ERROR`` such as its StreamMaxLength being exceeded) raises
``ScannerUnavailable``: the caller must then refuse the file, never store it unscanned.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .config import ConfigError

CHUNK_BYTES = 64 * 1024
_MAX_REPLY_BYTES = 4096  # a reply is one short line; more than this is not clamd talking


class ScannerUnavailable(Exception):
    """The file could not be scanned (daemon unreachable, too slow, or an error reply)."""


@dataclass(frozen=True)
class Address:
    family: int
    target: str | tuple[str, int]

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix://{self.target}"
        host, port = self.target
        return f"tcp://{host}:{port}"


def parse_url(url: str) -> Address:
    """The socket a ``DPS_CLAMD_URL`` names; ``ConfigError`` when it names none."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = unquote(parts.netloc + parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"DPS_CLAMD_URL {url!r}: a Unix socket is written unix:///absolute/path")
        return Address(socket.AF_UNIX, path)
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"DPS_CLAMD_URL {url!r}: the port is not a number") from exc
        if not parts.hostname or port is None:
            raise ConfigError(f"DPS_CLAMD_URL {url!r}: a TCP address is written tcp://host:port (clamd's is 3310)")
        return Address(socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET, (parts.hostname, port))
    raise ConfigError(f"DPS_CLAMD_URL must start with unix:// or tcp://, not {url!r}")


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("clamd did not answer in time")
        return remaining


def _connect(address: Address, deadline: _Deadline) -> socket.socket:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(deadline.left())
        sock.connect(address.target)
    except BaseException:
        sock.close()
        raise
    return sock


def _reply(sock: socket.socket, deadline: _Deadline) -> str:
    received = b""
    while b"\0" not in received:
        sock.settimeout(deadline.left())
        chunk = sock.recv(1024)
        if not chunk:
            break  # clamd closed the connection; what it sent so far is the reply
        received += chunk
        if len(received) > _MAX_REPLY_BYTES:
            raise ScannerUnavailable("clamd sent an over-long reply")
    return received.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _session(url: str, timeout: float, send) -> str:
    address = parse_url(url)
    deadline = _Deadline(timeout)
    try:
        with _connect(address, deadline) as sock:
            try:
                send(sock, deadline)
            except (BrokenPipeError, ConnectionResetError):
                # clamd stops reading when a stream passes its StreamMaxLength and says why.
                pass
            return _reply(sock, deadline)
    except (OSError, TimeoutError) as exc:  # socket.timeout is TimeoutError; refused, missing socket...
        raise ScannerUnavailable(f"clamd at {address}: {exc or type(exc).__name__}") from exc


def scan(data: bytes, url: str, timeout: float) -> str | None:
    """Scan ``data``: None when clean, the signature's name when infected. Raises
    ``ScannerUnavailable`` when there is no clear answer."""

    def send(sock: socket.socket, deadline: _Deadline) -> None:
        sock.settimeout(deadline.left())
        sock.sendall(b"zINSTREAM\0")
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_BYTES):
            chunk = view[start:start + CHUNK_BYTES]
            sock.settimeout(deadline.left())
            sock.sendall(struct.pack(">I", len(chunk)) + chunk)
        sock.settimeout(deadline.left())
        sock.sendall(struct.pack(">I", 0))

    reply = _session(url, timeout, send)
    if reply == "stream: OK":
        return None
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        return reply[len("stream: "):-len(" FOUND")].strip() or "unknown"
    raise ScannerUnavailable(f"clamd could not scan the file: {reply or 'no reply'}")


def ping(url: str, timeout: float) -> bool:
    """Whether clamd answers PING (for readiness checks and the tests' start-up wait)."""

    def send(sock: socket.socket, deadline: _Deadline) -> None:
        sock.settimeout(deadline.left())
        sock.sendall(b"zPING\0")

    try:
        return _session(url, timeout, send) == "PONG"
    except ScannerUnavailable:
        return False
