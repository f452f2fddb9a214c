"""The experiment runner end to end with the tiny encoder on the demo set: a grid killed mid-cell resumes to the
same results as an uninterrupted one, a cell's files appear together or not at all, bad grid files are one-line
errors with exit code 2."""

import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

import hybrid_replication.experiment as E
from hybrid_replication.experiment import Grid, load_cells, run_grid

EXE = Path(sys.executable).with_name("hybrid-replication")
ROOT = Path(__file__).resolve().parents[1]
GRID = """
name: test-grid
base: {model: tiny, batch_size: 8, lr: 1.0e-3, warmup_steps: 1, max_steps: %d, threads: 1,
       trainable_layers: 1, val_fraction: 0.2, eval_every: 5, ckpt_every: 5}
train: [{name: demo}]
eval: {dataset: demo}
axes: {seed: [0], sampler: [hybrid, cross]}
reference: true
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_REPLICATION_CACHE", str(tmp_path / "cache"))


def _grid(tmp_path, steps=6):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID % steps)
    return path


def _cli(args, **kw):
    return subprocess.Popen(
        [str(EXE), "experiment", *map(str, args), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_a_killed_grid_resumes_to_the_uninterrupted_results(tmp_path):
    grid = _grid(tmp_path, steps=400)
    straight = tmp_path / "straight"
    run_grid(grid, progress=False, out_dir=straight / "results", work_dir=straight / "runs")
    out, work = tmp_path / "killed" / "results", tmp_path / "killed" / "runs"
    proc = _cli([grid, "--out-dir", out, "--work-dir", work])
    log = work / "seed=0__sampler=hybrid" / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 12):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "the same command resumes" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["untuned"]  # the interrupted cell left no folder
    proc = _cli([grid, "--out-dir", out, "--work-dir", work])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    a, b = load_cells(straight / "results"), load_cells(out)
    assert list(a.cell) == list(b.cell) == ["seed=0__sampler=cross", "seed=0__sampler=hybrid", "untuned"]
    cols = ["mono_map", "cross_map", "multi_map", "rank_distance", "steps", "best_step", "best_val_loss"]
    assert a[cols].equals(b[cols])
    for cell in a.cell:
        assert (straight / "results" / cell / "pool.csv.gz").read_bytes() == (
            out / cell / "pool.csv.gz"
        ).read_bytes()


def test_a_failed_write_leaves_no_cell(tmp_path, monkeypatch):
    grid = Grid.load(_grid(tmp_path))
    grid.out_dir, grid.work_dir = str(tmp_path / "results"), str(tmp_path / "runs")

    def broken(path, obj, indent=1):
        raise OSError("disk full")

    monkeypatch.setattr(E, "atomic_write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        E.run_cell(grid, None, progress=False)
    assert not (tmp_path / "results").exists() or list((tmp_path / "results").iterdir()) == []


def test_cells_subset_and_dry_run(tmp_path, capsys):
    grid = _grid(tmp_path)
    out = tmp_path / "results"
    plan = run_grid(grid, ["untuned", "*cross"], progress=False, out_dir=out, work_dir=tmp_path / "runs")
    assert list(plan.cell) == ["untuned", "seed=0__sampler=cross"] and set(plan.status) == {"done"}
    plan = run_grid(grid, dry_run=True, out_dir=out, work_dir=tmp_path / "runs")
    assert dict(zip(plan.cell, plan.status)) == {
        "untuned": "done",
        "seed=0__sampler=hybrid": "to do",
        "seed=0__sampler=cross": "done",
    }
    assert "to do" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, problem",
    [
        ("name: x\n", "base"),
        ("[1, 2]\n", "mapping"),
        (
            "name: x\nbase: {}\ntrain: [{name: demo}]\neval: {dataset: demo}\naxes: {colour: [red]}\n",
            "axes.colour",
        ),
        ("name: x\nbase: {}\ntrain: [{name: demo}]\neval: {dataset: demo}\naxes: {seed: []}\n", "non-empty"),
        (
            "name: x\nbase: {lr: -1}\ntrain: [{name: demo}]\neval: {dataset: demo}\naxes: {seed: [0]}\nbogus: 1\n",
            "bogus",
        ),
        (
            "name: x\nbase: {}\ntrain: [{name: demo}]\neval: {dataset: demo}\naxes: {batch_size: [1]}\n",
            "batch_size",
        ),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_grid_files_are_one_line_errors(tmp_path, text, problem):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    proc = _cli([path, "--dry-run"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and problem in err, err


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "grids").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_grid_file_is_valid(path):
    "Every grid file loads and every cell's config validates (the GPU and hub grids too, though not run here)."
    from hybrid_replication.experiment import Grid

    grid = Grid.load(path)
    assert grid.cells() and all(grid.config(values) for values in grid.cells())
