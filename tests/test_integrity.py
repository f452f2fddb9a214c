"""No silently wrong number (issue 21): non-finite embeddings and bad ranks are refused; every cache, checkpoint and
cell table read back is checked against a content digest written with it; unfinished or oddly named cells never
block or hide a grid; a dry run checks every input the run depends on. Driven as a user meets each case."""

import gzip, json, os, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hybrid_replication.data import DataError, demo_set
from hybrid_replication.embeddings import HashedNgramEncoder
from hybrid_replication.experiment import load_cells, load_per_question, run_grid
from hybrid_replication.integrity import digest_path
from hybrid_replication.lareqa_eval import evaluate_embeddings, evaluate_lareqa
from hybrid_replication.metrics import average_precision_from_ranks
from hybrid_replication.train import TrainConfig, load_checkpoint, train
from hybrid_replication.trunk import HiddenStore

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("hybrid-replication")
TINY = dict(
    model="tiny", sources=[{"name": "demo"}], batch_size=8, lr=1e-3, warmup_steps=1, threads=2, save_model=False
)
GRID = """
name: integrity-grid
base: {model: tiny, batch_size: 8, lr: 1.0e-3, warmup_steps: 1, max_steps: 2, threads: 1,
       trainable_layers: 1, val_fraction: 0.2, eval_every: 0}
train: [{name: demo}]
eval: {dataset: demo}
axes: {seed: [0], sampler: [hybrid, cross]}
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_REPLICATION_CACHE", str(tmp_path / "cache"))


def run(*args, cwd=None, timeout=300):
    env = {**os.environ, "HYBRID_REPLICATION_CACHE": str(Path(cwd or ROOT) / "cache")} if cwd else None
    return subprocess.run(
        [str(EXE), *map(str, args)], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def one_line_error(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ---- class 1: non-finite embeddings, bad ranks


def test_duplicate_ranks_are_refused_not_scored_above_one():
    with pytest.raises(ValueError, match="rank 1 is given twice"):
        average_precision_from_ranks([np.array([1, 1])], 2)
    with pytest.raises(ValueError, match="not a whole number"):
        average_precision_from_ranks([np.array([0.5])], 1)
    with pytest.raises(ValueError, match="2 values for 1 queries"):
        average_precision_from_ranks([np.array([1])], [1, 1])


def test_nan_query_embeddings_are_refused_not_a_perfect_map():
    rs = demo_set()
    enc = HashedNgramEncoder(dim=256)
    q = enc.encode([x.text for x in rs.questions])
    c = enc.encode([x.sentence for x in rs.candidates])
    with pytest.raises(ValueError, match="query embeddings given to evaluate_embeddings: .* non-finite"):
        evaluate_embeddings(rs, np.full_like(q, np.nan), c)


def test_nan_written_into_an_embedding_cache_warns_and_the_numbers_stay(tmp_path):
    args = ["evaluate", "--model", "hashed-ngrams", "--dataset", "demo", "--n-boot", "10", "--cache-dir"]
    first = run(*args, tmp_path / "emb", "--out", tmp_path / "a.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    victim = sorted((tmp_path / "emb").rglob("passage-*.npy"))[0]
    e = np.load(victim)
    e[:] = np.nan
    with open(victim, "wb") as f:
        np.save(f, e)
    second = run(*args, tmp_path / "emb", "--out", tmp_path / "b.json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert victim.name in second.stderr and "sha256" in second.stderr, second.stderr
    a, b = (json.loads((tmp_path / n).read_text())["summary"] for n in ("a.json", "b.json"))
    assert a == b


# ---- class 2: caches checked by content (a property: no corruption changes a number without a warning)

_DEMO = demo_set()
_ENC = HashedNgramEncoder(dim=256)


def _summary(cache):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = evaluate_lareqa(_ENC, _DEMO, cache_dir=cache, show_progress=False).summary()
    return s, [str(w.message) for w in caught]


def _corrupt(files, which, how, seed):
    "Change one cache file (and only its content: its digest is left as it was, unless swapped with it)."
    rng = np.random.default_rng(seed)
    f = files[which % len(files)]
    e = np.load(f)
    if how == "permute":
        e = e[rng.permutation(len(e))] if len(e) > 1 else -e
    elif how == "noise":
        e = e + rng.normal(0, 1e-3, e.shape).astype(e.dtype)
    elif how == "nan":
        e[rng.integers(len(e))] = np.nan
    elif how == "swap":  # another file of the same shape, its digest too
        other = next((g for g in files if g != f and np.load(g).shape == e.shape), None)
        if other is None:
            e = e[::-1].copy() if len(e) > 1 else -e
        else:
            f.write_bytes(other.read_bytes())
            digest_path(f).write_text(digest_path(other).read_text())
            return f
    with open(f, "wb") as out:
        np.save(out, e)
    return f


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 100),
    how=st.sampled_from(["permute", "noise", "nan", "swap"]),
    seed=st.integers(0, 2**16),
)
def test_a_corrupted_embedding_cache_never_changes_a_number_silently(tmp_path_factory, which, how, seed):
    cache = tmp_path_factory.mktemp("emb")
    baseline, _ = _summary(cache)
    files = sorted(cache.rglob("*.npy"))
    before = {f: f.read_bytes() for f in files}
    changed = _corrupt(files, which, how, seed)
    after, msgs = _summary(cache)
    if changed.read_bytes() != before[changed]:
        assert any(changed.name in m for m in msgs), (how, msgs)
    assert after == baseline  # recomputed, never the corrupted numbers


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["reorder keys", "permute rows", "flip a byte"]), seed=st.integers(0, 2**16))
def test_a_corrupted_trunk_segment_never_gives_other_rows_silently(tmp_path_factory, how, seed):
    rng = np.random.default_rng(seed)
    folder = tmp_path_factory.mktemp("trunk")
    arrays = [rng.normal(size=(int(n), 4)).astype(np.float16) for n in rng.integers(1, 4, size=5)]
    keys = [f"k{i}" for i in range(5)]
    HiddenStore(folder).add(keys, arrays)
    index = next(folder.glob("seg-*.json"))
    data = index.with_suffix(".npy")
    raw = data.read_bytes()
    if how == "reorder keys":
        meta = json.loads(index.read_text())
        meta["keys"] = list(np.array(meta["keys"])[rng.permutation(5)])
        index.write_text(json.dumps(meta))
    elif how == "permute rows":
        a = np.load(data)
        with open(data, "wb") as f:
            np.save(f, a[rng.permutation(len(a))])
    else:
        pos = int(rng.integers(128, len(raw)))  # past the .npy header
        data.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = HiddenStore(folder)
    for k, a in zip(keys, arrays):
        if k in store:
            assert np.array_equal(store.get(k), a)
    if len(store) < 5:
        assert any(index.name in str(w.message) for w in caught)


# ---- class 3: checkpoints


def test_a_damaged_checkpoint_is_refused_on_resume_naming_the_file(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**TINY, max_steps=4, output_dir=str(out)), progress=False, stop_at_step=2)
    ckpt = out / "checkpoint.pt"
    assert load_checkpoint(ckpt)["step"] == 2
    raw = bytearray(ckpt.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 64] = os.urandom(64)
    ckpt.write_bytes(bytes(raw))
    (tmp_path / "c.yaml").write_text(json.dumps({**TINY, "max_steps": 4, "output_dir": str(out)}))
    r = run("train", "--config", tmp_path / "c.yaml", "--resume", "--no-progress", cwd=tmp_path)
    one_line_error(r, str(ckpt), "sha256", "start the run over")


def test_a_checkpoint_without_a_digest_is_refused_with_how_to_start_over(tmp_path):
    import torch

    torch.save({"step": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(DataError, match="without a content digest.*start the run over"):
        load_checkpoint(tmp_path / "checkpoint.pt")


# ---- class 4: experiment cells


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    before = os.environ.get("HYBRID_REPLICATION_CACHE")
    os.environ["HYBRID_REPLICATION_CACHE"] = str(tmp / "cache")
    try:
        (tmp / "grid.yaml").write_text(GRID)
        run_grid(tmp / "grid.yaml", progress=False, out_dir=tmp / "results", work_dir=tmp / "runs")
    finally:
        if before is None:
            os.environ.pop("HYBRID_REPLICATION_CACHE", None)
        else:
            os.environ["HYBRID_REPLICATION_CACHE"] = before
    return tmp


def test_a_replaced_or_truncated_cell_table_is_a_one_line_error(finished_grid):
    out = finished_grid / "results"
    a, b = out / "seed=0__sampler=hybrid", out / "seed=0__sampler=cross"
    kept = (a / "pool.csv.gz").read_bytes()
    try:
        (a / "pool.csv.gz").write_bytes((b / "pool.csv.gz").read_bytes())  # another valid table
        with pytest.raises(DataError, match="does not match the digest"):
            load_per_question(out, "seed=0__sampler=hybrid")
        (a / "pool.csv.gz").write_bytes(kept[: len(kept) // 2])
        with pytest.raises(DataError, match="does not match the digest"):
            load_per_question(out, "seed=0__sampler=hybrid")
        doc = json.loads((a / "result.json").read_text())
        (a / "result.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "tables"}))
        with pytest.raises(DataError, match="truncated or unreadable"):  # an old cell: no EOFError either
            load_per_question(out, "seed=0__sampler=hybrid")
        (a / "result.json").write_text(json.dumps(doc))
    finally:
        (a / "pool.csv.gz").write_bytes(kept)
    assert len(load_per_question(out, "seed=0__sampler=hybrid")) == 30 * 7


def test_committed_cells_without_table_digests_still_load():
    folder = ROOT / "results" / "experiments" / "xquad-to-mlqa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cells = load_cells(folder)
    assert len(cells) >= 3
    cell = cells.cell.iloc[0]
    assert "tables" not in json.loads((folder / cell / "result.json").read_text())
    assert len(load_per_question(folder, cell)) > 1000


def test_a_cell_without_result_json_is_set_aside_and_run_again(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID.replace("hybrid, cross", "hybrid"))
    out, work = tmp_path / "results", tmp_path / "runs"
    args = [tmp_path / "grid.yaml", "--out-dir", out, "--work-dir", work, "--no-progress"]
    assert run("experiment", *args, cwd=tmp_path).returncode == 0
    cell = out / "seed=0__sampler=hybrid"
    (cell / "result.json").unlink()
    r = run("experiment", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "moved aside" in r.stderr and "Traceback" not in r.stderr
    assert len(list(out.glob("seed=0__sampler=hybrid.incomplete-*"))) == 1
    assert list(load_cells(out).cell) == ["seed=0__sampler=hybrid"]


def test_an_axis_value_with_a_slash_is_a_flat_folder_that_load_cells_finds(tmp_path):
    data_dir = str(tmp_path / "some" / "data")
    (tmp_path / "grid.yaml").write_text(
        GRID.replace("axes: {seed: [0], sampler: [hybrid, cross]}", f"axes: {{data_dir: ['{data_dir}']}}")
    )
    run_grid(tmp_path / "grid.yaml", progress=False, out_dir=tmp_path / "results", work_dir=tmp_path / "runs")
    (folder,) = [p for p in (tmp_path / "results").iterdir()]
    assert "/" not in folder.name and (folder / "result.json").exists()
    cells = load_cells(tmp_path / "results")
    assert list(cells.cell) == [f"data_dir={data_dir}"]
    assert len(load_per_question(tmp_path / "results", f"data_dir={data_dir}")) == 30 * 7


@pytest.mark.parametrize(
    "change, needle",
    [
        (("eval: {dataset: demo}", "eval: {dataset: xquad-rr}"), "field 'eval'"),
        (("eval: {dataset: demo}", "eval: {dataset: demo, langs: [xx]}"), "'xx'"),
        (("train: [{name: demo}]", "train: [{name: nosuchsource}]"), "train[0]"),
        (("sampler: [hybrid, cross]", "sampler: [hybrid, hybrid]"), "given twice"),
    ],
)
def test_the_dry_run_checks_every_input_before_compute(tmp_path, change, needle):
    (tmp_path / "grid.yaml").write_text(GRID.replace(*change))
    r = run("experiment", tmp_path / "grid.yaml", "--dry-run", "--out-dir", tmp_path / "r", cwd=tmp_path)
    one_line_error(r, "grid.yaml", needle)


def test_an_out_dir_that_is_a_file_and_a_pattern_matching_nothing_exit_2(tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    (tmp_path / "file").write_text("")
    r = run("experiment", tmp_path / "grid.yaml", "--dry-run", "--out-dir", tmp_path / "file", cwd=tmp_path)
    one_line_error(r, "is a file")
    r = run(
        "experiment",
        tmp_path / "grid.yaml",
        "--dry-run",
        "--out-dir",
        tmp_path / "r",
        "--cells",
        "seed=9*",
        cwd=tmp_path,
    )
    one_line_error(r, "--cells", "matches no cell")
    assert not (tmp_path / "runs").exists()
