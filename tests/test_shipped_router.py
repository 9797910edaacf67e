"""The router shipped for the shipped intents: current, routing as a freshly fitted one, and refused
when the intents or the embedding model differ."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from chatbot.routing.routes import default_routes_path, load_routes
from chatbot.routing.router import IntentRouter
from chatbot.routing.shipped_router import SHIPPED_ROUTER, load_shipped_router
from tests.test_routing import HELD_OUT
from tests.test_shipped_vectors import OtherModel

REGENERATE = "chatbot/routing/intents.yaml changed: run `python -m chatbot shipped-router` and commit chatbot/routing/shipped-router.npz"


@pytest.fixture(scope="module")
def routes():
    return load_routes(default_routes_path())


def test_the_shipped_router_fits_the_shipped_intents(routes, embedder):
    assert load_shipped_router(routes, embedder) is not None, REGENERATE


def test_it_routes_as_a_router_fitted_today(routes, embedder):
    shipped = load_shipped_router(routes, embedder)
    texts = [u for r in routes for u in r.utterances]
    labels = [r.name for r in routes for _ in r.utterances]
    fresh = IntentRouter(routes, embedder=embedder).fit(texts, labels, embedder.embed(texts))
    for text, _ in HELD_OUT:
        vector = embedder.embed_one(text)
        assert shipped.route(text, vector).intent == fresh.route(text, vector).intent, (text, REGENERATE)


def test_edited_intents_or_another_model_get_a_router_of_their_own(routes, embedder, tmp_path):
    edited = [replace(routes[0], utterances=routes[0].utterances + ["Can I pay by bank transfer?"])] + routes[1:]
    assert load_shipped_router(edited, embedder) is None
    assert load_shipped_router(routes, OtherModel(embedder)) is None
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(SHIPPED_ROUTER.read_bytes()[:1000])
    assert load_shipped_router(routes, embedder, damaged) is None
    assert load_shipped_router(routes, embedder, tmp_path / "absent.npz") is None


def test_a_first_start_routes_without_training(tmp_path):
    # A fresh process on an empty data directory, as every wake-up on Community Cloud.
    code = (
        "import sys\n"
        "from chatbot.routing.routes import default_routes_path, load_routes\n"
        "from chatbot.routing.router import router_for_routes\n"
        "from knowledge.embeddings import shared_embedder\n"
        "embedder = shared_embedder()\n"
        f"router = router_for_routes(load_routes(default_routes_path()), embedder, {str(tmp_path)!r})\n"
        "text = 'has my refund been processed yet'\n"
        "print(router.route(text, embedder.embed_one(text)).intent)\n"
        "print('sklearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["refunds", "False"]  # routed, and scikit-learn never imported
    assert list(tmp_path.iterdir()) == []  # nothing fitted, nothing cached


def test_the_file_holds_no_pickled_objects():
    with np.load(SHIPPED_ROUTER, allow_pickle=False) as data:
        assert {"meta", "routes_digest", "probe"} <= set(data.files)
