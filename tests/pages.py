"""Reading the paginated lists as a browser would (dps.pagination; issue 10 item 3): the rows of
every page, the GOV.UK pagination links, following Next to the end and Previous back, and
hand-made cursors a page must survive. Shared by the tests of the lists."""
from __future__ import annotations

import base64
import json
import re
from html import unescape
from urllib.parse import parse_qs, quote, urlsplit

from dps.pagination import PAGE_SIZE


def body(response) -> str:
    return response.get_data(as_text=True)


def link(response, rel: str) -> str | None:
    """The href of the pagination link ``rel`` ("next" or "prev"), or None."""
    nav = re.search(r'<nav class="govuk-pagination.*?</nav>', body(response), re.S)
    if nav is None:
        return None
    found = re.search(r'<a [^>]*href="([^"]+)"[^>]*rel="' + rel + '"[^>]*>(.*?)</a>', nav.group(0), re.S)
    if found is None:
        return None
    assert ("Next" if rel == "next" else "Previous") in found.group(2)
    return unescape(found.group(1))


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def walk(browser, url: str, shown) -> list[list]:
    """Follow Next from ``url`` to the end, then Previous back to the start; the rows of each page.
    Every page is a 200, at most PAGE_SIZE rows, and the pages read the same both ways."""
    pages, responses = [], []
    response = browser.get(url)
    while True:
        assert response.status_code == 200, url
        rows = shown(response)
        assert len(rows) <= PAGE_SIZE
        pages.append(rows)
        responses.append(response)
        following = link(response, "next")
        if following is None:
            break
        assert len(rows) == PAGE_SIZE, "only the last page may be short"
        assert len(pages) < 20, "Next never ends"
        response = browser.get(following)
    assert link(responses[0], "prev") is None, "the first page has nothing before it"
    back = responses[-1]
    for expected in reversed(pages[:-1]):
        back = browser.get(link(back, "prev"))
        assert back.status_code == 200
        assert shown(back) == expected
    assert link(back, "prev") is None
    return pages


def flat(pages: list[list]) -> list:
    everything = [row for page in pages for row in page]
    assert len(everything) == len(set(everything)), "a row shown twice"
    return everything


def cursor_of(rows) -> str:
    return base64.urlsafe_b64encode(json.dumps(rows).encode()).decode().rstrip("=")


# Hand-made values of every kind a page must survive: the page, never a 500.
BAD_CURSORS = (
    "x", "!!!", "%00", "\x00", "a" * 5000, cursor_of("not a list"), cursor_of([]), cursor_of([1, 2, 3, 4, 5, 6]),
    cursor_of(["a", 10 ** 30]), cursor_of([10 ** 30, "a"]), cursor_of([{"t": "yesterday"}, 1]), cursor_of([{"d": "2024-02-30"}, 1]),
    cursor_of([{"t": "2024-06-03T09:00:00"}, 1]), cursor_of(["\x00", 1]), cursor_of([None, None]), cursor_of([True, 1]),
    base64.urlsafe_b64encode(b'["\\ud800", 1]').decode(), base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    cursor_of([[[[[]]]]]), "W" * 3,
)


def assert_survives(browser, base: str, extra: tuple[str, ...] = ()) -> None:
    joiner = "&" if "?" in base else "?"
    urls = [f"{base}{joiner}{key}={quote(value, safe='')}" for value in BAD_CURSORS for key in ("after", "before")]
    urls += [f"{base}{joiner}{value}" for value in extra]
    for url in urls:
        response = browser.get(url)
        assert response.status_code in (200, 404), url
        if response.status_code == 200 and ("after=" in url or "before=" in url):
            assert "could not be found, so the first page is shown" in body(response), url
