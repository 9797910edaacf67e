"""The bundled model in a real browser: pick the Local backend in the sidebar, ask, and watch the real
SmolLM2-135M-Instruct's reply stream into the chat.

Replies are capped at a few tokens (CHATBOT_MAX_TOKENS) to keep the test cheap on a CPU; the model is
converted once per machine and shared with tests/test_bundled_model.py.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from backends.bundled import BUNDLED_LABEL, BUNDLED_MODEL, bundled_dir, ensure_bundled_model
from tests.browser import CHROMIUM, browser_page, running_app
from tests.conftest import MODEL_CACHE

pytestmark = [pytest.mark.browser, pytest.mark.slow]
MAX_TOKENS = 24

# Every text the newest chat message's Markdown shows while the page changes, so the test can see the reply grow.
WATCH = """() => {
  window.chatTexts = [];
  new MutationObserver(() => {
    const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
    const text = messages.length && messages[messages.length - 1].querySelector('[data-testid="stMarkdown"]');
    if (text) window.chatTexts.push(text.innerText);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    ensure_bundled_model(MODEL_CACHE)
    data = tmp_path_factory.mktemp("e2e-local")
    (data / "models").mkdir()
    (data / "models" / BUNDLED_MODEL).symlink_to(bundled_dir(MODEL_CACHE))  # converted already: no wait here
    with running_app(data, timeout=300, env={"CHATBOT_BACKEND": "offline", "CHATBOT_MAX_TOKENS": str(MAX_TOKENS)}) as url:
        yield url


def test_the_bundled_model_streams_a_reply_in_the_chat(app_url, tmp_path):
    with browser_page() as page:
        page.goto(app_url, wait_until="domcontentloaded")
        box = page.get_by_placeholder("Type the customer's message…")
        box.wait_for(timeout=300_000)
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_test_id("stSelectbox").filter(has_text="Backend").click()
        page.get_by_role("option", name="local", exact=True).click()
        expect(sidebar.get_by_role("combobox", name="Local model")).to_have_value(BUNDLED_LABEL, timeout=60_000)

        page.evaluate(WATCH)
        box.fill("How do I get a refund?")
        box.press("Enter")
        reply = page.get_by_test_id("stChatMessage").filter(has_text="local · ").last
        reply.wait_for(timeout=600_000)  # the first turn loads the model
        page.screenshot(path=str(tmp_path / "local-reply.png"))
        texts = page.evaluate("window.chatTexts")
        final = reply.get_by_test_id("stMarkdown").first.inner_text().strip()

    assert final and "Offline mode" not in final
    # The reply grew on the page: a shorter non-empty start of it was shown before the rest.
    growing = {t.strip() for t in texts if t.strip() and final.startswith(t.strip()) and len(t.strip()) < len(final)}
    assert growing, (final, texts[-10:])
