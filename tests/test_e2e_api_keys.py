"""An admin makes an API key on the app's API keys page in a real browser, and the API served
beside the app (`python -m chatbot serve` on the same data directory) takes it at once; revoked on
the page, the API refuses it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, ROOT, browser_page, free_port, running_app

pytestmark = pytest.mark.browser
PASSWORD = "e2e-api-keys-pass"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    data = tmp_path_factory.mktemp("e2e-api-keys")
    env = {"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": PASSWORD}
    with running_app(data, timeout=300, env=env) as app_url:
        port = free_port()
        api = subprocess.Popen([sys.executable, "-m", "chatbot", "serve", "--port", str(port), "--log-level",
                                "warning"], cwd=ROOT, env={**os.environ, "CHATBOT_DATA_DIR": str(data), **env})
        api_url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(3000):  # a bound so an API that never starts fails instead of hanging
                try:
                    httpx.get(f"{api_url}/health")
                    break
                except httpx.TransportError:
                    assert api.poll() is None, "the API stopped"
                    time.sleep(0.1)
            yield app_url, api_url
        finally:
            api.terminate()
            api.wait(30)


def test_a_key_made_on_the_page_works_on_the_api_until_revoked(desk):
    app_url, api_url = desk
    with browser_page() as page:
        page.goto(app_url + "/api-keys", wait_until="domcontentloaded")
        main = page.get_by_test_id("stMain")
        expect(main.get_by_text("Admin sign-in")).to_be_visible(timeout=300_000)
        main.get_by_label("Admin password").fill(PASSWORD)
        main.get_by_role("button", name="Unlock").click()
        expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible(timeout=60_000)
        main.get_by_label("For", exact=True).fill("Help desk")
        main.get_by_role("button", name="Create key").click()
        code = main.get_by_test_id("stCode")
        expect(code).to_contain_text("desk_", timeout=60_000)
        key = code.inner_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        turn = httpx.post(f"{api_url}/v1/chat", json={"text": "How do I get a refund?"}, headers=headers, timeout=60)
        assert turn.status_code == 200 and turn.json()["citations"]
        main.get_by_role("button", name="Revoke").click()
        expect(main.get_by_text("revoked", exact=False)).to_be_visible(timeout=60_000)
        refused = httpx.get(f"{api_url}/v1/models", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "invalid_api_key"
