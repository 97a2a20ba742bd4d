"""The CCIN Dynamic Purchasing System: the application factory."""
from __future__ import annotations

import contextlib
import logging
import secrets
from pathlib import Path

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError
from govuk_frontend_wtf.main import WTFormsHelpers
from sqlalchemy import exc as sa_exc
from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, PrefixLoader
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from . import config as config_module
from .extensions import csrf, db, login_manager, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The largest id of an INTEGER column on PostgreSQL (32 bits; SQLite's hold 64). PostgreSQL
# refuses to compare a larger number with such a column, so one never reaches the database.
MAX_ID = 2 ** 31 - 1
# The audit log's ids are BIGINT.
MAX_BIG_ID = 2 ** 63 - 1
# Seconds a client (or a load balancer) is asked to wait after a 503.
RETRY_AFTER_SECONDS = 30


class IdConverter(IntegerConverter):
    """The app's ``int`` in addresses: an id no INTEGER column can hold is simply not found (404)
    by the router, before any view or the database sees it (issue 14)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


class BigIdConverter(IdConverter):
    """``bigint`` in addresses: an id of a BIGINT column (the audit log's events)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_BIG_ID, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def create_app(config: dict | None = None) -> Flask:
    """Build the application. ``config`` overrides the environment (used by tests)."""
    app = Flask(__name__, instance_path=str(PROJECT_ROOT / "instance"))
    # Before any route is added: every <int:...> of every blueprint is bounded.
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["bigint"] = BigIdConverter
    app.config.update(config_module.load(app.instance_path, overrides=config))
    logging.basicConfig(level=app.config["DPS_LOG_LEVEL"])
    app.logger.setLevel(app.config["DPS_LOG_LEVEL"])

    from .storage import storage_from_url

    # Builds the backend without touching the network: a malformed URL stops the start here.
    if app.config.get("DPS_STORAGE_URL"):
        storage_from_url(app.config["DPS_STORAGE_URL"], app.config["DPS_S3_ENDPOINT_URL"],
                         instance_path=app.instance_path)

    proxies = app.config.get("DPS_PROXY_COUNT", 0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    app.jinja_loader = ChoiceLoader([
        FileSystemLoader(str(PROJECT_ROOT / "templates")),
        PrefixLoader({
            "govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja"),
            "govuk_frontend_wtf": PackageLoader("govuk_frontend_wtf"),
        }),
    ])
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    WTFormsHelpers(app)

    from . import jobs

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"), compare_type=True,
                     include_name=jobs.include_in_schema_check)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "public.sign_in"
    login_manager.login_message = "Sign in to see this page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    with app.app_context():
        from .database import configure_engine

        configure_engine(db.engine)

    from . import filters, hooks

    filters.register(app)
    hooks.register(app)

    from .views import documents, public, team
    from .views import team_suppliers  # noqa: F401
    from .views import team_applications, team_budget  # noqa: F401  (add their pages to the team blueprint)
    from .views import team_audit, team_exports  # noqa: F401  (likewise)
    from .views import team_members  # noqa: F401  (likewise)
    from .views import team_questionnaires  # noqa: F401  (likewise)
    from .views import team_agreements  # noqa: F401  (likewise)
    from .views import health, ocds_public

    app.register_blueprint(health.bp)
    app.register_blueprint(public.bp)
    app.register_blueprint(team.bp)
    app.register_blueprint(documents.bp)
    app.register_blueprint(ocds_public.bp)

    # Blueprints of the other two parts: they import dps, never the other way round at module
    # level, so the import happens here, inside the factory.
    from buyers import bp as buyers_bp
    from suppliers import bp as suppliers_bp

    app.register_blueprint(suppliers_bp)
    app.register_blueprint(buyers_bp)

    jobs.init_app(app)

    from .cli import register as register_cli

    register_cli(app)
    _register_error_pages(app)
    return app


# What "the database cannot be reached (or is too busy to answer)" raises: the driver's connection
# and operational errors (PostgreSQL down, SQLite's file unreadable or locked past its timeout)
# and the pool's timeout. Anything else from the database is a bug: a 500.
UNAVAILABLE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def unavailable_response(what: str = "database"):
    """The service's own 503 page, drawn without the database: the request is treated as signed
    out, and the layout's context (navigation, simulated clock, accountable body) is not read."""
    with contextlib.suppress(Exception):
        db.session.rollback()  # nothing half-saved: the transaction that failed is abandoned
    g.dps_unavailable = what
    g._login_user = login_manager.anonymous_user()  # flask-login's current_user, without loading the account
    body = render_template("errors/unavailable.html", what=what)
    return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}


def _register_error_pages(app: Flask) -> None:
    def render_error(code: int, title: str, message: str):
        try:
            return render_template("errors/error.html", code=code, title=title, message=message), code
        except UNAVAILABLE_ERRORS as exc:
            # The layout reads the account and the accountable body; without a database, the
            # page is the 503 one instead (a /static/ miss with the database down, say).
            app.logger.error("Database unavailable while drawing a %s page: %s", code, exc)
            return unavailable_response()

    @app.errorhandler(400)
    def bad_request(_e):
        return render_error(400, "There is a problem with your request", "Go back and try again.")

    @app.errorhandler(CSRFError)
    def csrf_error(_e):
        return render_error(
            400,
            "This form has expired",
            "For your security, forms expire when you sign in or out in another tab. Go back, reload the page and try again.",
        )

    @app.errorhandler(403)
    def forbidden(_e):
        return render_error(403, "You cannot see this page", "Your account does not give you access to this page. If you think it should, contact the DPS team.")

    @app.errorhandler(404)
    def not_found(_e):
        return render_error(404, "Page not found", "If you typed the web address, check it is correct. If you pasted the web address, check you copied the entire address.")

    from .services.sealed import Sealed

    @app.errorhandler(Sealed)
    def sealed_content(_e):
        # A safety net: every view checks the sealed gate itself; one that forgot to catch the
        # refusal still shows nothing, and says no more than that the page is not there.
        db.session.rollback()
        return render_error(404, "Page not found", "If you typed the web address, check it is correct.")

    @app.errorhandler(405)
    def method_not_allowed(e):
        # The router says 405 when another method's rule has the same address pattern, even if
        # that rule's converter then refuses the id (out of range): that address names nothing.
        adapter = app.create_url_adapter(request)
        if adapter is not None and e.valid_methods:
            for method in e.valid_methods:
                try:
                    adapter.match(method=method)
                    break
                except HTTPException:
                    continue
            else:
                return not_found(e)
        return render_error(405, "That action is not allowed here", "Use the buttons and links on the page.")

    @app.errorhandler(413)
    def too_large(_e):
        mb = app.config["DPS_MAX_UPLOAD_MB"]
        return render_error(413, "The file is too large", f"Files must be smaller than {mb} MB. Go back and choose a smaller file.")

    @app.errorhandler(500)
    def server_error(_e):
        with contextlib.suppress(Exception):
            db.session.rollback()
        return render_error(500, "Sorry, there is a problem with the service", "Try again later. Nothing you had already saved has been lost.")

    @app.errorhandler(503)
    def service_unavailable(_e):
        return unavailable_response()

    for error in UNAVAILABLE_ERRORS:
        @app.errorhandler(error)
        def database_unavailable(exc):
            app.logger.error("Database unavailable: %s", exc)
            return unavailable_response("database")

    from .storage import StorageError

    @app.errorhandler(StorageError)
    def storage_unavailable(exc):
        app.logger.error("Document storage unavailable: %s", exc)
        return unavailable_response("storage")


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce
