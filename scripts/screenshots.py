"""Take the README's screenshots from a running demo (`make run`) with Debian's Chromium.

    .venv/bin/python scripts/screenshots.py --password <demo password> [--base http://127.0.0.1:5000]

Playwright cannot download a browser here, so it drives /usr/bin/chromium (DESIGN 8).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:5000")
    parser.add_argument("--password", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(f"{args.base}/")
        page.screenshot(path=str(OUT / "home.png"), full_page=True)

        sign_in(page, args, "buyer@oldham.example.org")
        page.wait_for_url(f"{args.base}/buyer/")
        page.screenshot(path=str(OUT / "buyer-dashboard.png"))

        page.goto(f"{args.base}/forgotten-password")
        page.fill("#email", "not an email")
        page.click("#submit")
        page.screenshot(path=str(OUT / "error-summary.png"))

        team = browser.new_page(viewport={"width": 1100, "height": 900})
        sign_in(team, args, "team@dps.example.org")
        team.goto(f"{args.base}/team/applications")
        team.screenshot(path=str(OUT / "team-applications.png"))
        team.goto(f"{args.base}/team/suppliers")
        team.screenshot(path=str(OUT / "team-suppliers.png"))

        buyer = browser.new_page(viewport={"width": 1100, "height": 900})
        sign_in(buyer, args, "buyer@ccin.example.org")
        buyer.goto(f"{args.base}/buyer/competitions")
        buyer.screenshot(path=str(OUT / "buyer-competitions.png"))
        team.goto(f"{args.base}/team/budget")
        team.screenshot(path=str(OUT / "team-budget.png"))
        team.goto(f"{args.base}/team/exports")
        team.screenshot(path=str(OUT / "team-exports.png"))
        team.goto(f"{args.base}/team/agreements")
        team.screenshot(path=str(OUT / "team-agreements.png"))
        team.goto(f"{args.base}/team/agreements")
        team.click("text=CCIN Dynamic Purchasing System 2020 to 2025")
        team.screenshot(path=str(OUT / "team-agreement.png"), full_page=True)
        team.goto(f"{args.base}/team/members")
        team.screenshot(path=str(OUT / "team-members.png"))

        auditor = browser.new_page(viewport={"width": 1100, "height": 1400})
        sign_in(auditor, args, "auditor@dps.example.org")
        auditor.goto(f"{args.base}/team/audit")
        # The rows, below the filters.
        auditor.locator("table").first.scroll_into_view_if_needed()
        auditor.screenshot(path=str(OUT / "team-audit-log.png"))

        supplier = browser.new_page(viewport={"width": 1100, "height": 900})
        sign_in(supplier, args, "olivia@tidewell.example.org")
        supplier.goto(f"{args.base}/agreements/CCIN-DPS-2020/suppliers")
        supplier.screenshot(path=str(OUT / "who-is-on-the-dps.png"))
        browser.close()


def sign_in(page, args, email: str) -> None:
    page.goto(f"{args.base}/sign-in")
    page.fill("#email", email)
    page.fill("#password", args.password)
    page.click("#submit")


if __name__ == "__main__":
    main()
