"""Per-request hooks: schema check, clock, session validity, security headers, template context."""
from __future__ import annotations

from flask import Flask, Response, g, request, url_for
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


def register(app: Flask) -> None:
    @app.before_request
    def check_schema():
        if request.endpoint == "static" or app.extensions.get("dps_schema_ok"):
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
    def start_clock():
        if request.endpoint != "static":
            clock.sync()

    @app.before_request
    def expire_old_sessions():
        from flask import flash
        from flask_login import logout_user

        from .auth import session_expired

        if request.endpoint == "static" or not current_user.is_authenticated:
            return None
        if session_expired():
            logout_user()
            flash("You have been signed out because you were away for a while. Sign in again.", "info")
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
        if current_user and getattr(current_user, "is_authenticated", False):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def template_context():
        from . import csp_nonce

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
