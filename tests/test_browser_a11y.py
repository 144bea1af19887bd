"""Every console page on a phone and for everyone (issue 19, section 7), in Debian's Chromium.

An admin (who may see every page) walks the console at 375 px wide: the sign-in form, then every
page reachable by links from the dashboard (nav, lists, detail pages; one page per route, ids
folded), with the seeded data of the identity-desk test (charts, documents, error items,
appointments). On each page:

* nothing overflows sideways: ``document.documentElement.scrollWidth <= innerWidth`` (wide tables
  scroll inside their ``.table-wrap``, long values break);
* axe-core (vendored in ``tests/vendor/axe.min.js``, MPL-2.0, not served by the app; injected
  with ``page.add_script_tag``) finds no *serious* or *critical* WCAG 2 A/AA violation, colour
  contrast (4.5:1) included.

A page that fails is named with its violations (rule, impact, the first elements) and a
screenshot goes to ``test-artifacts/a11y-*.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.store.document_schema import documents
from tests.test_browser import TIMEOUT_MS, browser, log_in, shot  # noqa: F401  (fixture)
from tests.test_browser_desk import desk  # noqa: F401  (fixture)
from tests.test_pages import PASSWORD
from tests.test_web_api import fast_hashing  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PHONE = {"width": 375, "height": 740}
# Pages that must be among those visited (the crawl finds the others, new ones included)
MUST = ["/", "/errors", "/errors/{n}", "/messages", "/messages/{n}", "/patients", "/patients/{n}",
        "/documents/{n}", "/deficiencies", "/chart-prep", "/audit", "/users"]  # fmt: skip
NOT_PAGES = ("/api/", "/fhir/", "/static/", "/logout", "/login", "/favicon")
DOWNLOADS = (".csv", ".hl7", ".pdf", ".png", "/content", "/download")  # files, not pages
MAX_PAGES = 60


def route_of(path: str) -> str:
    """``/errors/12`` -> ``/errors/{n}``: one visit per kind of page."""
    return re.sub(r"/(?=[^/]*\d)[^/]+", "/{n}", path) or "/"


def overflow(page) -> int:
    """How many CSS pixels the page is wider than the window (0: it fits)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def axe_problems(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}, resultTypes: ['violations']});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => `${v.id} (${v.impact}): ${v.help}; ` +
                   v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' +
                     (n.failureSummary || '').replace(/\\s+/g, ' ')).join(' | '));
        }"""
    )
    return list(result)


def check(page, label: str, problems: dict[str, list[str]]) -> None:
    found = []
    wider = overflow(page)
    if wider > 0:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                        && !e.parentElement.closest('.table-wrap, pre'))
                .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                  (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''))"""
        )
        found.append(f"{wider}px wider than the 375px window: {wide}")
    found.extend(axe_problems(page))
    if found:
        problems[label] = found
        shot(page, "a11y-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-"))


def links(page, base: str) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    out = []
    for h in hrefs:
        if not h or not h.startswith("/") or h.startswith("//") or h.startswith(NOT_PAGES):
            continue
        path = urlsplit(h).path
        if path.endswith(DOWNLOADS) or "/packets/" in path:
            continue
        if path.endswith("/content"):  # a document's file, not a page
            continue
        out.append(path)
    return out


def test_every_page_fits_a_phone_and_passes_axe(desk, browser, engine):  # noqa: F811
    h, base = desk
    with engine.begin() as conn:
        users.add_user(conn, "ada", "admin", PASSWORD, now=h.now)
    ctx = browser.new_context(viewport=PHONE, bypass_csp=True)  # for axe only: the app keeps its CSP
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    problems: dict[str, list[str]] = {}

    page.goto(base + "/login")
    check(page, "/login", problems)
    log_in(page, base, "ada", "/")

    with engine.connect() as conn:  # a document page, however the charts' links are visited
        number = conn.execute(select(documents.c.document_number).limit(1)).scalar_one()
    seen: dict[str, str] = {}
    todo = ["/", f"/documents/{number}"]
    while todo and len(seen) < MAX_PAGES:
        path = todo.pop(0)
        route = route_of(path)
        if route in seen:
            continue
        response = page.goto(base + path)
        seen[route] = path
        if (
            response is None
            or response.status >= 400
            or "text/html" not in response.headers.get("content-type", "")
        ):
            continue
        check(page, path, problems)
        todo.extend(p for p in links(page, base) if route_of(p) not in seen)
    assert not problems, "\n".join(f"{page}:\n  " + "\n  ".join(found) for page, found in problems.items())
    missing = [r for r in MUST if r not in seen]
    assert not missing, f"pages not reached from the dashboard: {missing} (visited {sorted(seen)})"
