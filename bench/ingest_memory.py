"""`bench-ingest-memory`: peak resident memory of an ingestion, each run in a fresh server-like process.

Usage: python -m chatbot bench-ingest-memory [--runs 3] [--scenario upload-2mb] [--full-install] [--json]

Each run starts a new Python process that stands in for the app's server on the chat-only install
(requirements.txt): the training packages are made unimportable (tests/lean_profile.py), Streamlit
is imported, and the shared services are built as the app builds them (`build_services`, embedded
Chroma and Redis in a fresh data directory). It then runs one ingestion through the same
`IngestionJob` the Knowledge base page starts, and reports from /proc/self/status: the resident
memory before the job, the peak over the whole process (VmHWM, what a host's memory limit sees),
and the resident memory once the job has ended. Scenarios:

- `demo`: the 46 demo articles (knowledge/docs, 362 chunks) uploaded into an empty base and
  embedded from scratch (not from the vectors shipped with them);
- `upload-2mb`: one 2 MiB Markdown handbook (`handbook`, about 2,800 chunks) uploaded into the
  seeded demo base;
- `reindex`: the seeded demo base re-chunked at 600/100 characters and re-embedded (force).

The limit is Streamlit Community Cloud's: 690 MB resident for the whole app.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DOCS = ROOT / "knowledge" / "docs"
SCENARIOS = ("demo", "upload-2mb", "reindex")
LIMIT_MB = 690  # Streamlit Community Cloud's resident memory for one app
UPLOAD_BYTES = 2 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench-ingest-memory",
                                  help="peak resident memory of an ingestion, in fresh server-like processes")
    _arguments(bench)
    bench.set_defaults(func=run)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per scenario (default 3)")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append",
                        help="run only this scenario (repeatable; default all)")
    parser.add_argument("--full-install", action="store_true",
                        help="leave the training packages importable (default: the chat-only install)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def handbook(size_bytes: int = UPLOAD_BYTES, seed: int = 0) -> str:
    """A Markdown support handbook of `size_bytes` bytes (UTF-8), rebuilt from the demo articles.

    Chapters and sections with headings, paragraphs of the articles' own sentences reshuffled,
    bullet lists and tables, as a real help-centre export reads: the chunk and token lengths of
    real documents, not one repeated line. Same `seed`, same text.
    """
    rng = random.Random(seed)
    sentences, bullets, tables = [], [], []
    for path in sorted(DEMO_DOCS.glob("*.md")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("|"):
                tables.append(line)
            elif line.startswith(("- ", "* ", "1. ")):
                bullets.append(line)
            elif line and not line.startswith(("#", "---", "category:")):
                sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", line) if len(s) > 20)
    parts: list[str] = []
    size, chapter = 0, 0
    while size < size_bytes:
        chapter += 1
        block = [f"# Chapter {chapter}: {_heading(rng.choice(sentences))}\n"]
        for section in range(1, rng.randint(3, 7)):
            block.append(f"## {chapter}.{section} {_heading(rng.choice(sentences))}\n")
            for _ in range(rng.randint(1, 4)):
                block.append(" ".join(rng.sample(sentences, rng.randint(2, 8))) + "\n")
            if rng.random() < 0.4:
                block.append("\n".join(rng.sample(bullets, rng.randint(3, 8))) + "\n")
            if rng.random() < 0.15:
                block.append("| Code | Meaning | What to do |\n| --- | --- | --- |\n"
                             + "\n".join(rng.sample(tables, 4)) + "\n")
        text = "\n".join(block) + "\n"
        parts.append(text)
        size += len(text.encode("utf-8"))
    return "".join(parts).encode("utf-8")[:size_bytes].decode("utf-8", errors="ignore")


def _heading(sentence: str, words: int = 7) -> str:
    return " ".join(sentence.replace("*", "").split()[:words]).rstrip(".,:;")


def _status_mb(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MB (2**20 bytes)."""
    text = Path("/proc/self/status").read_text()
    return int(text.split(f"{field}:")[1].split()[0]) / 1024


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def child(scenario: str, data_dir: str, lean: bool = True) -> dict:
    """One ingestion in this (fresh) process; returns its memory and speed. Runs in the subprocess."""
    os.environ.update({"CHATBOT_DATA_DIR": data_dir, "CHATBOT_BACKEND": "offline", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
    if lean:
        from tests.lean_profile import block_training_packages

        block_training_packages()
    import streamlit  # noqa: F401 - the server has it loaded; its memory is part of the baseline
    from tests.lean_profile import BLOCKED

    from chatbot.services import build_services
    from knowledge.chunking import ChunkSettings
    from knowledge.jobs import IngestionJob

    services = build_services(seed=scenario != "demo")
    kb = services.knowledge
    services.knowledge.search("How do I get a refund?")  # a served app has answered a query
    if scenario == "demo":
        job = IngestionJob(kb, uploads=[(p.name, p.read_bytes()) for p in sorted(DEMO_DOCS.glob("*.md"))])
    elif scenario == "upload-2mb":
        # Over the share of the base an upload may take unasked (CHATBOT_MAX_FILE_SHARE), the page holds it
        # until the admin clicks "Ingest anyway": this is that confirmed ingestion.
        job = IngestionJob(kb, uploads=[("handbook.md", handbook().encode("utf-8"))], allow=["handbook.md"])
    else:
        job = IngestionJob(kb, reindex=ChunkSettings(600, 100), force=True)
    before, cpu = _status_mb("VmRSS"), _cpu_seconds()
    job.start()
    job.wait()
    cpu = _cpu_seconds() - cpu
    seconds = max(job.finished_at - job.started_at, 1e-9)  # the whole job: reading, chunking, embedding, writing
    states = sorted({f.state for f in job.files})
    return {"scenario": scenario, "lean": lean, "states": states, "error": job.error,
            "chunks": job.chunks_written, "before_mb": round(before), "peak_mb": round(_status_mb("VmHWM")),
            "after_mb": round(_status_mb("VmRSS")), "chunks_per_s": round(job.chunks_written / seconds, 1),
            "chunks_per_cpu_s": round(job.chunks_written / cpu, 1) if cpu else None,
            "embedder": services.embedder.backend,
            "training_imported": sorted({m.partition(".")[0] for m in sys.modules} & {*BLOCKED, "onnx"})}


def measure(scenario: str, lean: bool = True, timeout: float = 1800) -> dict:
    """`child` in a fresh Python process on a fresh data directory; its report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "ANTHROPIC_"))}
    with tempfile.TemporaryDirectory() as data:
        command = [sys.executable, "-m", "bench.ingest_memory", "--child", scenario, data]
        result = subprocess.run(command + ([] if lean else ["--full-install"]), cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"the ingestion process failed ({result.returncode}): {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def summarise(runs: list[dict]) -> dict:
    """Median, p95 and maximum of each figure over the runs of one scenario."""
    out: dict = {"runs": len(runs), "chunks": runs[0]["chunks"], "lean": runs[0]["lean"]}
    for key in ("before_mb", "peak_mb", "after_mb", "chunks_per_s", "chunks_per_cpu_s"):
        values = [r[key] for r in runs if r[key] is not None]
        if values:
            out[key] = {"median": round(statistics.median(values), 1), "p95": _p95(values), "max": max(values)}
    out["under_limit"] = all(r["peak_mb"] < LIMIT_MB for r in runs)
    return out


def run(args: argparse.Namespace) -> int:
    results = {}
    started = time.time()
    for scenario in args.scenario or SCENARIOS:
        runs = [measure(scenario, lean=not args.full_install) for _ in range(args.runs)]
        results[scenario] = summarise(runs)
    results["load_average"] = round(os.getloadavg()[0], 1)
    results["seconds"] = round(time.time() - started)
    if args.json:
        print(json.dumps(results))
    else:
        for name, r in results.items():
            if isinstance(r, dict):
                print(f"{name}: {r['chunks']} chunks; resident before {r['before_mb']['median']} MB, "
                      f"peak median {r['peak_mb']['median']} / p95 {r['peak_mb']['p95']} / max "
                      f"{r['peak_mb']['max']} MB, after {r['after_mb']['median']} MB; "
                      f"{r['chunks_per_s']['median']} chunks/s (limit {LIMIT_MB} MB: "
                      f"{'met' if r['under_limit'] else 'MISSED'})")
    return 0 if all(r["under_limit"] for r in results.values() if isinstance(r, dict)) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(parser)
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, lean=not args.full_install)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
