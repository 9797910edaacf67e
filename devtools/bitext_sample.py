"""Rebuild the shipped Bitext subset, and write held-out rows that are not in it, from the full sample CSV.

    python -m devtools.bitext_sample ../shared/data/bitext/train.csv --held-out /tmp/bitext-held-out.csv

The subset keeps 30 rows per intent (27 intents), picked at random among replies short enough for a
CPU fine-tune (instruction and reply under 1,000 characters together); the held-out file takes rows
of every intent that the subset does not hold.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "training" / "sample_data" / "bitext-support.csv"
COLUMNS = ("instruction", "response", "intent", "category")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Bitext train.csv")
    parser.add_argument("--per-intent", type=int, default=30)
    parser.add_argument("--max-chars", type=int, default=1000)
    parser.add_argument("--held-out", help="also write this many held-out rows per intent to this CSV")
    parser.add_argument("--held-out-per-intent", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with open(args.source, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_intent: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_intent[row["intent"]].append(row)
    rng = random.Random(args.seed)
    shipped, held_out = [], []
    for intent in sorted(by_intent):
        group = by_intent[intent]
        rng.shuffle(group)
        short = [r for r in group if len(r["instruction"]) + len(r["response"]) <= args.max_chars]
        picked = short[: args.per_intent]
        shipped.extend(picked)
        ids = {id(r) for r in picked}
        held_out.extend([r for r in group if id(r) not in ids][-args.held_out_per_intent:])
    rng.shuffle(shipped)
    write(OUT, shipped)
    print(f"{len(shipped)} rows written to {OUT}")
    if args.held_out:
        rng.shuffle(held_out)
        write(Path(args.held_out), held_out)
        print(f"{len(held_out)} held-out rows written to {args.held_out}")


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
