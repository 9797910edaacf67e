"""Intent routing: routes as data and an embedding router that can abstain.

The router reuses the turn's single query embedding. Its classifier is a multinomial
logistic regression over that embedding joined with TF-IDF word and character n-grams
of the same text, blended with a similarity-weighted vote of the nearest training
messages (measured on BANKING77 against the embedding alone, kNN alone and class
centroids: see docs/triage.md). Per-intent confidence thresholds and a top-two margin
are fitted on out-of-fold predictions, so "unknown" means the data say the router is
likely wrong there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import yaml

from common.errors import ConfigurationError

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
DEFAULT_TEMPLATE = "general"
TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_-]*")
# Bumped when the fitted model's layout changes, so cached routers are refitted.
ROUTER_VERSION = "4"
TOP_K = 5
# Short messages that lean on the previous turn ("still not working", "what about the other one").
FOLLOW_UP_WORDS = 7
FOLLOW_UP_CUE = re.compile(
    r"\b(still|again|same (?:problem|issue|thing|error)|also|as well|what about|how about|any (?:news|update)"
    r"|(?:did|does|do|is|was|has|have)(?:n[’']?t| not) (?:work|help|fix|change|arrive|come)\w*"
    r"|not (?:working|fixed|sorted|resolved))\b",
    re.IGNORECASE,
)


@dataclass
class Route:
    """One intent: what it means, how customers say it, and the prompt template it selects."""

    name: str
    description: str = ""
    category: str = ""
    utterances: list[str] = field(default_factory=list)
    template: str = DEFAULT_TEMPLATE
    escalate: bool = False
    # Whether its messages set the topic a short follow-up refers back to ("hi" does not).
    topic: bool = True


@dataclass
class RouteChoice:
    """The router's answer: the intent ("unknown" when it abstains) with the top scores behind it."""

    intent: str
    confidence: float
    scores: list[tuple[str, float]]
    abstained: bool
    template: str = DEFAULT_TEMPLATE
    escalate: bool = False
    source: str = "router"  # "router", "llm" or "follow-up"
    reasoning: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict for the turn's stored metadata."""
        data = asdict(self)
        data["confidence"] = round(float(self.confidence), 4)
        data["scores"] = [[name, round(float(score), 4)] for name, score in self.scores]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RouteChoice":
        """The inverse of `to_dict`."""
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["scores"] = [(str(name), float(score)) for name, score in values.get("scores", [])]
        return cls(**values)


def load_routes(path: str | Path) -> list[Route]:
    """Read and validate a YAML file of intents (a list, or a mapping with an `intents` list)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read intents file {path}: {exc}") from exc
    items = data.get("intents") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigurationError(f"{path}: expected a non-empty list of intents")
    routes, seen = [], set()
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigurationError(f"{path}: intent #{number} has no name")
        name = str(item["name"])
        if name in seen or name == UNKNOWN:
            raise ConfigurationError(f"{path}: intent name {name!r} is duplicated or reserved")
        seen.add(name)
        utterances = [str(u).strip() for u in item.get("utterances") or [] if str(u).strip()]
        if len(utterances) < 2:
            raise ConfigurationError(f"{path}: intent {name!r} needs at least two utterances")
        template = str(item.get("template") or DEFAULT_TEMPLATE)
        if not TEMPLATE_NAME.fullmatch(template):
            raise ConfigurationError(f"{path}: intent {name!r} has an invalid template name {template!r}")
        routes.append(
            Route(
                name=name,
                description=str(item.get("description") or ""),
                category=str(item.get("category") or name),
                utterances=utterances,
                template=template,
                escalate=bool(item.get("escalate", False)),
                topic=bool(item.get("topic", True)),
            )
        )
    return routes


def default_routes_path() -> Path:
    """The shipped customer-support taxonomy."""
    return Path(__file__).with_name("intents.yaml")


class IntentRouter:
    """A trained intent classifier on the query embedding plus TF-IDF n-grams, with fitted abstention."""

    PARAMS = ("C", "embedding_weight", "text_features", "word_ngrams", "char_ngrams", "knn_k", "knn_temperature",
              "knn_weight", "abstain_cost", "threshold_folds")

    def __init__(
        self,
        routes: Sequence[Route] = (),
        *,
        embedder: "Embedder | None" = None,
        C: float = 10.0,
        embedding_weight: float = 2.0,
        text_features: bool = True,
        word_ngrams: int = 2,
        char_ngrams: int = 5,
        knn_k: int = 10,
        knn_temperature: float = 0.05,
        knn_weight: float = 0.3,
        abstain_cost: float = 0.8,
        threshold_folds: int = 3,
    ):
        self.routes = {r.name: r for r in routes}
        self.embedder = embedder
        self.C = C
        # Weight of the embedding block against the unit-norm TF-IDF blocks.
        self.embedding_weight = embedding_weight
        self.text_features = text_features
        self.word_ngrams, self.char_ngrams = word_ngrams, char_ngrams  # longest n-grams of each kind
        # The logistic regression is blended with a similarity-weighted vote of the nearest
        # training messages, which catches near-duplicates the linear model smooths over.
        self.knn_k, self.knn_temperature, self.knn_weight = knn_k, knn_temperature, knn_weight
        # Cost of answering "unknown" relative to a wrong intent (1.0): abstain where the
        # out-of-fold precision of a prediction falls below 1 - abstain_cost.
        self.abstain_cost = abstain_cost
        self.threshold_folds = threshold_folds
        self.classes: list[str] = []
        self.thresholds: dict[str, float] = {}
        self.margin = 0.0
        self._head: dict | None = None
        # Vectors of recent messages, so a follow-up can be joined to the previous turn
        # without embedding it again.
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()

    # -- training -----------------------------------------------------------------

    def _train(self, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray) -> dict:
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        kinds = [("word", self.word_ngrams), ("char_wb", self.char_ngrams)] if self.text_features else []
        vectorizers = [
            TfidfVectorizer(analyzer=kind, ngram_range=(1 if kind == "word" else 2, top), sublinear_tf=True,
                            min_df=1 if kind == "word" else 2)
            for kind, top in kinds
        ]
        vectors = np.asarray(vectors, dtype=np.float32)
        blocks = [sp.csr_matrix(vectors.astype(np.float64) * self.embedding_weight)]
        blocks += [v.fit_transform(texts) for v in vectorizers]
        model = LogisticRegression(C=self.C, max_iter=3000).fit(sp.hstack(blocks, format="csr"), list(labels))
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1:  # two classes: sklearn keeps one row; softmax([-z/2, z/2]) = sigmoid(z)
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        # Plain arrays, not sklearn objects: scoring one message costs microseconds (sklearn's
        # input checks alone cost milliseconds), and the saved file needs no pickle.
        offset, text_blocks = vectors.shape[1], []
        for vectorizer in vectorizers:
            terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
            text_blocks.append({
                "analyzer": vectorizer.analyzer, "ngrams": list(vectorizer.ngram_range),
                "vocabulary": {term: i for i, term in enumerate(terms)},
                "idf": vectorizer.idf_.astype(np.float64),
                "weights": np.ascontiguousarray(coef[:, offset:offset + len(terms)].T, dtype=np.float32),
            })
            offset += len(terms)
        classes = [str(c) for c in model.classes_]
        index = {c: i for i, c in enumerate(classes)}
        return {
            "classes": classes,
            "intercept": intercept.astype(np.float64),
            "embedding_weights": np.ascontiguousarray(coef[:, :vectors.shape[1]].T * self.embedding_weight,
                                                      dtype=np.float32),
            "text_blocks": text_blocks,
            "vectors": vectors,
            "labels": np.array([index[str(label)] for label in labels]),
        }

    def _predict(self, head: dict, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        logits = (vectors @ head["embedding_weights"]).astype(np.float64) + head["intercept"]
        for block in head["text_blocks"]:
            # TF-IDF exactly as sklearn computes it (sublinear tf, idf, L2 norm).
            vocabulary, low, high = block["vocabulary"], *block["ngrams"]
            for row, text in enumerate(texts):
                counts: dict[int, int] = {}
                for gram in ngrams(text, block["analyzer"], low, high):
                    column = vocabulary.get(gram)
                    if column is not None:
                        counts[column] = counts.get(column, 0) + 1
                if counts:
                    columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
                    values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * block["idf"][columns]
                    logits[row] += (values / np.linalg.norm(values)) @ block["weights"][columns]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        if self.knn_weight <= 0:
            return probs
        sims = vectors @ head["vectors"].T
        k = min(self.knn_k, sims.shape[1])
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, nearest, axis=1).astype(np.float64)
        weights = np.exp((top - top.max(axis=1, keepdims=True)) / self.knn_temperature)
        votes = np.zeros_like(probs)
        np.add.at(votes, (np.repeat(np.arange(len(vectors)), k), head["labels"][nearest].ravel()), weights.ravel())
        votes /= votes.sum(axis=1, keepdims=True)
        return (1 - self.knn_weight) * probs + self.knn_weight * votes

    def fit(self, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray | None = None) -> "IntentRouter":
        """Train on labelled texts; `vectors` are their embeddings (computed with the embedder if None)."""
        with one_blas_thread():
            return self._fit(texts, labels, vectors)

    def _fit(self, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray | None) -> "IntentRouter":
        texts, labels = list(texts), [str(label) for label in labels]
        if len(texts) != len(labels) or not texts:
            raise ValueError("fit needs as many labels as texts, and at least one of each")
        if len(set(labels)) < 2:
            raise ValueError("fit needs at least two intents")
        if vectors is None:
            if self.embedder is None:
                raise ValueError("fit needs vectors or an embedder")
            vectors = self.embedder.embed(texts)
        vectors = np.asarray(vectors, dtype=np.float32)
        self._fit_abstention(texts, labels, vectors)
        self._head = self._train(texts, labels, vectors)
        self.classes = self._head["classes"]
        with self._recent_lock:
            self._recent.clear()
        return self

    def _fit_abstention(self, texts: list[str], labels: list[str], vectors: np.ndarray) -> None:
        """Per-intent thresholds and the top-two margin, from out-of-fold probabilities."""
        from sklearn.model_selection import StratifiedKFold

        classes = sorted(set(labels))
        folds = min(self.threshold_folds, min(labels.count(c) for c in classes))
        self.thresholds, self.margin = {c: 0.0 for c in classes}, 0.0
        if folds < 2:
            return  # too few examples per intent to hold any out
        y = np.array(labels)
        probs = np.zeros((len(texts), len(classes)))
        for train, held in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, y):
            head = self._train([texts[i] for i in train], y[train], vectors[train])
            columns = [classes.index(c) for c in head["classes"]]
            probs[np.ix_(held, columns)] = self._predict(head, [texts[i] for i in held], vectors[held])
        self.thresholds, self.margin = fit_abstention(probs, y, classes, self.abstain_cost)

    # -- routing ------------------------------------------------------------------

    def probabilities(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Class probabilities for several texts, columns in `self.classes` order."""
        if self._head is None:
            raise ValueError("the router is not trained: call fit() or load()")
        with one_blas_thread():
            return self._predict(self._head, list(texts), vectors)

    def route(self, text: str, vector: np.ndarray, history: Sequence[str] = ()) -> RouteChoice:
        """Route one message; `history` holds the customer's earlier messages, oldest first."""
        history = list(history)
        if history and history[-1] == text:
            history.pop()  # a caller that passes the whole conversation, this message included
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self._remember(text, vector)
        choice = self._choose(self.probabilities([text], vector)[0], source="router")
        if history and is_follow_up(text, choice):
            previous = self._topic_message(history)
            if previous is not None:
                joined, joined_vector = join_turns(previous[0], previous[1], text, vector)
                return self._choose(self.probabilities([joined], joined_vector)[0], source="follow-up")
        return choice

    def _choose(self, probs: np.ndarray, source: str) -> RouteChoice:
        order = np.argsort(-probs)
        scores = [(self.classes[i], float(probs[i])) for i in order[:TOP_K]]
        best, confidence = scores[0]
        runner_up = scores[1][1] if len(scores) > 1 else 0.0
        abstained = confidence < self.thresholds.get(best, 0.0) or confidence - runner_up < self.margin
        intent = UNKNOWN if abstained else best
        route = self.routes.get(intent)
        return RouteChoice(
            intent=intent,
            confidence=confidence,
            scores=scores,
            abstained=abstained,
            template=route.template if route else DEFAULT_TEMPLATE,
            escalate=bool(route and route.escalate),
            source=source,
        )

    def _remember(self, text: str, vector: np.ndarray) -> None:
        with self._recent_lock:
            self._recent[text] = vector
            self._recent.move_to_end(text)
            while len(self._recent) > 2048:
                self._recent.popitem(last=False)

    def _topic_message(self, history: Sequence[str]) -> tuple[str, np.ndarray] | None:
        """The latest earlier message that states a topic (not a follow-up, not a greeting), with its vector."""
        for previous in [h for h in history if h.strip()][::-1][:3]:
            if is_short(previous) and FOLLOW_UP_CUE.search(previous):
                continue
            with self._recent_lock:
                vector = self._recent.get(previous)
            if vector is None:
                if self.embedder is None:
                    return None
                vector = self.embedder.embed_one(previous)
                self._remember(previous, vector)
            route = self.routes.get(self.classes[int(np.argmax(self.probabilities([previous], vector)[0]))])
            if route is None or route.topic:
                return previous, vector
        return None

    # -- persistence --------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the fitted router to one .npz file (arrays and JSON; no pickle), atomically."""
        if self._head is None:
            raise ValueError("nothing to save: the router is not trained")
        head = self._head
        meta = {
            "version": ROUTER_VERSION, "routes": [asdict(r) for r in self.routes.values()],
            "params": {k: getattr(self, k) for k in self.PARAMS}, "thresholds": self.thresholds,
            "margin": self.margin, "classes": head["classes"],
            "blocks": [{"analyzer": b["analyzer"], "ngrams": b["ngrams"]} for b in head["text_blocks"]],
        }
        arrays = {"meta": np.array(json.dumps(meta)), "intercept": head["intercept"],
                  "embedding_weights": head["embedding_weights"], "vectors": head["vectors"], "labels": head["labels"]}
        for i, block in enumerate(head["text_blocks"]):
            terms = sorted(block["vocabulary"], key=block["vocabulary"].get)
            arrays[f"terms{i}"] = np.array(terms, dtype=str)
            arrays[f"idf{i}"], arrays[f"weights{i}"] = block["idf"], block["weights"]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a cache, not a secret
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | Path, embedder: "Embedder | None" = None) -> "IntentRouter":
        """Read a router written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != ROUTER_VERSION:
                raise ValueError(f"{path} is not a router saved by this version")
            blocks = [
                {**spec, "vocabulary": {t: i for i, t in enumerate(data[f"terms{i}"].tolist())},
                 "idf": data[f"idf{i}"], "weights": data[f"weights{i}"]}
                for i, spec in enumerate(meta["blocks"])
            ]
            head = {"classes": meta["classes"], "text_blocks": blocks,
                    **{k: data[k] for k in ("intercept", "embedding_weights", "vectors", "labels")}}
        router = cls([Route(**r) for r in meta["routes"]], embedder=embedder, **meta["params"])
        router.thresholds, router.margin, router._head = meta["thresholds"], meta["margin"], head
        router.classes = head["classes"]
        return router


_BLAS = None


def one_blas_thread():
    """A context limiting BLAS to one thread: on two busy cores, two BLAS threads made
    fitting about seven times slower (measured: 12.8 s against 1.8 s for the shipped intents)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s\s+")


def ngrams(text: str, analyzer: str, low: int, high: int) -> list[str]:
    """The n-grams sklearn's TfidfVectorizer makes of `text` ("word" or "char_wb", lower-cased)."""
    text = text.lower()
    grams: list[str] = []
    if analyzer == "word":
        tokens = _TOKEN.findall(text)
        for n in range(low, min(high, len(tokens)) + 1):
            grams += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        return grams
    for word in _SPACES.sub(" ", text).split():
        word = f" {word} "
        for n in range(low, high + 1):
            if len(word) <= n:  # a word shorter than n yields itself once, then no longer grams
                grams.append(word)
                break
            grams += [word[i:i + n] for i in range(len(word) - n + 1)]
    return grams


def is_short(text: str) -> bool:
    """Few enough words to lean on the previous turn."""
    return len(text.split()) <= FOLLOW_UP_WORDS


def is_follow_up(text: str, choice: RouteChoice) -> bool:
    """A short message that refers back ("still not working") or that the router cannot place alone."""
    return is_short(text) and (choice.abstained or bool(FOLLOW_UP_CUE.search(text)))


def join_turns(previous: str, previous_vector: np.ndarray, text: str, vector: np.ndarray) -> tuple[str, np.ndarray]:
    """The two messages as one text, and its embedding approximated without running the encoder.

    A mean-pooled embedding of joined texts is close to the length-weighted mean of their
    embeddings, so the follow-up costs no second encoder pass.
    """
    a, b = len(previous.split()) or 1, len(text.split()) or 1
    mixed = a * np.asarray(previous_vector, dtype=np.float64) + b * np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(mixed)
    return f"{previous} {text}", (mixed / norm if norm else mixed).astype(np.float32)


def fit_abstention(
    probs: np.ndarray, labels: np.ndarray, classes: list[str], abstain_cost: float, prior_weight: float = 20.0
) -> tuple[dict[str, float], float]:
    """Thresholds per intent and a global top-two margin minimising (wrong answers + cost x abstentions).

    Each intent's threshold is shrunk toward the global one by `prior_weight` pseudo-examples,
    so intents with few held-out predictions do not get a threshold fitted to noise.
    """
    top = probs.argmax(1)
    confidence = probs.max(1)
    runner_up = np.sort(probs, 1)[:, -2] if probs.shape[1] > 1 else np.zeros(len(probs))
    correct = np.array([classes[t] for t in top]) == labels

    def best_threshold(conf: np.ndarray, ok: np.ndarray) -> float:
        # Abstaining below t costs abstain_cost each; answering above it costs 1 per error.
        candidates = np.concatenate([[0.0], np.unique(conf)])
        costs = [abstain_cost * np.sum(conf < t) + np.sum(~ok[conf >= t]) for t in candidates]
        return float(candidates[int(np.argmin(costs))])

    global_t = best_threshold(confidence, correct)
    thresholds = {}
    for index, name in enumerate(classes):
        mine = top == index
        n = int(mine.sum())
        own = best_threshold(confidence[mine], correct[mine]) if n else global_t
        thresholds[name] = float((n * own + prior_weight * global_t) / (n + prior_weight))
    answered = confidence >= np.array([thresholds[classes[t]] for t in top])
    best_margin, best_cost = 0.0, np.inf
    for margin in np.arange(0.0, 0.31, 0.01):
        keep = answered & (confidence - runner_up >= margin)
        cost = abstain_cost * np.sum(~keep) + np.sum(~correct[keep])
        if cost < best_cost - 1e-9:
            best_margin, best_cost = float(margin), cost
    return thresholds, best_margin


def routes_digest(routes: Sequence[Route], model_path: str = "") -> str:
    """A key for a fitted router: the routes' content, the embedding model and the code version."""
    payload = json.dumps([asdict(r) for r in routes], sort_keys=True, ensure_ascii=False)
    extra = f"{ROUTER_VERSION}|{model_path}"
    return hashlib.sha256(f"{payload}|{extra}".encode()).hexdigest()[:16]


def router_for_routes(routes: Sequence[Route], embedder: "Embedder", cache_dir: str | Path) -> IntentRouter:
    """A router trained on the routes' utterances, cached in `cache_dir` by the routes' content."""
    path = Path(cache_dir) / f"router-{routes_digest(routes, getattr(embedder, 'model_path', ''))}.npz"
    if path.exists():
        try:
            return IntentRouter.load(path, embedder=embedder)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("refitting the router: cached %s is unreadable (%s)", path, exc)
    texts = [u for r in routes for u in r.utterances]
    labels = [r.name for r in routes for _ in r.utterances]
    router = IntentRouter(routes, embedder=embedder).fit(texts, labels, embedder.embed(texts))
    router.save(path)
    return router
