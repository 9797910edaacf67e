"""The Training page in a real browser: the Jobs tab stays open and the job picker follows a job through
launch, Stop and completion (what the browser keeps between reruns, which AppTest cannot see)."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = pytest.mark.browser
PASSWORD = "e2e-training-pass"
WAIT = 300_000  # ms; a busy 2-core machine imports torch, transformers and trl slowly


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from training.jobs import JobManager
    from training.tiny_model import make_tiny_model

    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    data = tmp_path_factory.mktemp("e2e-training")
    model = make_tiny_model(data / "training" / "tiny-model")
    env = {"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": PASSWORD}
    try:
        with running_app(data, timeout=300, env=env) as url:
            yield url, model
    finally:
        manager = JobManager(data)
        for status in manager.list():
            if status.running:
                manager.stop(status.id, grace=2)


def launch(page, main, expand: str | None = None, **settings: str) -> None:
    page.get_by_role("tab", name="New job").click()
    expect(page.locator('[role="tab"][aria-selected="true"]')).to_have_text("New job")
    if expand:
        main.get_by_text(expand).click()
    for label, value in settings.items():
        box = main.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        expect(box).to_have_value(value)
    button = page.get_by_role("button", name="Launch training job")
    expect(button).to_be_enabled(timeout=WAIT)
    button.click()
    expect(main.get_by_text("started: follow it in the Jobs tab")).to_be_visible(timeout=WAIT)
    expect(page.locator('[role="tab"][aria-selected="true"]')).to_have_text("Jobs", timeout=WAIT)  # the tab it names opens


def test_the_jobs_tab_and_the_job_picker_follow_a_job_through_stop_and_completion(app):
    url, model = app
    with browser_page() as page:
        page.goto(url + "/training", wait_until="domcontentloaded")
        main = page.get_by_test_id("stMain")
        expect(main.get_by_text("Admin sign-in")).to_be_visible(timeout=WAIT)
        main.get_by_label("Admin password").fill(PASSWORD)
        main.get_by_role("button", name="Unlock").click()
        expect(page.get_by_role("heading", name="Training", exact=True)).to_be_visible(timeout=WAIT)
        base = main.get_by_label("Base model", exact=True)
        base.fill(str(model))
        base.press("Enter")
        expect(main.get_by_text("exact, by the base model")).to_be_visible(timeout=WAIT)
        open_tab = page.locator('[role="tab"][aria-selected="true"]')
        picker = main.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Job", exact=True)).locator("input")

        # A long job: the page opens the Jobs tab it names, which stays open through Stop.
        launch(page, main, **{"Max steps": "5000"})
        expect(open_tab).to_have_text("Jobs", timeout=WAIT)
        expect(picker).to_have_value(re.compile(r" · running$"))
        expect(main.get_by_test_id("stProgress").filter(has_text="Step ")).to_be_visible(timeout=WAIT)
        main.get_by_role("button", name="Stop").click()
        expect(main.get_by_text(re.compile(r"^Stopped \(exit code -?\d+\):"))).to_be_visible(timeout=WAIT)
        expect(open_tab).to_have_text("Jobs", timeout=WAIT)
        expect(picker).to_have_value(re.compile(r" · stopped$"))

        # A short one that completes while the Jobs tab watches it.
        launch(page, main, "Logging, evaluation and checkpoints", **{"Max steps": "20", "Eval steps": "10"})
        expect(open_tab).to_have_text("Jobs", timeout=WAIT)
        expect(main.get_by_text(re.compile(r"^Completed \(exit code 0\)"))).to_be_visible(timeout=WAIT)
        expect(open_tab).to_have_text("Jobs", timeout=WAIT)
        expect(picker).to_have_value(re.compile(r" · completed$"))
