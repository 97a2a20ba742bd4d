"""Where the bytes of uploaded documents live (DESIGN 5 and 8).

Two backends behind one small interface: a local folder (the embedded default) and S3 or an
S3-compatible service through boto3. ``DPS_STORAGE_URL`` chooses: ``file:///path`` or
``s3://bucket/prefix``; ``DPS_S3_ENDPOINT_URL`` points boto3 at MinIO, Ceph or a test server.

Keys are always made by the server (``<organisation id>/<random hex>``), never from a user's
filename; the backends still refuse anything that could climb out of their root, so a bug
elsewhere cannot turn into a path traversal. Every failure surfaces as ``StorageError`` so that
callers handle one exception whichever backend is configured.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app

from .config import ConfigError

# Long enough for a browser to follow the redirect, short enough that a URL copied out of the
# address bar or a proxy log stops working almost at once: the permission check happened in
# our view, and the URL itself carries no identity.
PRESIGNED_URL_SECONDS = 60
DEFAULT_S3_REGION = "eu-west-2"  # London: councils' data stays in the UK unless told otherwise

# Characters kept as they are in the plain `filename="..."` fallback; everything else becomes
# "_", so quotes, backslashes and non-ASCII letters cannot break the header.
_UNSAFE_FALLBACK_CHARS = re.compile(r"[^A-Za-z0-9 ._()+,;=@&#!~'\-\[\]]")
# RFC 5987 attr-char minus ALPHA/DIGIT, which `quote` leaves alone anyway.
_RFC5987_SAFE = "!#$&+-.^_`|~"


class StorageError(Exception):
    """The storage backend could not do what was asked (unreachable, refused, disk full...)."""


def check_key(key: str) -> str:
    """Refuse keys that could name something outside the backend's root or prefix."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise StorageError(f"refused storage key {key!r}")
    return key


def content_disposition(filename: str) -> str:
    """An ``attachment`` header carrying the user's filename safely (RFC 6266).

    Old clients read the ASCII ``filename="..."``; current browsers prefer ``filename*``, which
    carries the exact UTF-8 name percent-encoded.
    """
    # Accents come off ("Café" -> "Cafe"); any other character outside the safe set becomes "_".
    decomposed = unicodedata.normalize("NFKD", filename)
    fallback = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    fallback = _UNSAFE_FALLBACK_CHARS.sub("_", fallback).strip() or "download"
    encoded = quote(filename, safe=_RFC5987_SAFE)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


class Storage(ABC):
    """What the documents service needs from a backend. Implementations hold no user state."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing whatever was there, all or nothing."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a key that is not there is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""

    @abstractmethod
    def download_url(self, key: str, filename: str, content_type: str) -> str | None:
        """A short-lived URL the browser can fetch the bytes from directly, or None when the
        application has to send the bytes itself."""


class LocalStorage(Storage):
    """A folder on this host: the embedded default. With several hosts, use S3."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target and rename over it: a crash or a full disk leaves either
            # the whole file or none, never a truncated document under a real key.
            fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp_name, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp_name)
                raise
            self._sync_directory(path.parent)
        except OSError as exc:
            raise StorageError(f"could not write {key!r} under {self.root}: {exc}") from exc

    @staticmethod
    def _sync_directory(directory: Path) -> None:
        # Makes the rename itself durable. Some filesystems refuse fsync on a directory; the file's
        # own contents are already on disk by then, so that refusal is not worth failing for.
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"could not read {key!r} under {self.root}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {key!r} under {self.root}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except OSError as exc:
            raise StorageError(f"could not look for {key!r} under {self.root}: {exc}") from exc

    def download_url(self, key: str, filename: str, content_type: str) -> str | None:
        return None  # the application streams the bytes itself, after its permission check


class S3Storage(Storage):
    """An S3 bucket (or an S3-compatible service), objects under ``prefix/``."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None):
        if not bucket:
            raise ConfigError("DPS_STORAGE_URL must name a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        # A session of its own: boto3's default session is shared module state, while a client
        # made from a private session is safe to share between this process's threads.
        session = boto3.session.Session()
        options: dict = {
            # Presigned URLs must be SigV4: eu-west-2 and newer regions accept nothing else.
            "signature_version": "s3v4",
            "connect_timeout": 5,
            "read_timeout": 60,
            # Only the mode is fixed: the number of attempts stays tunable with AWS_MAX_ATTEMPTS.
            "retries": {"mode": "standard"},
        }
        if self.endpoint_url:
            # S3-compatible services (MinIO, Ceph) and IP-address endpoints rarely serve
            # bucket-name subdomains; path-style addressing works everywhere.
            options["s3"] = {"addressing_style": "path"}
        try:
            self.client = session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                # AWS_DEFAULT_REGION (or the AWS config file) wins when set; boto3 reads it into
                # the session.
                region_name=session.region_name or DEFAULT_S3_REGION,
                config=Config(**options),
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"DPS_S3_ENDPOINT_URL / S3 settings are not usable: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not store {key!r} in s3://{self.bucket}/{self.prefix}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            return response["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not read {key!r} from s3://{self.bucket}/{self.prefix}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            # S3 answers 204 whether or not the object existed.
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not delete {key!r} from s3://{self.bucket}/{self.prefix}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"could not look for {key!r} in s3://{self.bucket}/{self.prefix}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not look for {key!r} in s3://{self.bucket}/{self.prefix}: {exc}") from exc

    def download_url(self, key: str, filename: str, content_type: str) -> str | None:
        try:
            # Signing happens locally: no request reaches S3 until the browser follows the URL.
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.object_key(key),
                    # S3 sends these back as headers, so the browser saves the file under the
                    # user's name and never renders it inline from the bucket's origin.
                    "ResponseContentDisposition": content_disposition(filename),
                    "ResponseContentType": content_type,
                },
                ExpiresIn=PRESIGNED_URL_SECONDS,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not sign a download of {key!r}: {exc}") from exc


def storage_from_url(url: str, endpoint_url: str | None = None, *, instance_path: str | Path | None = None) -> Storage:
    """Build the backend a ``DPS_STORAGE_URL`` names. A relative ``file:`` path is taken from
    ``instance_path`` (the app's instance folder)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"DPS_STORAGE_URL {url!r} names a host; a local folder is written file:///absolute/path")
        path = Path(unquote(parts.path))
        if not path.is_absolute() and instance_path is not None:
            path = Path(instance_path) / path
        return LocalStorage(path)
    if parts.scheme == "s3":
        return S3Storage(parts.netloc, unquote(parts.path), endpoint_url)
    raise ConfigError(f"DPS_STORAGE_URL must start with file:// or s3://, not {url!r}")


def get_storage() -> Storage:
    """The backend the current app is configured for, built once per app and URL."""
    app = current_app
    url = app.config.get("DPS_STORAGE_URL") or f"file://{Path(app.instance_path) / 'documents'}"
    endpoint_url = app.config.get("DPS_S3_ENDPOINT_URL") or None
    # A backend holds configuration and a connection pool, never user state, so one per app is
    # safe to share between requests and threads. Keyed by the settings so a changed config
    # (tests) gets a fresh backend rather than a stale one.
    cache: dict[tuple[str, str | None], Storage] = app.extensions.setdefault("dps_storage", {})
    backend = cache.get((url, endpoint_url))
    if backend is None:
        backend = cache.setdefault(
            (url, endpoint_url), storage_from_url(url, endpoint_url, instance_path=app.instance_path))
    return backend
