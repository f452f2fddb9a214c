"DDP: two CPU processes on gloo run the training loop; both end with identical weights, equal to one process training on the whole global batch (the loss sees the global batch through gathered negatives)."

import json, os, socket, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch

from hybrid_replication.train import TrainConfig, JsonlLog, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
# dropout off: each rank draws its own masks, which one process cannot reproduce
BASE = dict(
    model="tiny",
    sources=[{"name": "demo"}],
    batch_size=8,
    max_steps=3,
    lr=1e-3,
    warmup_steps=1,
    dropout=0.0,
    save_model=False,
    temperature=0.05,
)
RUNS = {"plain": {}, "cached": {"grad_cache_chunk": 2, "hard_negatives": 1, "symmetric": True}}

DRIVER = textwrap.dedent("""
    import json, sys, torch
    import torch.distributed as dist
    import hybrid_replication.train as T
    from hybrid_replication.distributed import init_distributed
    out, base, runs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    info = init_distributed("cpu")          # joined here, so train() leaves the group open between runs
    built = {}
    orig = T.build_encoder
    T.build_encoder = lambda cfg: built.setdefault(cfg.output_dir, orig(cfg))   # keep each rank's encoder to compare
    for name, extra in runs.items():
        cfg = T.TrainConfig(**base, **extra, threads=1, output_dir=f"{out}/{name}")
        T.train(cfg, progress=False)
        torch.save(T.trainable_state(built[cfg.output_dir]), f"{out}/{name}-rank{info.rank}.pt")
    dist.destroy_process_group()
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    script = out / "driver.py"
    script.write_text(DRIVER)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(script),
        str(out),
        json.dumps(BASE),
        json.dumps(RUNS),
    ]
    r = subprocess.run(
        cmd,
        env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_ddp_ranks_agree_and_match_one_process(ddp_run, tmp_path, name):
    r0 = torch.load(ddp_run / f"{name}-rank0.pt")
    r1 = torch.load(ddp_run / f"{name}-rank1.pt")
    assert sorted(r0) == sorted(r1) and len(r0) > 10
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks differ in {k}"
    # rank 0 wrote the checkpoint and the log; rank 1 wrote neither file of its own
    assert torch.equal(load_checkpoint(ddp_run / name / "checkpoint.pt")["model"][k], r0[k])
    one = train(TrainConfig(**BASE, **RUNS[name], threads=2, output_dir=str(tmp_path / name)), progress=False)
    ref = load_checkpoint(tmp_path / name / "checkpoint.pt")["model"]
    for k in ref:
        assert torch.allclose(r0[k], ref[k], atol=2e-5, rtol=1e-4), k
    init = {
        k: v
        for k, v in __import__("hybrid_replication.train", fromlist=["x"])
        .build_encoder(TrainConfig(**BASE))
        .named_parameters()
    }
    assert any(not torch.allclose(init[k].detach(), r0[k], atol=1e-4) for k in r0)  # training moved the weights
    # the logged loss is the global batch's: the same as one process over all 8 items
    ddp_log = [r for r in JsonlLog.read(ddp_run / name / "log.jsonl") if "loss" in r]
    one_log = [r for r in JsonlLog.read(tmp_path / name / "log.jsonl") if "loss" in r]
    assert [r["step"] for r in ddp_log] == [1, 2, 3]
    for a, b in zip(ddp_log, one_log):
        assert a["lr"] == b["lr"] and abs(a["loss"] - b["loss"]) < 1e-4, (a, b)
    assert json.loads((ddp_run / name / "summary.json").read_text())["world_size"] == 2
