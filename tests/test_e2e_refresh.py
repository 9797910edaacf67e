"""In a real browser: a conversation survives a page refresh, a second tab and a server restart."""

from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = pytest.mark.browser
ENV = {"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": "e2e-pass"}
BUBBLES = '[data-testid="stChatMessage"]'


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    return tmp_path_factory.mktemp("e2e-refresh")


def conversation_id(url: str) -> str:
    return parse_qs(urlparse(url).query)["c"][0]


def ask(page, text: str, replies: int) -> None:
    box = page.get_by_placeholder("Type the customer's message…")
    box.wait_for(timeout=300_000)  # the first page view loads the model and ingests the demo articles
    box.fill(text)
    box.press("Enter")
    page.wait_for_function(
        f"document.querySelectorAll('{BUBBLES}').length >= {2 * replies}"
        " && [...document.querySelectorAll('[data-testid=\"stChatMessage\"]')].pop().innerText.includes('Offline mode')",
        timeout=90_000,
    )


def bubbles(page, count: int) -> list[str]:
    # Counted and read in one step (a rerun can replace the bubbles between two calls), and only
    # once each bubble is whole: a message ends with its triage badges, a reply with its caption.
    found = page.wait_for_function(
        f"(() => {{ const b = [...document.querySelectorAll('{BUBBLES}')];"
        f" const whole = b.every(e => /priority \\d+\\/10|\\d ms/.test(e.innerText));"
        f" return b.length >= {count} && whole ? b.map(e => e.innerText) : null; }})()",
        timeout=90_000,
    ).json_value()
    # Compare words, not layout: innerText's line breaks depend on how the page was rendered.
    return [" ".join(text.split()) for text in found]


def test_refresh_and_second_tab_resume_the_same_conversation(data_dir, tmp_path):
    with running_app(data_dir, env=ENV) as url, browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        ask(page, "How do I get a refund?", replies=1)
        page.get_by_text("Sources (").last.wait_for(timeout=60_000)
        session = conversation_id(page.url)

        page.reload(wait_until="domcontentloaded")
        after_refresh = bubbles(page, 2)
        assert len(after_refresh) == 2
        assert "How do I get a refund?" in after_refresh[0] and "Offline mode" in after_refresh[1]
        assert conversation_id(page.url) == session

        ask(page, "my camera stopped recording clips", replies=2)
        texts = bubbles(page, 4)
        assert "How do I get a refund?" in texts[0] and "my camera stopped recording clips" in texts[2]

        second = page.context.browser.new_page()  # a fresh browser context: nothing shared but the URL
        second.goto(page.url, wait_until="domcontentloaded")
        seen = bubbles(second, 4)
        assert len(seen) == 4
        assert "How do I get a refund?" in seen[0] and "my camera stopped recording clips" in seen[2]
        assert conversation_id(second.url) == session
        page.screenshot(path=str(tmp_path / "after-refresh.png"), full_page=True)
        (data_dir / "conversation-id").write_text(session)


def test_a_server_restart_keeps_the_conversation_and_history_resumes_it(data_dir):
    session = (data_dir / "conversation-id").read_text()
    with running_app(data_dir, env=ENV) as url, browser_page() as page:
        page.goto(f"{url}/?c={session}", wait_until="domcontentloaded")
        texts = bubbles(page, 4)
        assert len(texts) == 4 and "How do I get a refund?" in texts[0]

        page.goto(f"{url}/history", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Conversation history").wait_for(timeout=90_000)
        page.get_by_role("button", name="Resume in chat").click()
        page.wait_for_url(f"**c={session}**", timeout=60_000)
        assert len(bubbles(page, 4)) == 4
        ask(page, "thanks, that is all", replies=3)
        assert len(bubbles(page, 6)) == 6
