"""Cross-validate the intent router on a labelled CSV (BANKING77's training split, say).

    python -m bench.routing_cv --data /work/shared/data/banking77/train.csv [--folds 5] [--shots 10] [--model DIR]

Embeds every message once (cached next to the data in .data/), then for each stratified
fold trains the router on the other folds and scores the held-out one exactly as the
evaluate-routing command does: accuracy (an abstention counts as wrong), macro-F1,
abstain rate and training time (embedding excluded: it is cached). With --shots N the
training folds are cut to N examples per intent first; --label-names adds each label
written as words as one more example. Options after --set override router parameters
(e.g. --set knn_weight=0).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np


def cached_vectors(texts: list[str], cache: Path, model: str = "") -> np.ndarray:
    """Embeddings of `texts` by `model` (default: the bundled one), computed once per list and model."""
    from knowledge.embeddings import Embedder

    key = hashlib.sha256(("\n".join(texts) + (f"\n#model={model}" if model else "")).encode()).hexdigest()[:16]
    path = cache / f"vectors-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = Embedder(model or None).embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _scores(choices: list, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """Accuracy, macro F1, abstentions and top-1 accuracy of one fold's routing choices."""
    from sklearn.metrics import f1_score

    predicted = np.array([c.intent for c in choices])
    top = np.array([c.scores[0][0] for c in choices])
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, labels=names, average="macro", zero_division=0)),
        "abstain_rate": float(np.mean(predicted == "unknown")),
        "answered_accuracy": float(np.mean((predicted == truth)[predicted != "unknown"])),
        "top1_accuracy": float(np.mean(top == truth)),  # as if the router never abstained
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--text-col", default="text")
    parser.add_argument("--label-col", default="category")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only", type=int, default=0, help="score only this many folds (0: all)")
    parser.add_argument("--shots", type=int, default=0, help="examples per intent to train on (0: all)")
    parser.add_argument("--set", nargs="*", default=[], help="router parameters, name=value")
    parser.add_argument("--model", default=os.environ.get("CHATBOT_EMBEDDING_MODEL", ""),
                        help="a sentence-transformers folder to embed with (default: the bundled MiniLM)")
    parser.add_argument("--label-names", action="store_true", help="also train on the labels written as words")
    parser.add_argument("--export-fold", type=Path, default=None, metavar="DIR",
                        help="write fold 1 as DIR/train.csv and DIR/test.csv (for evaluate-routing) and stop")
    return parser


def _export_fold(folder: Path, texts: list[str], labels: list[str], split: tuple, text_col: str, label_col: str) -> None:
    """Write one fold as train.csv and test.csv, for `python -m chatbot evaluate-routing`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", split[0]), ("test", split[1])):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([text_col, label_col])
            writer.writerows((texts[i], labels[i]) for i in rows)
    print(f"wrote {folder}/train.csv ({len(split[0])}) and test.csv ({len(split[1])})")


def main(argv: list[str] | None = None) -> int:
    from sklearn.model_selection import StratifiedKFold

    from bench.routing_eval import label_examples, read_labelled
    from chatbot.routing.router import IntentRouter

    args = _parser().parse_args(argv)

    params = {k: (int(v) if v.isdigit() else float(v) if v.replace(".", "", 1).lstrip("-").isdigit() else v)
              for k, v in (item.split("=", 1) for item in args.set)}
    texts, labels = read_labelled(args.data, args.text_col, args.label_col)
    y = np.array(labels)
    splits = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(texts, y))
    if args.export_fold:
        _export_fold(args.export_fold, texts, labels, splits[0], args.text_col, args.label_col)
        return 0
    vectors = cached_vectors(texts, Path(".data") / "bench", args.model)
    names = sorted(set(labels))
    name_vectors = cached_vectors(label_examples(names), Path(".data") / "bench", args.model) if args.label_names else None
    rng = np.random.default_rng(0)
    results = []
    for number, (train, held) in enumerate(splits[: args.only or None], 1):
        if args.shots:
            train = np.concatenate([rng.permutation(train[y[train] == c])[: args.shots] for c in sorted(set(labels))])
        train_texts, train_labels, train_vectors = [texts[i] for i in train], list(y[train]), vectors[train]
        if name_vectors is not None:
            train_texts += label_examples(names)
            train_labels += names
            train_vectors = np.vstack([train_vectors, name_vectors])
        start = time.perf_counter()
        router = IntentRouter(**params).fit(train_texts, train_labels, train_vectors)
        train_s = time.perf_counter() - start
        choices = [router.route(texts[i], vectors[i]) for i in held]
        row = {"fold": number, "n_train": len(train_texts), **_scores(choices, y[held], names),
               "train_seconds": round(train_s, 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {k: float(np.mean([r[k] for r in results])) for k in results[0] if k != "fold"}
    summary["accuracy_std"] = float(np.std([r["accuracy"] for r in results]))
    print(json.dumps({"mean": summary, "params": params, "shots": args.shots, "label_names": args.label_names}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
