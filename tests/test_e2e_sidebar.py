"""The chat page's sidebar in a real browser: every number in the conversation's stats is shown whole.

AppTest has no layout, so this is checked in headless Chromium, against the local OpenAI-protocol
server answering after 1.2 s, so that the latencies run to four digits of milliseconds.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from devtools.servers.openai import OpenAIServer
from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = pytest.mark.browser

# Sidebar metric labels and values whose text is wider than the box that shows it (so it is clipped).
CUT_OFF = """() => [...document.querySelectorAll('[data-testid="stSidebar"] [data-testid^="stMetric"]')]
    .filter(el => {
        const range = document.createRange();
        range.selectNodeContents(el);
        return range.getBoundingClientRect().width > el.getBoundingClientRect().width + 1;
    })
    .map(el => el.innerText.trim())"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    with OpenAIServer(reply="Refunds take 5 to 10 business days [1].", first_token_delay=1.2) as server, \
            running_app(tmp_path_factory.mktemp("sidebar-data"), timeout=300,
                        env={"CHATBOT_BACKEND": "openai", "OPENAI_API_KEY": "sk-sidebar",
                             "OPENAI_BASE_URL": server.base_url}) as url:
        yield url


def test_the_conversation_stats_in_the_sidebar_are_never_cut_off(app_url, tmp_path):
    with browser_page() as page:
        page.goto(app_url, wait_until="domcontentloaded")
        box = page.get_by_placeholder("Type the customer's message…")
        box.wait_for(timeout=300_000)
        box.fill("How do I get a refund?")
        box.press("Enter")
        page.get_by_text("Sources (").last.wait_for(timeout=120_000)
        sidebar = page.get_by_test_id("stSidebar")
        latency = sidebar.get_by_test_id("stMetric").filter(has_text="Last latency")
        latency.scroll_into_view_if_needed(timeout=60_000)
        value = latency.get_by_test_id("stMetricValue")
        expect(value).not_to_have_text("–", timeout=60_000)  # the turn's stats are in
        sidebar.screenshot(path=str(tmp_path / "sidebar.png"))
        assert page.evaluate(CUT_OFF) == []
        shown = value.inner_text()
        assert shown.endswith(" s") and float(shown.removesuffix(" s")) >= 1.2  # over a second, in seconds
