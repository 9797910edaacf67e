"""The handoff loop in a real browser: a customer asks for a person in the chat, an agent claims the
conversation in the Handoff queue, answers it as a person, and closes it; the chat shows the answer."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    data = tmp_path_factory.mktemp("e2e-handoff")
    with running_app(data, timeout=300, env={"CHATBOT_BACKEND": "offline"}) as url:
        yield url


def say(page, text: str) -> None:
    box = page.get_by_placeholder("Type the customer's message…")
    box.fill(text)
    box.press("Enter")


def test_claim_answer_and_close_an_escalated_conversation(app_url, tmp_path):
    with browser_page() as page:
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_placeholder("Type the customer's message…").wait_for(timeout=300_000)
        say(page, "This is useless, I want to speak to a real person now")
        expect(page.get_by_text("member of our support team").first).to_be_visible(timeout=60_000)
        say(page, "Hello? Is anyone there?")
        expect(page.get_by_text("Waiting for a person")).to_be_visible(timeout=60_000)
        chat_url = page.url

        page.goto(app_url + "/handoff", wait_until="domcontentloaded")
        main = page.get_by_test_id("stMain")
        expect(main.get_by_role("heading", name="Handoff queue")).to_be_visible(timeout=60_000)
        expect(main.get_by_text("1 message(s) waiting for a person")).to_be_visible(timeout=30_000)
        expect(main.get_by_text("escalated: human requested").first).to_be_visible()
        main.get_by_label("Your name").fill("Ana")
        main.get_by_label("Your name").press("Enter")
        main.get_by_role("button", name="Claim").click()
        expect(main.get_by_role("button", name="Close")).to_be_visible(timeout=30_000)
        main.get_by_label("Reply to the customer").fill("Hi, I'm Ana from support. I'm on it now.")
        main.get_by_role("button", name="Send reply").click()
        expect(main.get_by_text("Hi, I'm Ana from support. I'm on it now.")).to_be_visible(timeout=30_000)
        expect(main.get_by_text("Written by Ana, a person on the support team")).to_be_visible()
        page.screenshot(path=str(tmp_path / "handoff-answered.png"), full_page=True)
        main.get_by_role("button", name="Close").click()
        expect(main.get_by_text("No conversation is waiting for a person.")).to_be_visible(timeout=30_000)

        page.goto(chat_url, wait_until="domcontentloaded")  # the conversation as the chat shows it now
        expect(page.get_by_text("Hi, I'm Ana from support. I'm on it now.")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Waiting for a person")).to_have_count(0)
