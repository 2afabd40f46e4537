"""``seekport kb …`` on the data directory with no server: create, ingest a folder (a broken
file reported, the rest ingested, a second run skipping unchanged files), status, search with
its reasons, and ``kb eval`` printing one JSON line over a small labelled set kept in the
repository (tests/data/kb_eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import run_cli, write_config

pytestmark = pytest.mark.slow

EVAL_SET = Path(__file__).parent.parent / "data" / "kb_eval"


@pytest.fixture
def config(tmp_path: Path, models_dir: Path) -> Path:
    return write_config(tmp_path, models_dir=str(models_dir))


def test_ingest_a_folder_then_search_it(config: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "leave.md").write_text("# 假期\n\n每位员工每年有 15 天带薪年假。\n", encoding="utf-8")
    (docs / "sub" / "gpu.txt").write_text("ERR-4021 means the GPU ran out of memory.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    (docs / "image.png").write_bytes(b"\x89PNG")  # not a document kind: not picked up
    assert run_cli(config, "kb", "create", "handbook").stdout.strip().startswith("kb_")
    first = run_cli(config, "kb", "ingest", "handbook", str(docs), check=False)
    assert first.returncode == 1, first.stderr
    assert "2 ingested, 0 unchanged, 1 failed" in first.stdout
    assert "broken.pdf" in first.stderr
    again = run_cli(config, "kb", "ingest", "handbook", str(docs / "sub"))
    assert "0 ingested, 1 unchanged, 0 failed" in again.stdout
    status = json.loads(run_cli(config, "kb", "status", "handbook", "--json").stdout)
    assert {d["filename"]: d["status"] for d in status} == {
        "leave.md": "done",
        "gpu.txt": "done",
        "broken.pdf": "failed",
    }
    hits = json.loads(run_cli(config, "kb", "search", "handbook", "年假有几天", "--json").stdout)
    assert hits[0]["filename"] == "leave.md" and hits[0]["lexical_rank"] is not None
    listed = json.loads(run_cli(config, "kb", "list", "--json").stdout)
    assert [(k["name"], k["documents"]) for k in listed] == [("handbook", 3)]
    assert "deleted" in run_cli(config, "kb", "delete", "handbook").stdout
    missing = run_cli(config, "kb", "search", "handbook", "x", check=False)
    assert missing.returncode == 1 and "no knowledge base 'handbook'" in missing.stderr


def test_eval_prints_one_json_line_per_leg(config: Path) -> None:
    out = run_cli(config, "kb", "eval", "--dataset", str(EVAL_SET), "--json")
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    scores = json.loads(lines[0])
    assert set(scores) == {"bm25", "dense", "hybrid"}
    for leg in scores.values():
        assert set(leg) == {"ndcg@10", "recall@10", "recall@100"}
        assert all(0.0 <= v <= 1.0 for v in leg.values())
    assert scores["hybrid"]["recall@10"] == 1.0  # ten passages: every answer is in the top 10
    assert scores["hybrid"]["ndcg@10"] >= 0.9
    assert scores["dense"]["ndcg@10"] >= 0.8
    bad = run_cli(config, "kb", "eval", "--dataset", str(EVAL_SET), "--split", "dev", check=False)
    assert bad.returncode == 1 and "dev/queries.jsonl" in bad.stderr
