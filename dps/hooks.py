"""Per-request hooks: schema check, clock, session validity, security headers, template context."""
from __future__ import annotations

from flask import Flask, Response, abort, g, request, url_for
from markupsafe import escape
from flask_login import current_user

from . import clock
from .extensions import db, login_manager
from .models import User

SCHEMA_PAGE = """<!DOCTYPE html>
<html lang="en-GB">
<head><meta charset="utf-8"><title>Sorry, the service is not ready – CCIN Dynamic Purchasing System</title></head>
<body><main>
<h1>Sorry, the service is not ready</h1>
<p>{{ message }}</p>
<p>This message is for whoever runs the service: the database does not match this version of the code.</p>
</main></body>
</html>"""

# Navigation per role: (label, endpoint).
NAVIGATION = {
    "supplier": [("Your organisation", "suppliers.dashboard"), ("Invitations to tender", "suppliers.competitions"),
                 ("Colleagues", "suppliers.colleagues")],
    "buyer": [("Your organisation", "buyers.dashboard"), ("Mini-competitions", "buyers.competitions_list"),
              ("Call-offs", "buyers.call_offs"), ("Budget", "buyers.budget"), ("Colleagues", "buyers.colleagues")],
    "dps_admin": [("DPS team", "team.dashboard"), ("Applications", "team.applications"),
                  ("Suppliers", "team.suppliers"), ("Agreements", "team.agreements"), ("Members", "team.members"),
                  ("Budget", "team.budget"), ("Accounts", "team.users"), ("Audit log", "team.audit_log"),
                  ("Exports", "team.exports"), ("Clock", "team.clock")],
    "auditor": [("Audit", "team.dashboard"), ("Applications", "team.applications"), ("Suppliers", "team.suppliers"),
                ("Agreements", "team.agreements"), ("Members", "team.members"), ("Budget", "team.budget"),
                ("Audit log", "team.audit_log"), ("Exports", "team.exports")],
}


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The id carries the session version; a session from before a sign-out, password change or
    deactivation no longer matches and is treated as signed out."""
    try:
        raw_id, raw_version = user_id.split(":")
        uid, version = int(raw_id), int(raw_version)
    except ValueError:
        return None
    user = db.session.get(User, uid)
    if user is None or not user.active or user.session_version != version:
        return None
    return user


def _accountable_body_name() -> str | None:
    """For the footer: who runs the service (read when the footer is drawn, once a request)."""
    if "dps_accountable_body" not in g:
        from .services.installation import accountable_body

        body = accountable_body()
        g.dps_accountable_body = body.name if body is not None else None
    return g.dps_accountable_body


# Endpoints that never read the database, the session or the clock: files, and the health checks
# (a load balancer's /healthz must answer with the database down; /readyz checks it itself).
NO_DATABASE_ENDPOINTS = frozenset({"static", "health.healthz", "health.readyz"})


def _without_database() -> bool:
    return request.endpoint in NO_DATABASE_ENDPOINTS


# Ids that arrive in forms and query strings (select boxes coerced to int, hidden fields, the
# members list's keyset): one check for all, so a number no id column can hold (PostgreSQL's
# INTEGER is 32 bits, SQLite's 64) never reaches the database (issue 14). Addresses are bounded
# by the app's int converter (dps.IdConverter); these are the same bound for the rest.
FORM_ID_FIELDS = frozenset({
    "organisation", "organisation_id", "previous", "line", "accountable_body_id", "panel", "lots",
    "user_id", "bid_id", "lot", "allocation", "document", "document_id",
})
QUERY_ID_FIELDS = frozenset({"organisation_id", "bid", "after", "before"})
# Pages that read these ids themselves, an id past the column being none (the audit log: its
# page links and organisation pick give the newest page or no pick, as its tests require).
OWN_ID_CHECKS = {"team.audit_log": frozenset({"after", "before", "organisation_id"})}


def _out_of_range(values, limit: int) -> bool:
    for value in values:
        try:
            number = int(value)  # what coerce=int and type=int would make of it
        except (TypeError, ValueError):
            continue  # not a number: the form's own check says so
        if abs(number) > limit:
            return True
    return False


def ids_out_of_range() -> bool:
    """Whether the request carries an id (by its field's name) larger than any id column holds."""
    from . import MAX_ID

    own = OWN_ID_CHECKS.get(request.endpoint or "", frozenset())
    for name in QUERY_ID_FIELDS.intersection(request.args.keys()) - own:
        if _out_of_range(request.args.getlist(name), MAX_ID):
            return True
    if request.method in ("POST", "PUT", "PATCH") and request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        for name in FORM_ID_FIELDS.intersection(request.form.keys()):
            if _out_of_range(request.form.getlist(name), MAX_ID):
                return True
    return False


def register(app: Flask) -> None:
    @app.before_request
    def check_schema():
        if _without_database() or app.extensions.get("dps_schema_ok"):
            return None
        from .database import schema_problem

        problem = schema_problem(app)
        if problem:
            app.logger.error(problem)
            # Plain HTML: the layout and its context processors read tables that are not there.
            return Response(SCHEMA_PAGE.replace("{{ message }}", str(escape(problem))), 503, mimetype="text/html")
        app.extensions["dps_schema_ok"] = True  # a fact about the database, not user state
        return None

    @app.before_request
    def refuse_ids_out_of_range():
        # Not found: the id names nothing (as an address's id out of range is not found).
        if not _without_database() and ids_out_of_range():
            abort(404)

    @app.before_request
    def refuse_nul_in_form():
        # A NUL byte is no text a person types, and PostgreSQL refuses it in every text column
        # (a 500 on the first INSERT): refuse the whole submission, one check for every form.
        if request.method == "POST" and any("\x00" in value for _, value in request.form.items(multi=True)):
            abort(400)

    @app.before_request
    def start_clock():
        if not _without_database():
            clock.sync()

    @app.before_request
    def expire_old_sessions():
        from flask import flash
        from flask_login import logout_user

        from .auth import session_expired

        if _without_database() or not current_user.is_authenticated:
            return None
        if session_expired():
            logout_user()
            flash("You have been signed out because you were away for a while. Sign in again.", "info")
        return None

    # Someone whose role must use two-factor sign-in (DPS_REQUIRE_MFA) and who has not set it up
    # can only set it up or sign out: every other page, and every action, leads to the set-up.
    two_factor_setup_endpoints = frozenset({"static", "public.two_factor_page", "public.two_factor_start",
                                            "public.two_factor_confirm", "public.sign_out"})

    @app.before_request
    def require_two_factor_setup():
        from flask import redirect

        from .services.two_factor import must_enrol

        if _without_database() or request.endpoint in two_factor_setup_endpoints or not current_user.is_authenticated:
            return None
        if must_enrol(current_user):
            return redirect(url_for("public.two_factor_page"))
        return None

    @app.after_request
    def security_headers(response):
        nonce = g.get("csp_nonce", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint in ("health.healthz", "health.readyz"):
            return response  # no account to load: the checks set their own no-store
        if current_user and getattr(current_user, "is_authenticated", False):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def template_context():
        from . import csp_nonce

        if g.get("dps_unavailable"):
            # The 503 page (dps.unavailable_response): nothing that reads the database.
            return {"cspNonce": csp_nonce(), "navigation": [], "clock_simulated": False, "clock_now": None,
                    "now": clock.real_now(), "service_name": "CCIN Dynamic Purchasing System",
                    "accountable_body_name": lambda: None}
        nav = []
        if current_user.is_authenticated:
            for label, endpoint in NAVIGATION.get(current_user.role, []):
                nav.append({
                    "text": label,
                    "href": url_for(endpoint),
                    "active": request.endpoint == endpoint,
                })
        simulated = clock.is_simulated()
        return {
            "cspNonce": csp_nonce(),
            "navigation": nav,
            "clock_simulated": simulated,
            "clock_now": clock.now() if simulated else None,
            # The moment the page is about (a competition's stage reads it); views may pass their own.
            "now": clock.now(),
            "service_name": "CCIN Dynamic Purchasing System",
            "accountable_body_name": _accountable_body_name,
        }
