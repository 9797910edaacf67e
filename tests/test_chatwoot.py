"""Chatwoot round trip over real HTTP: Chatwoot's signed agent-bot webhook into the desk's endpoint (uvicorn),
the reply computed by the RQ worker and posted back through Chatwoot's API, escalation handed to a person."""

from __future__ import annotations

import os
import time

import pytest
from rq.registry import ScheduledJobRegistry

from chatbot.helpdesk import runtime
from chatbot.helpdesk.chatwoot import session_for
from chatbot.store.jobs import job_queue
from devtools.servers.chatwoot import ChatwootServer
from tests.rq_helpers import make_due, run_jobs
from tests.uvicorn_server import serving

SECRET, TOKEN = "cw-webhook-secret", "cw-bot-token"


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    """The Chatwoot server, the desk's endpoint on uvicorn, and the worker's services, on one data directory."""
    data = tmp_path_factory.mktemp("chatwoot-desk")
    with ChatwootServer(webhook_secret=SECRET, api_token=TOKEN) as chatwoot:
        env = {"CHATBOT_DATA_DIR": str(data), "CHATBOT_BACKEND": "offline", "CHATWOOT_URL": chatwoot.base_url,
               "CHATWOOT_API_TOKEN": TOKEN, "CHATWOOT_WEBHOOK_SECRET": SECRET}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        runtime.settings.cache_clear()
        runtime.services.cache_clear()
        try:
            services = runtime.services()  # what the worker builds on its first job
            from api.app import create_app
            from api.webhooks_in import PATH

            with serving(create_app(services)) as url:  # the API app `python -m chatbot serve` serves
                chatwoot.webhook_url = url + PATH
                yield chatwoot, services
        finally:
            runtime.settings.cache_clear()
            runtime.services.cache_clear()
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_a_customer_message_is_acknowledged_then_answered_through_chatwoots_api(desk):
    chatwoot, services = desk
    delivery = chatwoot.customer_says(7, "How do I get a refund?")
    assert (delivery.status, delivery.body) == (200, {"status": "queued"})
    assert chatwoot.bot_messages(7) == [] and len(job_queue(services.store.client)) == 1  # answered later
    run_jobs(services.store.client)
    [reply] = chatwoot.bot_messages(7)
    assert "refund" in reply.lower()
    posted = [r for r in chatwoot.requests if r.path.endswith("/conversations/7/messages")]
    assert posted[0].headers["api_access_token"] == TOKEN and posted[0].body["message_type"] == "outgoing"
    stored = services.store.messages(session_for(1, 7))
    assert [m.role for m in stored] == ["user", "assistant"] and stored[1].content == reply
    assert chatwoot.conversation(7).status == "pending"  # still the bot's


def test_a_repeated_delivery_is_answered_once(desk):
    chatwoot, services = desk
    event = chatwoot.event(8, "How do I reset my password?")
    first = chatwoot.deliver(event, delivery_id="d-8")
    again = chatwoot.deliver(event, delivery_id="d-8")
    assert first.body == {"status": "queued"} and again.body == {"status": "duplicate"}
    run_jobs(services.store.client)
    assert len(chatwoot.bot_messages(8)) == 1


@pytest.mark.parametrize("change", ["secret", "stale", "unsigned"])
def test_a_webhook_not_signed_by_chatwoot_is_refused(desk, change):
    chatwoot, services = desk
    event = chatwoot.event(11, "Refund me")
    if change == "unsigned":
        response = chatwoot._http.post(chatwoot.webhook_url, json=event, headers={"X-Chatwoot-Delivery": "u"})
        status = response.status_code
    else:
        kwargs = {"secret": "not-it"} if change == "secret" else {"timestamp": int(time.time()) - 3600}
        status = chatwoot.deliver(event, **kwargs).status
    assert status == 401
    assert len(job_queue(services.store.client)) == 0


def test_escalation_hands_the_conversation_to_a_person_in_chatwoot(desk):
    chatwoot, services = desk
    chatwoot.customer_says(9, "This is useless, I want to speak to a real person now")
    run_jobs(services.store.client)
    [notice] = chatwoot.bot_messages(9)
    assert "member of our support team" in notice
    assert chatwoot.conversation(9).status == "open"  # toggle_status: with the human agents now
    assert session_for(1, 9) in [c.conversation for c in services.handoff.open_cases()]
    later = chatwoot.customer_says(9, "hello?")
    assert later.body == {"status": "ignored"}  # a person has it: the bot stays out

    # The human agent resolves it in Chatwoot: the desk's case closes and the assistant answers again.
    assert chatwoot.agent_sets_status(9, "resolved").body == {"status": "queued"}
    run_jobs(services.store.client)
    assert services.handoff.case(session_for(1, 9)).status == "closed"
    chatwoot.conversation(9).status = "pending"  # a new message reopens it for the bot, as Chatwoot does
    chatwoot.customer_says(9, "How do I get a refund?")
    run_jobs(services.store.client)
    assert "refund" in chatwoot.bot_messages(9)[-1].lower()


def test_a_failed_post_is_retried_without_recomputing_the_reply(desk):
    chatwoot, services = desk
    chatwoot.failures = [502]
    chatwoot.customer_says(12, "How do I get a refund?")
    run_jobs(services.store.client)
    assert chatwoot.bot_messages(12) == []
    assert len(ScheduledJobRegistry(queue=job_queue(services.store.client))) == 1
    [delay] = make_due(services.store.client)
    assert 3 < delay <= 5
    run_jobs(services.store.client)
    assert len(chatwoot.bot_messages(12)) == 1
    assert len(services.store.messages(session_for(1, 12))) == 2  # one turn, not two
