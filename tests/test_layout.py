"""The look: GOV.UK Design System, generic header, no GOV.UK brand, accessible errors."""
from __future__ import annotations


def test_pages_use_the_generic_header_without_the_crown(client):
    page = client.get("/").get_data(as_text=True)
    assert "govuk-generic-header" in page
    assert "Co-operative Councils’ Innovation Network" in page
    # The crown and GOV.UK's own name are for GOV.UK only.
    assert "govuk-logo" not in page and "govuk-header__logotype" not in page
    assert "GOV.UK" not in page
    assert 'lang="en-GB"' in page


def test_the_stylesheet_leaves_out_the_gds_transport_font():
    from pathlib import Path

    scss = (Path(__file__).resolve().parent.parent / "assets" / "app.scss").read_text()
    assert "$govuk-font-family: (arial, sans-serif)" in scss


def test_navigation_depends_on_the_role(factory, signed_in):
    buyer, _ = signed_in("buyer")
    team, _ = signed_in("dps_admin", organisation_id=factory.organisation())
    buyer_page = buyer.get("/buyer/").get_data(as_text=True)
    team_page = team.get("/team/").get_data(as_text=True)
    assert 'href="/buyer/colleagues"' in buyer_page and 'href="/team/accounts"' not in buyer_page
    assert 'href="/team/accounts"' in team_page and 'href="/buyer/"' not in team_page


def test_form_errors_use_the_error_summary_and_are_tied_to_their_fields(client):
    response = client.submit("/forgotten-password", {"email": "nope"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "<title>Error: Forgotten your password" in page
    assert "govuk-error-summary" in page and "There is a problem" in page
    assert 'href="#email"' in page
    assert 'id="email-error"' in page and 'aria-describedby="email-hint email-error"' in page


def test_error_pages(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.get_data(as_text=True)
    wrong_method = client.delete("/sign-in")
    assert wrong_method.status_code == 405


def test_a_server_error_shows_the_500_page(app, client):
    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom")
    assert response.status_code == 500
    assert "Sorry, there is a problem with the service" in response.get_data(as_text=True)


def test_a_sealed_refusal_nobody_caught_is_a_plain_not_found(app, client):
    from dps.services.sealed import Sealed

    @app.get("/leaky")
    def leaky():
        raise Sealed("bid price")

    response = client.get("/leaky")
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True) and "bid price" not in response.get_data(as_text=True)


def test_an_error_summary_link_to_a_date_moves_focus_to_its_day_box(signed_in):
    """Issue 16 item 4: a link to a fieldset only scrolls; a link to the Day box moves focus there."""
    import re

    team, _ = signed_in("dps_admin")
    blank = {"name": "Barnsley Council", "membership": "full", "kind": "council", "nation": "England",
             "identifier_scheme": "", "identifier_id": "", "left_on": ["", "", ""]}
    response = team.submit("/team/members/new", {**blank, "joined_on": ["31", "2", "2019"]})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    summary = re.search(r'<div class="govuk-error-summary".*?</ul>', page, re.S).group(0)
    links = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', summary)
    assert links == [("joined_on-day", "Enter a real date, like 27 6 2024")]
    # The link's target is the Day input itself, on the page.
    assert re.search(r'<input[^>]+id="joined_on-day"[^>]+name="joined_on"', page)


def test_an_error_summary_link_to_another_field_still_links_to_the_field(signed_in):
    import re

    team, _ = signed_in("dps_admin")
    response = team.submit("/team/members/new", {"name": "", "membership": "", "kind": "", "nation": "",
                                                  "identifier_scheme": "", "identifier_id": "",
                                                  "joined_on": ["", "", ""], "left_on": ["", "", ""]})
    summary = re.search(r'<div class="govuk-error-summary".*?</ul>', response.get_data(as_text=True), re.S).group(0)
    assert 'href="#name"' in summary and "-day" not in summary
