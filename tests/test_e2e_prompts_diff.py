"""The Prompts page's side-by-side diff in a real browser: it stays inside its column and wraps long lines
between words."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, browser_page, running_app

pytestmark = pytest.mark.browser
PASSWORD = "e2e-diff-pass"
LONG_LINE = ("Warm, concise and professional; " + " ".join(
    f"remember{n:02d} that replacement parcels, refunds and subscription credits are explained plainly"
    for n in range(6)))

# For the diff's table: how far it reaches past its column, any cell whose text overflows it, the cells
# holding each whole line, and every place a visual line starts in the middle of a word.
MEASURE = """() => {
  const table = document.querySelector('table.diff');
  const column = table.closest('[data-testid="stMainBlockContainer"]') || table.parentElement;
  const overflowing = [...table.querySelectorAll('td')].filter(td => td.scrollWidth > td.clientWidth + 1)
    .map(td => td.textContent.slice(0, 60));
  const cuts = [];
  const wrapped = [];
  for (const td of table.querySelectorAll('td:not(.diff_header):not(.diff_next)')) {
    const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
    let top = null, previous = ' ', lines = 1;
    while (walker.nextNode()) {
      const node = walker.currentNode;
      for (let i = 0; i < node.length; i++) {
        const range = document.createRange();
        range.setStart(node, i); range.setEnd(node, i + 1);
        const rect = range.getClientRects()[0];
        const ch = node.data[i];
        if (rect && ch !== ' ') {
          if (top !== null && rect.top > top + 2) {
            lines += 1;
            if (previous !== ' ') cuts.push(td.textContent.slice(0, 40) + ' | ' + previous + ch);
          }
          top = rect.top;
        }
        previous = ch;
      }
    }
    if (lines > 1) wrapped.push(td.textContent);
  }
  return {overreach: table.getBoundingClientRect().right - column.getBoundingClientRect().right,
          overflowing, cuts, wrapped, cells: [...table.querySelectorAll('td')].map(td => td.textContent)};
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from chatbot.prompts.library import open_prompt_library

    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    data = tmp_path_factory.mktemp("e2e-diff")
    library = open_prompt_library(data)
    base = library.labels("general")["latest"]
    text = library.version("general", base).text
    assert "    Warm, concise and professional." in text
    library.save("general", text.replace("Warm, concise and professional.", LONG_LINE), author="ops",
                 message="A long line", base_version=base)  # a draft: the diff opens on production -> draft
    with running_app(data, timeout=300, env={"CHATBOT_BACKEND": "offline", "CHATBOT_ADMIN_PASSWORD": PASSWORD}) as url:
        yield url


def test_side_by_side_diff_wraps_long_lines_between_words_inside_its_column(app_url, tmp_path):
    with browser_page() as page:
        page.goto(app_url + "/prompts", wait_until="domcontentloaded")
        main = page.get_by_test_id("stMain")
        main.get_by_label("Admin password").fill(PASSWORD, timeout=300_000)
        main.get_by_role("button", name="Unlock").click()
        expect(page.get_by_role("heading", name="Prompts", exact=True)).to_be_visible(timeout=60_000)
        page.get_by_role("tab", name="Diff").click()
        main.get_by_text("Side by side").click()
        page.locator("table.diff").wait_for(timeout=60_000)
        expect(page.locator("table.diff")).to_contain_text("remember05")
        page.locator("table.diff").screenshot(path=str(tmp_path / "prompts-diff.png"))
        found = page.evaluate(MEASURE)

    assert found["overreach"] <= 1, f"the diff reaches {found['overreach']:.0f}px past its column"
    assert not found["overflowing"], found["overflowing"]
    # The long line is one cell, shown on several lines, each starting at a word.
    assert any(LONG_LINE in cell for cell in found["cells"]), "the long line was cut into pieces"
    assert any(LONG_LINE in cell for cell in found["wrapped"]), "the long line did not wrap"
    assert not found["cuts"], found["cuts"]
