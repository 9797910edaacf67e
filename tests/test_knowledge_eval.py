"""Retrieval metrics, the query-set reader, and the evaluate-retrieval and bench-knowledge commands."""

from __future__ import annotations

import json
import math

import pytest

from cli.main import main
from common.errors import DatasetError
from knowledge.evaluation import load_queries, percentile, rank_documents, score_ranking
from common.types import Passage

DOCS = {
    "refunds.md": "# Refund policy\n\nRefunds reach your card within ten days of us receiving the return.\n",
    "passwords.md": "# Reset your password\n\nTap Forgot password on the sign-in screen and open the emailed link.\n",
    "thermostat.md": "# Thermostat wiring\n\nThe thermostat needs a C wire; without it the display goes blank.\n",
}
QUERIES = [
    {"query": "when do i get my money back", "relevant": ["refunds.md"]},
    {"query": "cant log in forgot pw", "relevant": ["passwords.md"]},
    {"query": "screen on the heating thing keeps going black", "relevant": ["thermostat.md"]},
    {"query": "refund to card and password reset", "relevant": ["refunds.md", "passwords.md"]},
]


def test_document_metrics_by_hand():
    ranked = ["b.md", "a.md", "c.md"]
    one = score_ranking(ranked, ["a.md"], k=2)
    assert one == pytest.approx({"recall_at_1": 0.0, "recall_at_k": 1.0, "mrr": 0.5,
                                 "ndcg_at_k": (1 / math.log2(3)) / 1.0})
    two = score_ranking(ranked, ["a.md", "z.md"], k=3)
    assert two["recall_at_k"] == 0.5 and two["mrr"] == 0.5
    assert two["ndcg_at_k"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert score_ranking([], ["a.md"], k=5)["mrr"] == 0.0


def test_documents_are_ranked_by_their_best_passage():
    passages = [Passage("t", s, "T", 0, 1.0) for s in ("a.md", "b.md", "a.md", "c.md")]
    assert rank_documents(passages) == ["a.md", "b.md", "c.md"]
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0 and percentile([1.0, 9.0], 95) == 9.0


@pytest.mark.parametrize(
    "line, reason",
    [
        ("not json", "line 1: not valid JSON"),
        ('{"query": "", "relevant": ["a.md"]}', 'non-empty "query"'),
        ('{"query": "x", "relevant": "a.md"}', '"relevant" must be a list'),
        ('{"query": "x", "relevant": ["missing.md"]}', "missing.md is not among the documents"),
    ],
)
def test_a_bad_query_line_is_refused_with_its_number(tmp_path, line, reason):
    path = tmp_path / "queries.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=reason):
        load_queries(path, known_sources=["a.md"])


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    return docs, queries


def test_evaluate_retrieval_prints_one_json_object_with_the_metrics(folder, capsys, embedder):
    docs, queries = folder
    assert main(["evaluate-retrieval", "--docs", str(docs), "--queries", str(queries), "--k", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"recall_at_1", "recall_at_k", "mrr", "ndcg_at_k", "p50_ms", "p95_ms"} <= set(report)
    assert report["queries"] == 4 and report["mode"] == "hybrid" and report["fusion"] == "convex"
    assert report["recall_at_k"] == 1.0  # three tiny articles, two documents counted: all found
    assert 0 < report["mrr"] <= 1 and 0 < report["p50_ms"] <= report["p95_ms"]


def test_evaluate_retrieval_compares_every_mode(folder, capsys, embedder):
    docs, queries = folder
    assert main(["evaluate-retrieval", "--docs", str(docs), "--queries", str(queries), "--mode", "all",
                 "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert set(reports) == {"vector", "keyword", "hybrid-rrf", "hybrid-convex", "hybrid-rrf+doc",
                            "hybrid-convex+doc"}
    assert reports["keyword"]["mode"] == "keyword" and reports["hybrid-rrf"]["fusion"] == "rrf"


def test_evaluate_retrieval_names_a_bad_query_file(folder, capsys, embedder):
    docs, queries = folder
    queries.write_text('{"query": "x", "relevant": ["nowhere.md"]}\n')
    assert main(["evaluate-retrieval", "--docs", str(docs), "--queries", str(queries)]) == 2
    assert "nowhere.md is not among the documents" in capsys.readouterr().err


def test_bench_knowledge_reports_throughput_and_latency(tmp_path, monkeypatch, capsys, embedder):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    assert main(["bench-knowledge", "--chunks", "40", "--queries", "5", "--chunk-words", "15", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["chunks"] == 40
    assert report["ingest_chunks_per_s"] > 0 and report["ingest_chunks_per_s_without_embedding"] > 0
    assert 0 < report["query_p50_ms"] <= report["query_p95_ms"]
    assert "40/40 chunks" in captured.err  # the progress bar


def test_the_vector_cache_embeds_each_text_once_per_model(tmp_path, embedder):
    from knowledge.embedcache import EmbeddingCache

    class Counting:
        dimension, model_path = embedder.dimension, "counting"
        calls: list[int] = []

        def embed(self, texts, batch_size=64):
            self.calls.append(len(texts))
            return embedder.embed(texts, batch_size=batch_size)

    counting = Counting()
    cache = EmbeddingCache(counting, tmp_path / "cache.sqlite")
    first = cache.embed(["refund policy", "reset password"])
    again = cache.embed(["reset password", "refund policy", "new text"])
    assert counting.calls == [2, 1]
    assert (again[0] == first[1]).all() and (again[1] == first[0]).all()
    cache.close()
    reopened = EmbeddingCache(counting, tmp_path / "cache.sqlite")
    reopened.embed(["new text"])
    assert counting.calls == [2, 1]
    other_model = type("Other", (Counting,), {"model_path": "other"})()
    EmbeddingCache(other_model, tmp_path / "cache.sqlite").embed(["new text"])
    assert counting.calls == [2, 1, 1]


def test_query_lines_end_at_newline_only(tmp_path):
    path = tmp_path / "queries.jsonl"
    lines = [{"query": "refund\u2028when\u2029how\x85now", "relevant": ["a.md"]}, {"query": "x", "relevant": ["a.md"]}]
    path.write_bytes(b"\r\n\n".join(json.dumps(q, ensure_ascii=False).encode() for q in lines) + b"\nnot json\n")
    with pytest.raises(DatasetError, match="queries.jsonl line 4: not valid JSON"):
        load_queries(path, known_sources=["a.md"])
    path.write_bytes(path.read_bytes().replace(b"not json\n", b""))
    assert [q.text for q in load_queries(path, known_sources=["a.md"])] == ["refund\u2028when\u2029how\x85now", "x"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_a_query_set_reads_in_any_unicode_encoding(tmp_path, encoding):
    path = tmp_path / "queries.jsonl"
    path.write_bytes('{"query": "remboursé ?", "relevant": ["a.md"]}\n'.encode(encoding))
    assert [q.text for q in load_queries(path, known_sources=["a.md"])] == ["remboursé ?"]
