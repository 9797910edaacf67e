"""Uploading, in a real browser, a file whose name holds a NUL byte and other control characters
together with a good file: the good one is indexed, the other is named in the per-file results,
and neither fails the batch."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = pytest.mark.browser
PASSWORD = "e2e-upload-names"
GOOD = b"# Gift cards\n\nA Nimbus gift card never expires and can pay for any device or plan.\n"
ODD = b"# Loyalty points\n\nLoyalty points are earned on every order and expire after two years.\n"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    data = tmp_path_factory.mktemp("e2e-upload-names")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")  # an empty base: only this test's files
    with running_app(data, timeout=300, env={"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": PASSWORD}) as url:
        yield url


def test_a_name_with_a_nul_byte_is_named_in_the_results_and_the_good_file_is_indexed(app_url, tmp_path):
    with browser_page() as page:
        page.goto(app_url + "/prompts", wait_until="domcontentloaded")
        main = page.get_by_test_id("stMain")
        main.get_by_label("Admin password").fill(PASSWORD, timeout=300_000)
        main.get_by_role("button", name="Unlock").click()
        expect(page.get_by_test_id("stSidebar").get_by_text("Admin · admin")).to_be_visible(timeout=60_000)
        page.goto(app_url + "/knowledge", wait_until="domcontentloaded")
        expect(page.get_by_role("button", name="Ingest")).to_be_enabled(timeout=60_000)
        page.locator("input[type=file]").set_input_files([
            {"name": "loyalty\x00\x07\u202epoints.md", "mimeType": "text/markdown", "buffer": ODD},
            {"name": "gift-cards.md", "mimeType": "text/markdown", "buffer": GOOD},
        ])
        expect(main.get_by_text("gift-cards.md", exact=True).first).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Ingest").click()
        expect(main.get_by_text("gift-cards.md: 1 chunk added").first).to_be_visible(timeout=120_000)
        # The other file is named in the results by its name without the NUL, BEL and override.
        expect(main.get_by_text("loyaltypoints.md: 1 chunk added").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(tmp_path / "upload-names.png"), full_page=True)
        expect(main.get_by_text("documents ·").first).to_contain_text("chunks")

        main.get_by_label("Query").fill("does a gift card expire")
        main.get_by_label("Query").press("Enter")
        expect(main.get_by_text("gift-cards.md · chunk 0")).to_be_visible(timeout=60_000)
