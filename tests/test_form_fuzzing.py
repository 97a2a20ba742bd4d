"""Every form of the demo survives hostile input without a 5xx (issue 14, "Done when").

For each role (the DPS team, an auditor, a buyer, a supplier), on a fresh demo: sign in, follow the
links from the role's home page (GET only, bounded), collect every ``<form method="post">`` with its
action and field names (keeping the CSRF token and hidden fields as the page gave them), and submit
each form with hostile values in every visible field. A refusal (4xx, or the form again with an
error) is fine; a 5xx, or an exception escaping the app, is a failure. All failures are collected
and listed together: form, value and status."""
from __future__ import annotations

import re
from collections import deque
from html import unescape
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from tests.conftest import demo_application, sign_in

PASSWORD = "copper kettle harbour lantern"
PAGES_PER_ROLE = 150
VALUES_PER_FORM = 12  # every hostile value, for every form (about a minute in all)
HREF = re.compile(r'<a\s[^>]*?href="([^"]+)"([^>]*)>')
# Pages that do something other than show a page when fetched, or are not pages.
SKIP = re.compile(r"^/(static/|sign-out)|/(download|export|file|documents?/\d+)(/|$)|\.(csv|xlsx|json|pdf|zip)$")
# Forms that would end the session the later forms need.
SKIP_FORM = re.compile(r"sign-out")
DATE = "31/02/0000"
HOSTILE = (
    "",
    "x" * 10_000,
    "a\x00b\x01\x07\x1b[31m\r\n\t\x7f",
    "'; DROP TABLE users; --",
    "<script>alert(1)</script>",
    "\U0001F4A9\U0001F468\u200d\U0001F469\u200d\U0001F467 \u202eשלום עולם\u202c مرحبا",
    "-1",
    "1e309",
    "99999999999999999999",
    "2147483648",
    "9223372036854775808",
    DATE,
)


class _Forms(HTMLParser):
    """The POST forms of a page: action and fields (name, type, value as given)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            if a.get("method", "get").lower() == "post":
                self._form = {"action": a.get("action", ""), "fields": [], "buttons": []}
                self.forms.append(self._form)
            return
        if self._form is None or not a.get("name"):
            return
        if tag == "input":
            kind = a.get("type", "text").lower()
            if kind in ("submit", "image", "button", "reset"):
                self._form["buttons"].append((a["name"], a.get("value", "")))
            elif kind != "file":
                self._form["fields"].append((a["name"], kind, a.get("value", "")))
        elif tag in ("select", "textarea"):
            self._form["fields"].append((a["name"], tag, ""))
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self._form["buttons"].append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def post_forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _within_site(href: str) -> str | None:
    href = urldefrag(unescape(href)).url
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or SKIP.search(parts.path):
        return None
    return href


def crawl(browser, start: str) -> dict[tuple, tuple[str, dict]]:
    """The POST forms reachable from ``start``, keyed by (action, field names): (page, form)."""
    seen, queue, forms = {start}, deque([start]), {}
    fetched = 0
    while queue and fetched < PAGES_PER_ROLE:
        url = queue.popleft()
        response = browser.get(url)
        fetched += 1
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        for form in post_forms(html):
            action = urlsplit(urljoin(url, form["action"] or url))
            action = action.path + (f"?{action.query}" if action.query else "")
            form["action"] = action
            key = (re.sub(r"\d+", "N", action), tuple(sorted(f[0] for f in form["fields"])))
            if not SKIP_FORM.search(action):
                forms.setdefault(key, (url, form))
        for href, attributes in HREF.findall(html):
            target = None if " download" in attributes else _within_site(href)
            if target is not None and target not in seen:
                seen.add(target)
                queue.append(target)
    assert fetched > 5, f"the crawl from {start} reached only {fetched} pages"
    return forms


def payload(form: dict, value: str) -> dict:
    """The form's data with ``value`` in every visible field (hidden fields and the token kept)."""
    data: dict[str, list[str]] = {}
    texts = [name for name, kind, _ in form["fields"] if kind == "text"]
    for name, kind, given in form["fields"]:
        if kind == "hidden":
            data.setdefault(name, []).append(given)
        elif value == DATE and kind == "text" and texts.count(name) == 3:
            # A GOV.UK date input: day, month and year as three fields of one name.
            data.setdefault(name, []).append(("31", "02", "0000")[len(data.get(name, []))])
        else:
            data.setdefault(name, []).append(value)
    if form["buttons"]:
        name, given = form["buttons"][0]
        data.setdefault(name, []).append(given)
    return data


def _values_for(index: int) -> list[str]:
    """A deterministic sample of the hostile values, rotating so every value meets many forms."""
    return [HOSTILE[(index * VALUES_PER_FORM + i) % len(HOSTILE)] for i in range(VALUES_PER_FORM)]


def test_a_form_is_read_with_its_fields():
    forms = post_forms(
        '<form method="get" action="/search"><input name="q"></form>'
        '<form method="POST" action="/x"><input type="hidden" name="csrf_token" value="t">'
        '<input name="title"><select name="lot"><option value="1">A</option></select>'
        '<textarea name="notes"></textarea><input type="file" name="document">'
        '<input name="due" inputmode="numeric"><input name="due"><input name="due">'
        '<button name="action" value="save">Save</button></form>')
    assert forms == [{"action": "/x", "buttons": [("action", "save")], "fields": [
        ("csrf_token", "hidden", "t"), ("title", "text", ""), ("lot", "select", ""), ("notes", "textarea", ""),
        ("due", "text", ""), ("due", "text", ""), ("due", "text", "")]}]
    data = payload(forms[0], DATE)
    assert data == {"csrf_token": ["t"], "title": [DATE], "lot": [DATE], "notes": [DATE],
                    "due": ["31", "02", "0000"], "action": ["save"]}
    assert sorted({v for i in range(len(HOSTILE)) for v in _values_for(i)}) == sorted(HOSTILE)


# Each buyer sees only its own organisation's competitions, so every demo buyer is one run.
@pytest.mark.parametrize("role, nth", [("dps_admin", 0), ("auditor", 0), ("buyer", 0), ("buyer", 1),
                                       ("buyer", 2), ("supplier", 0), ("supplier", 1)])
def test_no_form_of_the_demo_gives_a_5xx_to_hostile_input(database_template, tmp_path_factory, role, nth):
    with demo_application(database_template, tmp_path_factory, password=PASSWORD) as demo_app:
        person = [s for s in demo_app.config["DEMO_SIGN_INS"] if s["role"] == role][nth]
        browser = demo_app.test_client()
        response = sign_in(browser, person["email"], PASSWORD)
        assert response.status_code == 302, (person["email"], response.get_data(as_text=True)[:500])
        home = urlsplit(response.headers["Location"]).path
        forms = crawl(browser, home)
        assert forms, f"the crawl as {role} found no form"
        failures, expired, submitted, token = [], [], 0, None
        for index, (page, form) in enumerate(sorted(forms.values(), key=lambda f: f[1]["action"])):
            for value in _values_for(index):
                data = payload(form, value)
                if token and "csrf_token" in data:
                    data["csrf_token"] = [token]
                try:
                    response = browser.post(form["action"], data=data)
                    status = response.status_code
                except Exception as exc:  # noqa: BLE001 - an exception escaping the app is a 500
                    status = f"500 ({type(exc).__name__}: {str(exc)[:200]})"
                submitted += 1
                if not isinstance(status, int) or status >= 500:
                    failures.append(f"{form['action']} (from {page}) value={value[:40]!r}: {status}")
                elif status == 400 and "This form has expired" in response.get_data(as_text=True):
                    expired.append(form["action"])
                elif status == 302 and "/sign-in" in response.headers.get("Location", ""):
                    sign_in(browser, person["email"], PASSWORD)  # a form ended the session: go on
                    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', browser.get(page).get_data(as_text=True))
                    token = found.group(1) if found else None  # the pages' tokens were the old session's
        assert submitted >= len(forms)
        # The values reached the forms' own checks: a refused CSRF token would test nothing.
        assert not expired, f"the CSRF token was refused by {sorted(set(expired))}"
        assert not failures, f"{len(failures)} of {submitted} submissions as {role} gave a 5xx:\n" + "\n".join(failures)


def test_a_nul_byte_in_any_field_is_refused_before_the_database_sees_it(client):
    """PostgreSQL refuses NUL in text (a 500 once in an INSERT): every form refuses it first."""
    token = client.csrf_token("/sign-in")
    response = client.post("/sign-in", data={"csrf_token": token, "email": "a@example.org",
                                             "password": ["x", "a\x00b"]})
    assert response.status_code == 400
