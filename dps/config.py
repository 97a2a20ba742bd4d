"""Configuration from ``DPS_*`` environment variables.

Every setting the product reads is listed in ``SETTINGS`` with its default, so the README's
configuration table and this module cannot drift apart (a test compares them).
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


class ConfigError(RuntimeError):
    """Raised at start-up when configuration is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    env: str
    description: str
    default: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DPS_ENV", "`development` (embedded defaults) or `production` (secrets required, secure cookies).", "development"),
    Setting("DPS_DATABASE_URL", "SQLAlchemy URL of the database, e.g. `postgresql+psycopg://dps@db/dps`.", "SQLite file `instance/dps.sqlite3`"),
    Setting("DPS_SECRET_KEY", "Key that signs sessions and CSRF tokens. Required in production.", "generated once into `instance/secret_key`"),
    Setting("DPS_STORAGE_URL", "Where documents are kept: a local folder (`file:///path`) or S3 (`s3://bucket/prefix`).", "`instance/documents`"),
    Setting("DPS_S3_ENDPOINT_URL", "Endpoint of an S3-compatible service (MinIO, Ceph); unset for AWS.", "unset"),
    Setting("DPS_SMTP_URL", "Outgoing mail server, `smtp://user:password@host:587?starttls=1` or `smtps://...:465`. Unset: mail stays in the outbox table and the log.", "unset"),
    Setting("DPS_MAIL_FROM", "The From address of the service's emails.", "`CCIN DPS <no-reply@dps.example.org>`"),
    Setting("DPS_BASE_URL", "The site's public address, used for links in emails.", "`http://127.0.0.1:5000`"),
    Setting("DPS_CLOCK", "Start a simulated clock at this Europe/London time (e.g. `2023-06-01T09:00`); it then runs forward and the DPS team can move it on. For training and demos only.", "unset (real time)"),
    Setting("DPS_OCID_PREFIX", "The OCDS ocid prefix registered for this publisher.", "`ocds-ccindps`"),
    Setting("DPS_MAX_UPLOAD_MB", "Largest document a user may upload, in megabytes.", "20"),
    Setting("DPS_PROXY_COUNT", "How many reverse proxies stand in front of the app; their X-Forwarded-* headers are then trusted (real client addresses for the audit log and sign-in limits).", "0"),
    Setting("DPS_LOG_LEVEL", "Python log level of the application log.", "INFO"),
    Setting("DPS_JOB_QUEUE", "The queue of background jobs (large exports, sending email): `procrastinate` (jobs in the PostgreSQL database itself; run workers with `flask --app dps worker`) or `sqlite:///path/to/jobs.sqlite3` (the embedded queue, huey, in a SQLite file of its own; a relative path is in the instance folder).", "`procrastinate` on PostgreSQL; beside a SQLite database, `<name>-jobs.sqlite3` next to it"),
    Setting("DPS_WORKER_IN_WEB", "Whether each web process also runs a job worker in threads of its own (`true` or `false`), for a service on one machine. With several hosts, set it to `false` and run `flask --app dps worker`.", "`true` with the embedded queue, `false` with procrastinate"),
    Setting("DPS_JOB_RETRY_SECONDS", "How long a job that can be tried again (an email the mail server put off) waits after its first failure; each later wait is twice the one before.", "60"),
    Setting("DPS_CLAMD_URL", "ClamAV's daemon, which scans every upload before it is stored: `unix:///run/clamav/clamd.ctl` or `tcp://host:3310`. Required in production; unset in development, uploads are stored unscanned and the DPS team's dashboard says so.", "unset (no scanning)"),
    Setting("DPS_CLAMD_TIMEOUT_SECONDS", "How long one scan may take, connection included; a scan that takes longer refuses the upload.", "30"),
    Setting("DPS_UPLOAD_MAX_UNPACKED_MB", "Largest total unpacked size of a DOCX, XLSX, ODT or ODS upload, in megabytes.", "100"),
    Setting("DPS_UPLOAD_MAX_RATIO", "Largest ratio of unpacked to packed size of a DOCX, XLSX, ODT or ODS upload (a zip bomb's is in the thousands).", "100"),
    Setting("DPS_UPLOAD_MAX_ENTRIES", "Most entries (files inside the ZIP) a DOCX, XLSX, ODT or ODS upload may hold.", "10000"),
    Setting("DPS_REQUIRE_MFA", "Whether the DPS team and auditors must use two-factor sign-in (an authenticator app): `true` or `false`. Everyone else may choose to.", "`true` when `DPS_ENV=production`, else `false`"),
)


def _instance_path(app_instance_path: str) -> Path:
    path = Path(app_instance_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _embedded_secret_key(instance: Path) -> str:
    """Development only: a key generated once and kept beside the database, never in the repo."""
    key_file = instance / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _flag(value, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def load(instance_path: str, environ: dict[str, str] | None = None, overrides: dict | None = None) -> dict:
    """Build the Flask configuration from the environment, then apply ``overrides`` (tests)."""
    env = dict(os.environ if environ is None else environ)
    overrides = dict(overrides or {})

    def get(name: str) -> str | None:
        if name in overrides:
            return overrides[name]
        value = env.get(name)
        return value if value not in (None, "") else None

    instance = _instance_path(instance_path)
    mode = (get("DPS_ENV") or "development").lower()
    if mode not in ("development", "production"):
        raise ConfigError(f"DPS_ENV must be 'development' or 'production', not {mode!r}")
    production = mode == "production"

    secret_key = get("DPS_SECRET_KEY")
    if secret_key is None:
        if production:
            raise ConfigError(
                "DPS_SECRET_KEY is not set. In production it is required: set it to a long random "
                "value (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)."
            )
        secret_key = _embedded_secret_key(instance)

    database_url = get("DPS_DATABASE_URL")
    if database_url is None:
        if production:
            raise ConfigError("DPS_DATABASE_URL is not set. In production it is required (PostgreSQL).")
        database_url = f"sqlite:///{instance / 'dps.sqlite3'}"
    if database_url.startswith("postgresql://") or database_url.startswith("postgres://"):
        # psycopg 3 is the driver we ship; accept the plain URL people copy from their provider.
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]

    try:
        max_upload_mb = int(get("DPS_MAX_UPLOAD_MB") or "20")
    except ValueError as exc:
        raise ConfigError("DPS_MAX_UPLOAD_MB must be a whole number of megabytes") from exc

    try:
        proxy_count = int(get("DPS_PROXY_COUNT") or "0")
    except ValueError as exc:
        raise ConfigError("DPS_PROXY_COUNT must be a whole number") from exc

    from .jobs import check_queue_url, default_queue_url

    try:
        job_queue = check_queue_url(get("DPS_JOB_QUEUE") or default_queue_url(database_url), database_url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    worker_in_web = _flag(get("DPS_WORKER_IN_WEB"), "DPS_WORKER_IN_WEB")
    if worker_in_web is None:
        # The embedded queue needs no other process; under tests, workers are started by the
        # tests themselves (as Flask-Mail suppresses sending when TESTING).
        worker_in_web = job_queue != "procrastinate" and not overrides.get("TESTING")
    try:
        retry = get("DPS_JOB_RETRY_SECONDS")
        retry_seconds = int(retry) if retry is not None else 60
        if retry_seconds < 0:
            raise ValueError
    except ValueError as exc:
        raise ConfigError("DPS_JOB_RETRY_SECONDS must be a whole number of seconds, 0 or more") from exc

    clamd_url = get("DPS_CLAMD_URL")
    if clamd_url is None and production:
        # Like the secret key and the database: a production service that silently stored
        # unscanned files would break a promise made to every council's security officer.
        raise ConfigError("DPS_CLAMD_URL is not set. In production it is required: every upload is scanned "
                          "by ClamAV's daemon, e.g. unix:///run/clamav/clamd.ctl or tcp://127.0.0.1:3310.")
    if clamd_url is not None:
        from .antivirus import parse_url

        parse_url(clamd_url)  # only the form: clamd may start after the app, and is checked per upload
    upload_limits = {}
    for name, default, minimum in (("DPS_CLAMD_TIMEOUT_SECONDS", 30, 1), ("DPS_UPLOAD_MAX_UNPACKED_MB", 100, 1),
                                   ("DPS_UPLOAD_MAX_RATIO", 100, 1), ("DPS_UPLOAD_MAX_ENTRIES", 10000, 1)):
        try:
            value = get(name)
            upload_limits[name] = int(value) if value is not None else default
            if upload_limits[name] < minimum:
                raise ValueError
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} must be a whole number, {minimum} or more") from exc

    config = {
        "DPS_ENV": mode,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "DPS_STORAGE_URL": get("DPS_STORAGE_URL") or f"file://{instance / 'documents'}",
        "DPS_S3_ENDPOINT_URL": get("DPS_S3_ENDPOINT_URL"),
        "DPS_SMTP_URL": get("DPS_SMTP_URL"),
        "DPS_MAIL_FROM": get("DPS_MAIL_FROM") or "CCIN DPS <no-reply@dps.example.org>",
        "DPS_BASE_URL": (get("DPS_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        "DPS_CLOCK": get("DPS_CLOCK"),
        "DPS_OCID_PREFIX": get("DPS_OCID_PREFIX") or "ocds-ccindps",
        "DPS_MAX_UPLOAD_MB": max_upload_mb,
        "MAX_CONTENT_LENGTH": (max_upload_mb + 1) * 1024 * 1024,
        "DPS_PROXY_COUNT": proxy_count,
        "DPS_LOG_LEVEL": get("DPS_LOG_LEVEL") or "INFO",
        "DPS_JOB_QUEUE": job_queue,
        "DPS_WORKER_IN_WEB": worker_in_web,
        "DPS_JOB_RETRY_SECONDS": retry_seconds,
        "DPS_REQUIRE_MFA": _flag(get("DPS_REQUIRE_MFA"), "DPS_REQUIRE_MFA") if get("DPS_REQUIRE_MFA") is not None else production,
        "DPS_CLAMD_URL": clamd_url,
        **upload_limits,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_DURATION": 0,
        "WTF_CSRF_TIME_LIMIT": None,  # tied to the session instead: a long form is not lost to a timeout
        "TESTING": False,
    }
    # Anything else a caller passes (TESTING, WTF_CSRF_ENABLED...) goes straight into Flask's config.
    for key, value in overrides.items():
        if not key.startswith("DPS_") or key not in config:
            config[key] = value
    return config
