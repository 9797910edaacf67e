"""The intent router: the shipped taxonomy, abstention, follow-ups, persistence, the LLM fallback and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from common.errors import BackendUnavailable, ConfigurationError
from chatbot.routing.classifier import LLMClassifier
from chatbot.routing.intent_head import fit_abstention
from chatbot.routing.routes import RouteChoice, default_routes_path, load_routes
from chatbot.routing.router import IntentRouter, router_for_routes
from tests.fakes import FakeBackend

# Customer messages written apart from the utterances in intents.yaml: what the router never saw.
HELD_OUT = [
    ("I think you've billed me twice for the same order", "billing"),
    ("How can I get an invoice with my company name on it?", "billing"),
    ("my card was declined when renewing nimbus plus", "billing"),
    ("I'd like to cancel the premium plan before it renews", "billing"),
    ("What does Nimbus Plus cost per year?", "billing"),
    ("The camera I bought doesn't work, I want my money back", "refunds"),
    ("has my refund been processed yet", "refunds"),
    ("Can I send back the doorbell if I don't like it?", "refunds"),
    ("The box was crushed and the hub is damaged", "refunds"),
    ("how long is the return window", "refunds"),
    ("I can't remember my login password", "account_access"),
    ("Reset password link isn't working", "account_access"),
    ("How do I let my son use the app on his phone?", "account_access"),
    ("I keep getting 'account locked' when I sign in", "account_access"),
    ("I want to change my email to a new one", "account_access"),
    ("The doorbell won't connect to the internet", "technical_problem"),
    ("Camera shows offline in the app since yesterday", "technical_problem"),
    ("firmware won't install on my thermostat", "technical_problem"),
    ("the app closes as soon as I open it", "technical_problem"),
    ("motion alerts don't come through anymore", "technical_problem"),
    ("When is my parcel going to arrive?", "shipping_orders"),
    ("the courier's tracking link shows nothing", "shipping_orders"),
    ("I need to cancel the order I placed this morning", "shipping_orders"),
    ("Do you deliver to Canada?", "shipping_orders"),
    ("The box I got has someone else's order in it", "shipping_orders"),
    ("Can I get all the information you store about me?", "privacy_data"),
    ("Who can see the videos from my indoor camera?", "privacy_data"),
    ("Please erase my personal information under GDPR", "privacy_data"),
    ("do you pass my data to advertisers", "privacy_data"),
    ("How long are clips kept in the cloud?", "privacy_data"),
    ("I'm really disappointed with how I've been treated", "complaint"),
    ("your service has been awful from start to finish", "complaint"),
    ("I want to lodge a formal complaint about your engineer", "complaint"),
    ("This company never answers, it's a disgrace", "complaint"),
    ("still broken after everything you told me, 4th time i write, pathetic", "complaint"),
    ("Let me speak with an actual person", "talk_to_human"),
    ("please get a human agent on the line", "talk_to_human"),
    ("can someone phone me", "talk_to_human"),
    ("I want your supervisor now", "talk_to_human"),
    ("hey", "greeting_thanks"),
    ("thanks a lot, bye", "greeting_thanks"),
    ("great, that sorted it, thank you!", "greeting_thanks"),
    ("morning!", "greeting_thanks"),
    ("Can you recommend a movie?", "other"),
    ("What's the best pizza place in town?", "other"),
    ("Do you have any job openings?", "other"),
    ("How tall is Mount Everest?", "other"),
    ("qwerty uiop", "other"),
]

TEMPLATES = {
    "billing": "billing", "refunds": "billing", "account_access": "account", "technical_problem": "technical",
    "shipping_orders": "general", "privacy_data": "account", "complaint": "general",
    "talk_to_human": "escalation", "greeting_thanks": "general", "other": "general",
}


@pytest.fixture(scope="module")
def routes():
    return load_routes(default_routes_path())


@pytest.fixture(scope="module")
def router_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("router-cache")


@pytest.fixture(scope="module")
def router(routes, embedder, router_cache):
    return router_for_routes(routes, embedder, router_cache)


def route(router, embedder, text, history=()):
    return router.route(text, embedder.embed_one(text), history)


def test_shipped_taxonomy_covers_the_support_intents(routes):
    assert {r.name: r.template for r in routes} == TEMPLATES
    assert [r.name for r in routes if r.escalate] == ["talk_to_human"]
    assert [r.name for r in routes if not r.topic] == ["greeting_thanks", "other"]
    assert all(len(r.utterances) >= 25 and r.description and r.category for r in routes)


@pytest.mark.parametrize(
    "yaml_text, problem",
    [
        ("intents: []", "non-empty"),
        ("- name: a\n  utterances: [x, y]\n- name: a\n  utterances: [x, y]", "duplicated"),
        ("- name: a\n  utterances: [x, y]\n  template: Not a name!", "invalid template name"),
        ("- name: a\n  utterances: [only one]", "two utterances"),
        ("- name: unknown\n  utterances: [x, y]", "reserved"),
        ("- name: a\n  utterances: [x, y\n", "cannot read"),
    ],
)
def test_bad_intent_files_are_rejected_with_the_reason(tmp_path, yaml_text, problem):
    path = tmp_path / "intents.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigurationError, match=problem):
        load_routes(path)


def test_routes_messages_it_never_saw(router, embedder):
    choices = [(text, label, route(router, embedder, text)) for text, label in HELD_OUT]
    wrong = [(text, label, c.intent) for text, label, c in choices if c.intent != label]
    assert len(wrong) <= len(HELD_OUT) * 0.1, wrong


def test_a_choice_carries_scores_template_and_escalation(router, embedder):
    choice = route(router, embedder, "The parcel with my refund return label never came")
    assert isinstance(choice, RouteChoice) and choice.source == "router"
    names = [name for name, _ in choice.scores]
    values = [score for _, score in choice.scores]
    assert len(choice.scores) == 5 and len(set(names)) == 5
    assert values == sorted(values, reverse=True) and 0 < sum(values) <= 1.0 + 1e-6
    assert choice.confidence == values[0]
    refund = route(router, embedder, "I want my money back for the broken camera")
    assert (refund.intent, refund.template, refund.escalate) == ("refunds", "billing", False)
    human = route(router, embedder, "Let me speak with an actual person")
    assert (human.intent, human.template, human.escalate) == ("talk_to_human", "escalation", True)
    assert json.loads(json.dumps(human.to_dict())) == human.to_dict()
    assert RouteChoice.from_dict(human.to_dict()).intent == "talk_to_human"


def test_scores_equal_sklearn_on_the_same_features(routes, embedder):
    # The router scores with plain arrays; they must give what sklearn's pipeline gives.
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from chatbot.routing.intent_head import ngrams

    texts = [u for r in routes for u in r.utterances]
    labels = [r.name for r in routes for _ in r.utterances]
    vectors = embedder.embed(texts)
    router = IntentRouter(routes, knn_weight=0, threshold_folds=1).fit(texts, labels, vectors)
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    features = lambda t, v, fit: sp.hstack(  # noqa: E731
        [sp.csr_matrix(v.astype(np.float64) * 2.0)] + [(x.fit_transform if fit else x.transform)(t) for x in (word, char)],
        format="csr")
    model = LogisticRegression(C=10.0, max_iter=3000).fit(features(texts, vectors, True), labels)
    probe = [t for t, _ in HELD_OUT] + ["", "!!!", "Ça  ne marche PAS", "e-mail me@nimbus.example 4412"]
    probe_vectors = embedder.embed(probe)
    expected = model.predict_proba(features(probe, probe_vectors, False))
    assert router.classes == list(model.classes_)
    assert np.abs(router.probabilities(probe, probe_vectors) - expected).max() < 1e-5
    for text in probe:
        assert sorted(ngrams(text, "char_wb", 2, 5)) == sorted(char.build_analyzer()(text))
        assert sorted(ngrams(text, "word", 1, 2)) == sorted(word.build_analyzer()(text))


def test_thresholds_are_fitted_from_held_out_predictions():
    rng = np.random.default_rng(0)
    classes = ["a", "b"]
    confident = rng.uniform(0.8, 1.0, 200)
    unsure = rng.uniform(0.5, 0.6, 100)
    probs = np.array([[p, 1 - p] for p in np.concatenate([confident, unsure])])
    # Confident predictions are right; of the unsure ones only one in five is.
    labels = np.array(["a"] * 200 + ["a" if i % 5 == 0 else "b" for i in range(100)])
    thresholds, margin = fit_abstention(probs, labels, classes, abstain_cost=0.5)
    answered = (probs.max(1) >= thresholds["a"]) & (np.abs(probs[:, 0] - probs[:, 1]) >= margin)
    assert answered[:200].all() and not answered[200:].any()
    # When every prediction is right, nothing is held back.
    thresholds, margin = fit_abstention(probs[:200], labels[:200], classes, abstain_cost=0.5)
    assert thresholds["a"] <= confident.min() and margin <= 0.6


def test_router_abstains_where_its_answers_would_be_wrong(routes, embedder):
    # Two intents taught with overlapping examples: a message between them is not decidable.
    from chatbot.routing.routes import Route

    taught = [
        Route("billing", utterances=[u for u in routes[0].utterances]),
        Route("refunds", utterances=[u for u in routes[1].utterances]),
        Route("technical_problem", utterances=[u for u in routes[3].utterances]),
    ]
    texts = [u for r in taught for u in r.utterances]
    labels = [r.name for r in taught for _ in r.utterances]
    # Label noise between billing and refunds on purpose: half the refund examples are filed as billing.
    noisy = [("billing" if (label == "refunds" and i % 2) else label) for i, label in enumerate(labels)]
    router = IntentRouter(taught, abstain_cost=0.4).fit(texts, noisy, embedder.embed(texts))
    undecided = route(router, embedder, "I want my money back")
    assert undecided.abstained and undecided.intent == "unknown" and undecided.template == "general"
    assert undecided.scores[0][0] in {"billing", "refunds"}
    clear = route(router, embedder, "The camera keeps disconnecting from the Wi-Fi")
    assert not clear.abstained and clear.intent == "technical_problem"


def test_short_follow_ups_inherit_the_previous_topic(router, embedder):
    history = ["I was charged twice for Nimbus Plus this month"]
    follow = route(router, embedder, "still not sorted", history)
    assert follow.source == "follow-up" and follow.intent == "billing"
    history = ["My doorbell camera keeps going offline"]
    follow = route(router, embedder, "it's still not working", history)
    assert follow.source == "follow-up" and follow.intent == "technical_problem"
    # A greeting before the follow-up is no topic: the question before it is.
    follow = route(router, embedder, "any update?", ["Where is my order 5521?", "hello?"])
    assert follow.source == "follow-up" and follow.intent == "shipping_orders"


def test_a_new_question_is_not_taken_for_a_follow_up(router, embedder):
    history = ["I was charged twice for Nimbus Plus this month"]
    assert route(router, embedder, "How do I reset my password?", history).intent == "account_access"
    thanks = route(router, embedder, "thanks, bye", history)
    assert thanks.intent == "greeting_thanks" and thanks.source == "router"
    alone = route(router, embedder, "still not sorted")
    assert alone.source == "router"


def test_a_follow_up_to_a_message_from_before_a_restart_embeds_it(router, embedder, tmp_path):
    router.save(tmp_path / "router.npz")
    # A fresh process has not seen the earlier message: the router embeds it again.
    fresh = IntentRouter.load(tmp_path / "router.npz", embedder=embedder)
    follow = route(fresh, embedder, "still nothing", ["Where is my parcel? It was due Monday"])
    assert follow.source == "follow-up" and follow.intent == "shipping_orders"


def test_router_is_cached_by_the_content_of_the_routes(routes, embedder, tmp_path):
    # Edited intents: the shipped router does not fit them, so one is fitted and cached.
    edited = [replace(routes[0], utterances=routes[0].utterances + ["Can I pay by bank transfer?"])] + routes[1:]
    router = router_for_routes(edited, embedder, tmp_path)
    [cached] = tmp_path.glob("router-*.npz")
    mtime = cached.stat().st_mtime_ns
    again = router_for_routes(edited, embedder, tmp_path)
    assert cached.stat().st_mtime_ns == mtime  # loaded, not refitted
    text = "Where do I find my receipts?"
    vector = embedder.embed_one(text)
    assert again.route(text, vector) == router.route(text, vector)
    edited_again = [replace(edited[1], utterances=edited[1].utterances + ["Is there a student discount?"])]
    router_for_routes(edited + edited_again, embedder, tmp_path)
    assert len(list(tmp_path.glob("router-*.npz"))) == 2


def test_save_and_load_round_trip(router, embedder, tmp_path):
    router.save(tmp_path / "router.npz")
    loaded = IntentRouter.load(tmp_path / "router.npz")
    text = "The heating ignores my schedule"
    vector = embedder.embed_one(text)
    assert loaded.route(text, vector) == router.route(text, vector)
    assert loaded.thresholds == router.thresholds and loaded.margin == router.margin


def unsure_choice() -> RouteChoice:
    return RouteChoice("unknown", 0.31, [("billing", 0.31), ("refunds", 0.29)], True, "general", False, "router")


def classification(intent="refunds", confidence=0.86, secondary=(("billing", 0.4),)):
    return json.dumps({
        "intent": intent,
        "confidence": confidence,
        "secondary": [{"intent": n, "confidence": c} for n, c in secondary],
        "reasoning": "The customer wants money back for a returned item.",
    })


def test_llm_classifier_answers_with_structured_json(routes):
    backend = FakeBackend([classification()])
    choice = LLMClassifier(backend).classify("I sent it back, where's my money?", routes, unsure_choice())
    assert (choice.intent, choice.source, choice.template, choice.abstained) == ("refunds", "llm", "billing", False)
    assert choice.confidence == pytest.approx(0.86)
    assert choice.scores == [("refunds", 0.86), ("billing", 0.4)]
    assert "money back" in choice.reasoning
    [request] = backend.requests
    assert request.temperature == 0 and request.json_mode
    assert request.messages == [{"role": "user", "content": "I sent it back, where's my money?"}]
    assert all(r.name in request.system for r in routes)


def test_llm_classifier_takes_the_prompt_library_system_prompt(routes):
    backend = FakeBackend([classification()])
    system = "Pick one of:\n{intents}\nReply in JSON."
    LLMClassifier(backend, system=system).classify("where's my money?", routes, unsure_choice())
    [request] = backend.requests
    assert request.system.startswith("Pick one of:\n- billing: ") and request.system.endswith("Reply in JSON.")


def test_llm_classifier_retries_malformed_json_once(routes):
    backend = FakeBackend(["Sure! The intent is refunds.", "```json\n" + classification("talk_to_human", 0.9, ()) + "\n```"])
    choice = LLMClassifier(backend).classify("get me a person", routes, unsure_choice())
    assert choice.intent == "talk_to_human" and choice.escalate and choice.template == "escalation"
    assert len(backend.requests) == 2


@pytest.mark.parametrize(
    "replies",
    [
        ["not json", "{\"intent\": "],
        [classification("lottery_win"), classification("made_up")],  # not an intent we have
        [json.dumps({"confidence": 0.9}), json.dumps(["refunds"])],
    ],
)
def test_after_two_malformed_replies_the_router_answer_stands(routes, replies):
    backend = FakeBackend(replies)
    fallback = unsure_choice()
    assert LLMClassifier(backend).classify("hmm", routes, fallback) is fallback
    assert len(backend.requests) == 2


def test_a_backend_failure_leaves_the_router_answer(routes):
    backend = FakeBackend([BackendUnavailable("the model server is down")])
    fallback = unsure_choice()
    assert LLMClassifier(backend).classify("hmm", routes, fallback) is fallback


def test_evaluate_routing_cli_reports_json(tmp_path, routes, capsys):
    from cli.main import main

    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    rows = "\n".join(f'"{u}",{r.name}' for r in routes for u in r.utterances)
    train.write_text("message,intent\n" + rows + "\n")
    test.write_text("message,intent\n" + "\n".join(f'"{t}",{label}' for t, label in HELD_OUT) + "\n")
    code = main(["evaluate-routing", "--train", str(train), "--test", str(test),
                 "--text-col", "message", "--label-col", "intent", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"accuracy", "macro_f1", "abstain_rate", "p50_ms", "p95_ms"} <= set(report)
    assert report["accuracy"] >= 0.85 and report["macro_f1"] >= 0.85
    assert 0 <= report["abstain_rate"] <= 0.1
    assert 0 < report["p50_ms"] <= report["p95_ms"]
    assert report["n_test"] == len(HELD_OUT)


def test_evaluate_routing_cli_names_a_missing_column(tmp_path, capsys):
    from cli.main import main

    data = tmp_path / "data.csv"
    data.write_text("text,label\nhello,greeting\nbye,greeting\n")
    assert main(["evaluate-routing", "--train", str(data), "--test", str(data)]) == 2
    assert "category" in capsys.readouterr().err
