"""The intent classifier head: the fitted model behind the router, its training, scoring and abstention.

The head reuses the turn's single query embedding. Its classifier is a multinomial
logistic regression over that embedding joined with TF-IDF word and character n-grams
of the same text, blended with a similarity-weighted vote of the nearest training
messages (measured on BANKING77 against the embedding alone, kNN alone and class
centroids: see docs/triage.md). Per-intent confidence thresholds and a top-two margin
are fitted on out-of-fold predictions, so "unknown" means the data say the head is
likely wrong there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from knowledge.embeddings import Embedder


class IntentHead:
    """A trained intent classifier on the query embedding plus TF-IDF n-grams, with fitted abstention."""

    PARAMS = ("C", "embedding_weight", "text_features", "word_ngrams", "char_ngrams", "knn_k", "knn_temperature",
              "knn_weight", "abstain_cost", "threshold_folds")

    def __init__(
        self,
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

    def fit(self, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray | None = None) -> "IntentHead":
        """Train on labelled texts; `vectors` are their embeddings (computed with the embedder if None)."""
        with one_blas_thread():
            return self._fit(texts, labels, vectors)

    def _fit(self, texts: Sequence[str], labels: Sequence[str], vectors: np.ndarray | None) -> "IntentHead":
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

    # -- scoring ------------------------------------------------------------------

    def probabilities(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Class probabilities for several texts, columns in `self.classes` order."""
        if self._head is None:
            raise ValueError("the router is not trained: call fit() or load()")
        with one_blas_thread():
            return self._predict(self._head, list(texts), vectors)


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
