"""Signing in as an admin in a real browser: the sign-in survives a refresh and a fresh page load,
and signing out ends it for good, in every tab and in another browser holding the same cookie."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, browser_page, chromium, running_app

pytestmark = pytest.mark.browser
PASSWORD = "e2e-roles-pass"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    data = tmp_path_factory.mktemp("e2e-roles")
    with running_app(data, timeout=300, env={"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": PASSWORD}) as url:
        yield url


def test_sign_in_refresh_still_admin_then_sign_out(app_url, tmp_path):
    with browser_page() as page:
        page.goto(app_url + "/prompts", wait_until="domcontentloaded")
        main = page.get_by_test_id("stMain")
        expect(main.get_by_text("Admin sign-in")).to_be_visible(timeout=300_000)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Agent ·")).to_be_visible()

        main.get_by_label("Admin password").fill("not it")
        main.get_by_role("button", name="Unlock").click()
        expect(main.get_by_text("Wrong password.")).to_be_visible(timeout=30_000)
        main.get_by_label("Admin password").fill(PASSWORD)
        main.get_by_role("button", name="Unlock").click()
        expect(page.get_by_role("heading", name="Prompts", exact=True)).to_be_visible(timeout=60_000)
        expect(sidebar.get_by_text("Admin · admin")).to_be_visible()
        page.wait_for_function("document.cookie.includes('chatbot_admin=')", timeout=30_000)
        cookie = next(c for c in page.context.cookies() if c["name"] == "chatbot_admin")
        assert cookie["sameSite"] == "Strict" and cookie["expires"] > 0

        page.reload(wait_until="domcontentloaded")  # a new session: only the cookie remembers
        expect(page.get_by_role("heading", name="Prompts", exact=True)).to_be_visible(timeout=60_000)
        expect(sidebar.get_by_text("Admin · admin")).to_be_visible()
        page.screenshot(path=str(tmp_path / "admin-after-refresh.png"), full_page=True)

        page.goto(app_url + "/knowledge", wait_until="domcontentloaded")  # another page, loaded afresh
        expect(sidebar.get_by_text("Admin · admin")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Ingest")).to_be_enabled()

        sidebar.get_by_role("button", name="Sign out").click()
        expect(sidebar.get_by_text("Agent ·")).to_be_visible(timeout=30_000)
        expect(page.get_by_role("button", name="Ingest")).to_be_disabled()
        page.goto(app_url + "/prompts", wait_until="domcontentloaded")
        expect(main.get_by_text("Admin sign-in")).to_be_visible(timeout=30_000)
        page.wait_for_function("!document.cookie.includes('chatbot_admin=')", timeout=30_000)
        page.reload(wait_until="domcontentloaded")
        expect(main.get_by_text("Admin sign-in")).to_be_visible(timeout=60_000)
        expect(sidebar.get_by_text("Agent ·")).to_be_visible()
        page.goto(app_url + "/knowledge", wait_until="domcontentloaded")
        expect(page.get_by_text("Admins only: sign in to upload").first).to_be_visible(timeout=60_000)


def test_signing_out_in_one_tab_ends_admin_rights_in_every_tab_and_browser(app_url):
    viewport = {"width": 1280, "height": 900}
    with chromium() as browser:
        signed_in = browser.new_context(viewport=viewport)
        first = signed_in.new_page()
        first.goto(app_url + "/prompts", wait_until="domcontentloaded")
        main = first.get_by_test_id("stMain")
        expect(main.get_by_text("Admin sign-in")).to_be_visible(timeout=300_000)
        main.get_by_label("Admin password").fill(PASSWORD)
        main.get_by_role("button", name="Unlock").click()
        expect(first.get_by_role("heading", name="Prompts", exact=True)).to_be_visible(timeout=60_000)
        first.wait_for_function("document.cookie.includes('chatbot_admin=')", timeout=30_000)

        second = signed_in.new_page()  # a second tab of the same browser
        second.goto(app_url + "/prompts", wait_until="domcontentloaded")
        expect(second.get_by_role("heading", name="Prompts", exact=True)).to_be_visible(timeout=60_000)
        elsewhere = browser.new_context(viewport=viewport)  # another browser, the cookie copied into it
        elsewhere.add_cookies(signed_in.cookies())
        other = elsewhere.new_page()
        other.goto(app_url + "/knowledge", wait_until="domcontentloaded")
        expect(other.get_by_test_id("stSidebar").get_by_text("Admin · admin")).to_be_visible(timeout=60_000)
        expect(other.get_by_role("button", name="Ingest")).to_be_enabled()

        first.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
        expect(first.get_by_test_id("stSidebar").get_by_text("Agent ·")).to_be_visible(timeout=30_000)

        # Tab 2, still showing the admin page, acts: the sign-in has ended there too.
        second.get_by_test_id("stMain").get_by_role("button", name="Validate").click()
        expect(second.get_by_test_id("stMain").get_by_text("Admin sign-in")).to_be_visible(timeout=30_000)
        expect(second.get_by_test_id("stSidebar").get_by_text("Agent ·")).to_be_visible()
        # So in the other browser, at its next action.
        other.get_by_role("button", name="Delete document").click()  # it asks first: nothing is deleted
        expect(other.get_by_test_id("stSidebar").get_by_text("Agent ·")).to_be_visible(timeout=30_000)
        expect(other.get_by_role("button", name="Ingest")).to_be_disabled()
        expect(other.get_by_text("Admins only: sign in to upload").first).to_be_visible()
        expect(other.get_by_text("for good?")).to_have_count(0)
        # A fresh load in either browser finds no sign-in.
        other.reload(wait_until="domcontentloaded")
        expect(other.get_by_test_id("stSidebar").get_by_text("Agent ·")).to_be_visible(timeout=60_000)
