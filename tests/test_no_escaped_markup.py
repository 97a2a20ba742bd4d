"""No page shows markup as text (issue 16 item 12).

HTML built in Python or joined with ``~`` in a template and handed to a GOV.UK macro as ``text``
(or joined with an escaped value) reaches the browser escaped: the user reads
``<a class="govuk-link" ...>`` instead of a link. This signs in as every demo sign-in of the staff
and as a supplier, follows every link within the site from their home pages (GET only), and fails
on an escaped tag in any page, naming the page."""
from __future__ import annotations

import re
from collections import deque
from html import unescape
from urllib.parse import urldefrag, urlsplit

import pytest

from tests.conftest import demo_application, sign_in

PASSWORD = "copper kettle harbour lantern"
PAGES_PER_SIGN_IN = 300
ESCAPED_TAG = re.compile(r"&lt;(a|span|strong)[\s&]")
HREF = re.compile(r'<a\s[^>]*?href="([^"]+)"([^>]*)>')
# Pages that do something other than show a page when fetched, or are not pages.
SKIP = re.compile(r"^/(static/|sign-out)|/(download|export|file|documents?/\d+)(/|$)|\.(csv|xlsx|json|pdf|zip)$")


@pytest.fixture(scope="module")
def demo_app(database_template, tmp_path_factory):
    with demo_application(database_template, tmp_path_factory, password=PASSWORD) as application:
        yield application


def _within_site(href: str) -> str | None:
    href = urldefrag(unescape(href)).url
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None  # another site, mailto:, or a fragment of this page
    if SKIP.search(parts.path):
        return None
    return href


def crawl(browser, start: str, fetched_pages: set[str]) -> dict[str, list[str]]:
    """Every page reachable from ``start`` by links (up to PAGES_PER_SIGN_IN), each added to
    ``fetched_pages``: the escaped tags found on each page that has any."""
    seen, queue, found = {start}, deque([start]), {}
    fetched = 0
    while queue and fetched < PAGES_PER_SIGN_IN:
        url = queue.popleft()
        response = browser.get(url)
        fetched += 1
        fetched_pages.add(url)
        if response.status_code != 200 or not response.mimetype == "text/html":
            continue
        html = response.get_data(as_text=True)
        escaped = [html[max(0, m.start() - 40):m.end() + 80] for m in ESCAPED_TAG.finditer(html)]
        if escaped:
            found[url] = escaped
        for href, attributes in HREF.findall(html):
            if " download" in attributes:
                continue
            target = _within_site(href)
            if target is not None and target not in seen:
                seen.add(target)
                queue.append(target)
    assert fetched > 5, f"the crawl from {start} reached only {fetched} pages"
    return found


def _sign_ins(demo_app) -> list[dict[str, str]]:
    """Every staff sign-in (each buyer sees its own organisation's competitions) and two suppliers."""
    sign_ins = demo_app.config["DEMO_SIGN_INS"]
    staff = [s for s in sign_ins if s["role"] != "supplier"]
    suppliers = [s for s in sign_ins if s["role"] == "supplier"][:2]
    return staff + suppliers


def test_the_crawl_would_see_an_escaped_link():
    """The check itself: an escaped link is found; markup and prose about "<" are not."""
    assert ESCAPED_TAG.search('<dd>&lt;a class="govuk-link" href="/x"&gt;CCIN&lt;/a&gt;</dd>')
    assert ESCAPED_TAG.search("&lt;strong&gt;Yes&lt;/strong&gt;")
    assert not ESCAPED_TAG.search('<a class="govuk-link" href="/x">CCIN</a> &lt; 5 &lt;abbr')


def test_no_page_of_the_demo_shows_markup_as_text(demo_app):
    problems, pages = {}, set()
    crawled = 0
    for person in _sign_ins(demo_app):
        browser = demo_app.test_client()
        response = sign_in(browser, person["email"], PASSWORD)
        assert response.status_code == 302, (person["email"], response.get_data(as_text=True)[:500])
        home = urlsplit(response.headers["Location"]).path
        for url, escaped in crawl(browser, home, pages).items():
            problems.setdefault(url, (person["email"], escaped))
        crawled += 1
    assert crawled >= 6
    # The crawl reaches the pages the issue saw markup on, and each role's pages.
    for kind in (r"/buyer/call-offs/\d+$", r"/buyer/competitions/\d+/evaluation$", r"^/team/", r"^/supplier"):
        assert any(re.search(kind, url) for url in pages), f"the crawl reached no page like {kind}"
    assert not problems, "\n".join(
        f"{url} (signed in as {email}) shows markup as text: {escaped[0]!r}"
        for url, (email, escaped) in sorted(problems.items()))
