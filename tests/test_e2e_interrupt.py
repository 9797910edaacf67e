"""In a real browser: touching a widget, or closing the tab, while a reply streams keeps the customer's message.

Streamlit stops the script run inside st.write_stream when the agent changes any widget (and
reruns it), or when the tab closes. The reply comes from the OpenAI-compatible protocol server (devtools/servers), slowly,
so that the agent's click lands mid-stream; after the rerun the conversation still holds the
customer's message and the part of the reply that arrived, marked interrupted.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest

from devtools.servers.openai import OpenAIServer
from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BUBBLES = '[data-testid="stChatMessage"]'
MESSAGE = "My doorbell camera keeps going offline at night, what can I do?"
REPLY = " ".join(f"Step {n}: check the router and the doorbell's power supply [1]." for n in range(1, 61))


@pytest.fixture
def data_dir(tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    return tmp_path


@contextmanager
def streaming(data_dir):
    """The app on a slow OpenAI-compatible server, a browser page, and the customer's message sent:
    yields once the reply is streaming (its first steps on the page, the last one far off)."""
    # One piece every 0.2 s: the whole reply would take over two minutes.
    with OpenAIServer(REPLY, api_key="sk-local-test", token_delay=0.2) as server, \
            running_app(data_dir, env={"CHATBOT_BACKEND": "openai", "OPENAI_BASE_URL": server.base_url,
                                       "OPENAI_API_KEY": "sk-local-test", "CHATBOT_MAX_TOKENS": "2000",
                                       "CHATBOT_ADMIN_PASSWORD": "e2e-pass"}) as url, \
            browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        box = page.get_by_placeholder("Type the customer's message…")
        box.wait_for(timeout=300_000)  # the first page view loads the model and ingests the demo articles
        box.fill(MESSAGE)
        box.press("Enter")
        page.get_by_text("Step 3:").first.wait_for(timeout=90_000)
        assert page.get_by_text("Step 60:").count() == 0
        yield page


def test_a_widget_touched_mid_stream_keeps_the_message_and_the_partial_reply(data_dir):
    with streaming(data_dir) as page:

        # The agent touches a widget: their name in the sidebar.
        agent = page.get_by_placeholder("Your name")
        agent.fill("Ana")
        agent.press("Enter")

        # After the rerun, the stored conversation: the customer's message, the partial reply, marked.
        page.get_by_text("Interrupted.").first.wait_for(timeout=90_000)
        texts = [" ".join(t.split()) for t in page.locator(BUBBLES).all_inner_texts()]
        assert MESSAGE in texts[0]
        assert "Step 1:" in texts[1] and "Step 60:" not in texts[1]
        assert page.get_by_role("button", name="Send it again").count() == 1

        # A refresh reads it back from the store: nothing was lost with the abandoned run.
        page.reload(wait_until="domcontentloaded")
        page.get_by_text("Interrupted.").first.wait_for(timeout=90_000)
        texts = [" ".join(t.split()) for t in page.locator(BUBBLES).all_inner_texts()]
        assert MESSAGE in texts[0] and "Step 1:" in texts[1]


def test_a_tab_closed_mid_stream_keeps_the_message_and_the_partial_reply(data_dir):
    with streaming(data_dir) as page:
        address = page.url
        other = page.context.browser.new_page()
        page.close()  # the agent closes the tab: Streamlit stops the run inside st.write_stream

        # The same conversation in another tab: the message, and the reply up to where it stopped.
        other.goto(address, wait_until="domcontentloaded")
        other.get_by_text("Interrupted.").first.wait_for(timeout=90_000)
        texts = [" ".join(t.split()) for t in other.locator(BUBBLES).all_inner_texts()]
        assert MESSAGE in texts[0]
        assert "Step 1:" in texts[1] and "Step 60:" not in texts[1]
