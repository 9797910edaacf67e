"""Batch triage on the real API (uvicorn, httpx): a row the core refuses is named by its line while the
others are triaged, results come a page at a time, a job can be cancelled, and one whose process
stopped reads `interrupted` instead of `running` for good."""

from __future__ import annotations

import time

import httpx
import pytest

import api.routes_classify
from api.app import create_app
from api.batch import BatchJobs
from tests.api_server import desk_services, serving


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    services = desk_services(tmp_path_factory.mktemp("api-batch"))
    app = create_app(services)
    # A short lease, so that a runner gone silent shows within the test.
    app.state.desk.jobs = BatchJobs(lambda: services.store.client, heartbeat=0.05, lease=1.0)
    with serving(app) as url:
        _, key = app.state.desk.keys.create("batch", "agent", requests_per_minute=0)
        _, admin = app.state.desk.keys.create("batch admin", "admin", requests_per_minute=0)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            yield app, http, {"Authorization": f"Bearer {admin}"}
    services.knowledge.close()


def upload(http: httpx.Client, name: str, data: bytes, kind: str = "text/csv") -> dict:
    answer = http.post("/v1/triage/batch", files={"file": (name, data, kind)})
    assert answer.status_code == 202, answer.text
    return answer.json()


def finished(http: httpx.Client, started: dict, **params) -> dict:
    deadline = time.monotonic() + 120
    while not (job := http.get(started["status_url"], params=params).json())["finished"]:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_an_invisible_only_row_is_a_problem_on_its_line_and_the_others_are_triaged(desk):
    _, http, _ = desk
    started = upload(http, "ws.csv", b"id,text\nw1,\xe2\x80\x8b\nw3,hello\n")  # a zero-width space only
    assert started["total"] == 1
    assert started["problems"] == [{"line": 2, "error": "no text (nothing but spaces or invisible characters)"}]
    job = finished(http, started)
    assert (job["status"], job["done"], job["total"], job["error"]) == ("done", 1, 1, None)
    assert [(r["id"], r["line"]) for r in job["results"]] == [("w3", 3)] and job["results"][0]["intent"]


@pytest.mark.parametrize("row, line_error", [
    (rb'{"text": "\ud800"}', "text: an unpaired surrogate \\ud800 is not a character"),
    (rb'{"text": "\ud800 hi"}', "text: an unpaired surrogate \\ud800 is not a character"),
    (rb'{"id": "\udc00", "text": "refund please"}', "id: an unpaired surrogate \\udc00 is not a character"),
], ids=["surrogate-only", "surrogate-and-text", "surrogate-id"])
def test_a_jsonl_row_with_a_lone_surrogate_is_a_problem_naming_its_line(desk, row, line_error):
    _, http, _ = desk
    data = b'{"id": "a", "text": "where is my parcel"}\n' + row + b'\n{"id": "c", "text": "I want a refund"}\n'
    started = upload(http, "sur.jsonl", data, "application/x-ndjson")
    assert started["problems"] == [{"line": 2, "error": line_error}] and started["total"] == 2
    job = finished(http, started)
    assert job["status"] == "done" and [r["id"] for r in job["results"]] == ["a", "c"]


def test_a_row_the_core_refuses_while_running_is_a_result_with_its_error(desk, monkeypatch):
    """A message the classifier finds empty (cleaned otherwise than the upload saw it) fails its row only."""
    _, http, _ = desk
    real = api.routes_classify.classify_one

    def refusing(the_desk, key, text, tier, *args):
        if text == "nothing":
            raise api.routes_classify.ApiError(422, "empty_message", "The message is empty: send some text.")
        return real(the_desk, key, text, tier, *args)

    monkeypatch.setattr(api.routes_classify, "classify_one", refusing)
    job = finished(http, upload(http, "t.csv", b"id,text\nw1,nothing\nw3,hello\n"))
    assert job["status"] == "done"
    assert job["results"][0] == {"id": "w1", "line": 2, "error": "The message is empty: send some text."}
    assert job["results"][1]["id"] == "w3" and job["results"][1]["intent"]


def test_results_come_a_page_at_a_time_with_the_progress(desk):
    _, http, _ = desk
    data = b"id,text\n" + b"".join(b"t%d,where is my parcel number %d\n" % (n, n) for n in range(250))
    started = upload(http, "big.csv", data)
    job = finished(http, started)
    assert (job["status"], job["done"], job["total"], job["progress"]) == ("done", 250, 250, 1.0)
    assert len(job["results"]) == 100 and (job["offset"], job["limit"], job["next_offset"]) == (0, 100, 100)
    assert [r["id"] for r in job["results"][:2]] == ["t0", "t1"]
    last = http.get(started["status_url"], params={"offset": 200, "limit": 100}).json()
    assert [r["id"] for r in last["results"]] == [f"t{n}" for n in range(200, 250)] and last["next_offset"] is None
    every = []
    offset = 0
    while offset is not None:
        page = http.get(started["status_url"], params={"offset": offset, "limit": 1000}).json()
        every += page["results"]
        offset = page["next_offset"]
    assert len(every) == 250
    error = http.get(started["status_url"], params={"limit": 5000}).json()["error"]
    assert error["type"] == "invalid_request" and "less than or equal to 1000, not '5000'" in error["message"]
    past = http.get(started["status_url"], params={"offset": 9223372036854775806})  # past what Redis can count
    assert past.status_code == 422 and past.json()["error"]["fields"] == ["query.offset"]


def slow_rows(monkeypatch, seconds: float) -> None:
    real = api.routes_classify.classify_one

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(api.routes_classify, "classify_one", slow)


def test_a_job_is_cancelled_between_rows_by_its_key_or_an_admin(desk, monkeypatch):
    app, http, admin = desk
    slow_rows(monkeypatch, 0.02)
    data = b"text\n" + b"where is my parcel\n" * 2000
    started = upload(http, "big.csv", data)
    _, other = app.state.desk.keys.create("another agent", "agent", requests_per_minute=0)
    refused = http.delete(started["status_url"], headers={"Authorization": f"Bearer {other}"})
    assert (refused.status_code, refused.json()["error"]["type"]) == (404, "job_not_found")
    while http.get(started["status_url"]).json()["done"] < 3:
        time.sleep(0.02)
    answer = http.delete(started["status_url"])
    assert answer.status_code == 200
    job = answer.json()
    assert (job["status"], job["finished"]) == ("cancelled", True) and 3 <= job["done"] < 2000
    time.sleep(0.2)
    later = http.get(started["status_url"], params={"limit": 1000}).json()
    assert later["status"] == "cancelled" and later["done"] == job["done"] == len(later["results"])
    assert http.delete(started["status_url"]).json()["status"] == "cancelled"  # asked again: the same answer

    by_admin = upload(http, "big.csv", data)
    assert http.delete(by_admin["status_url"], headers=admin).json()["status"] == "cancelled"


def test_a_finished_job_cannot_be_cancelled(desk):
    _, http, _ = desk
    started = upload(http, "one.csv", b"text\nI want a refund\n")
    finished(http, started)
    answer = http.delete(started["status_url"])
    error = answer.json()["error"]
    assert (answer.status_code, error["type"], error["job_status"]) == (409, "job_finished", "done")


# The runner's thread ends with an exception no code catches, as every thread of a stopped process does.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_job_whose_process_stopped_reads_interrupted_with_its_rows_done(desk, monkeypatch):
    """The runner dies after two rows, its heartbeat with it, as when the API process restarts."""
    _, http, _ = desk
    real, calls = api.routes_classify.classify_one, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise SystemExit  # the thread ends here, as the whole process would
        return real(*args, **kwargs)

    monkeypatch.setattr(api.routes_classify, "classify_one", dying)
    started = upload(http, "big.csv", b"text\n" + b"where is my parcel\n" * 10)
    job = finished(http, started)
    assert (job["status"], job["done"], job["total"], len(job["results"])) == ("interrupted", 2, 10, 2)
    assert "stopped (a restart?) after 2 of 10 messages" in job["error"]
    refused = http.delete(started["status_url"])
    assert (refused.status_code, refused.json()["error"]["job_status"]) == (409, "interrupted")


def test_a_slow_row_does_not_read_as_interrupted(desk, monkeypatch):
    _, http, _ = desk
    slow_rows(monkeypatch, 1.5)  # longer than the lease: the heartbeat beats beside the row
    started = upload(http, "one.csv", b"text\nI want a refund\n")
    time.sleep(1.2)
    assert http.get(started["status_url"]).json()["status"] == "running"
    assert finished(http, started)["status"] == "done"
