"""Scoring the intent router on labelled messages: reading a labelled CSV, accuracy, macro-F1, latency."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from common.errors import ConfigurationError


def read_labelled(path: Path, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    """Texts and labels from a CSV file, rows with an empty text or label skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {text_col, label_col} - set(reader.fieldnames or [])
            if missing:
                raise ConfigurationError(f"{path}: no column {', '.join(sorted(missing))} (has {reader.fieldnames})")
            rows = [(r[text_col].strip(), r[label_col].strip()) for r in reader]
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    rows = [(t, label) for t, label in rows if t and label]
    if not rows:
        raise ConfigurationError(f"{path}: no labelled rows")
    return [t for t, _ in rows], [label for _, label in rows]


def label_examples(labels: list[str]) -> list[str]:
    """Each distinct label written as words: a free example of what the intent is about."""
    return [" ".join(label.replace("_", " ").replace("-", " ").split()) for label in sorted(set(labels))]


def evaluate(router, embedder, texts: list[str], labels: list[str]) -> dict:
    """Route each message as the app does (embed one, then route) and score the answers."""
    from sklearn.metrics import f1_score

    predictions, latencies = [], []
    for text in texts:
        start = time.perf_counter()
        choice = router.route(text, embedder.embed_one(text))
        latencies.append((time.perf_counter() - start) * 1000)
        predictions.append(choice.intent)
    truth = np.array(labels)
    predicted = np.array(predictions)
    answered = predicted != "unknown"
    return {
        # An abstention counts as a wrong answer.
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, labels=sorted(set(labels)), average="macro", zero_division=0)),
        "abstain_rate": float(np.mean(~answered)),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "answered_accuracy": float(np.mean(predicted[answered] == truth[answered])) if answered.any() else 0.0,
        "n_test": len(texts),
    }
