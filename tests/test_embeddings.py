"""The embedder: ONNX vectors equal to sentence-transformers', cached export, a fast start, thread safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from knowledge.embeddings import Embedder, default_model_path, onnx_cache_path, onnx_compatible, shared_embedder

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "My doorbell camera keeps going offline",
    "How do I get a refund for a damaged thermostat?",
    "hi",
    "Nimbus Plus renewed without warning and I was charged twice, which is not what I expected at all " * 3,
]


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory):
    return Embedder(cache_dir=tmp_path_factory.mktemp("models"))


def test_onnx_vectors_match_sentence_transformers(onnx_embedder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(default_model_path(), device="cpu", local_files_only=True)
    expected = reference.encode(SENTENCES, normalize_embeddings=True)
    got = onnx_embedder.embed(SENTENCES)
    assert onnx_embedder.backend == "onnx"
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    cosine = np.sum(got * expected, axis=1)
    assert np.all(cosine > 0.999), cosine
    single = onnx_embedder.embed_one(SENTENCES[0])
    assert float(single @ expected[0]) > 0.999


def test_batches_keep_input_order_and_unit_length(onnx_embedder):
    texts = [f"question number {i} about {'my order ' * (i % 7)}" for i in range(40)]
    batch = onnx_embedder.embed(texts, batch_size=16)
    one_by_one = np.stack([onnx_embedder.embed_one(t) for t in texts])
    assert np.allclose(batch, one_by_one, atol=1e-4)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert onnx_embedder.embed([]).shape == (0, 384)


def test_export_is_cached_and_reused(onnx_embedder):
    path = onnx_embedder.onnx_path
    assert path is not None and path.exists() and path.parent == onnx_embedder.cache_dir
    assert path == onnx_cache_path(onnx_embedder.model_path, onnx_embedder.cache_dir)
    mtime = path.stat().st_mtime_ns
    again = Embedder(cache_dir=onnx_embedder.cache_dir)
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    assert np.allclose(again.embed_one("hello"), onnx_embedder.embed_one("hello"))


def test_cached_start_imports_neither_torch_nor_sentence_transformers(onnx_embedder):
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


def test_shared_embedder_is_one_per_model_path():
    assert shared_embedder() is shared_embedder()


def test_a_damaged_cached_export_is_rebuilt(onnx_embedder, tmp_path):
    import shutil

    cache = tmp_path / "models"
    cache.mkdir()
    target = onnx_cache_path(onnx_embedder.model_path, cache)
    shutil.copy(onnx_embedder.onnx_path, target)
    target.write_bytes(target.read_bytes()[: 1000])  # truncated, as after a full disk
    rebuilt = Embedder(cache_dir=cache)
    assert rebuilt.backend == "onnx" and target.stat().st_size > 1_000_000
    assert float(rebuilt.embed_one("hello") @ onnx_embedder.embed_one("hello")) > 0.9999
