"""The Stats page's sentiment chart draws when every turn falls on one day, through AppTest on a real Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def turn(text: str, score: float) -> list[dict]:
    triage = {"sentiment": "negative" if score < 0 else "positive", "sentiment_score": score, "priority": 3}
    return [{"role": "user", "content": text},
            {"role": "assistant", "content": "An answer [1].",
             "meta": {"backend": "offline", "model": "knowledge-base", "latency_ms": 100.0, "triage": triage}}]


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    data = tmp_path_factory.mktemp("one-day-stats")
    (data / "knowledge").mkdir()
    (data / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(data):
        now = time.time()
        clock = [now - 5 * 60]
        store = ConversationStore(connect(data_dir=data / "redis"), clock=lambda: clock[0])
        store.append("early", turn("my parcel is late", -0.5))
        clock[0] = now - 60
        store.append("later", turn("thanks, that worked", 0.6))
        yield data
        store.client.shutdown(nosave=True)


def sentiment_chart(at: AppTest):
    charts = [c for c in at.get("vega_lite_chart") if '"mean_score"' in c.proto.spec]
    assert len(charts) == 1, "no sentiment chart"
    return charts[0]


def test_one_days_sentiment_is_drawn_as_points_by_hour(app_env):
    at = AppTest.from_file(str(ROOT / "views/stats.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not any("No sentiment recorded" in c.value for c in at.caption)
    spec = json.loads(sentiment_chart(at).proto.spec)
    mark = spec["mark"]
    # A line alone through one bucket draws nothing; each bucket is a visible point.
    assert mark["type"] == "line" and mark["point"] and mark["point"].get("size", 0) >= 30
    assert spec["encoding"]["x"]["title"] == "hour (UTC)"  # AppTest sends no browser time zone: UTC, and said
    chart = sentiment_chart(at).proto
    raw = chart.data.data or next(iter(chart.datasets)).data.data
    table = pa.ipc.open_stream(raw).read_all().to_pylist()
    assert [(row["turns"], round(row["mean_score"], 2)) for row in table] in (
        [(2, 0.05)], [(1, -0.5), (1, 0.6)])  # the two turns in one hour, or either side of an hour
    assert all(row["when"].endswith(":00") for row in table)


def test_turns_with_a_score_but_no_sentiment_level_still_chart(tmp_path):
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / ".demo-seeded").write_text("seeded\n")
    with app_environment(tmp_path):
        store = ConversationStore(connect(data_dir=tmp_path / "redis"))
        scored = turn("my parcel is late", -0.5)
        del scored[1]["meta"]["triage"]["sentiment"]  # a score, no level
        store.append("scored", scored)
        at = AppTest.from_file(str(ROOT / "views/stats.py"), default_timeout=TIMEOUT).run()
        assert not at.exception
        sentiment_chart(at)  # the trend of scores is still drawn
        store.client.shutdown(nosave=True)
