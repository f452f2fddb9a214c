"""The robustness regimes (issue 20): each regime's grid changes one factor of R1 (the headline R7 two), a
re-initialised top really is new weights on the real multilingual-e5-small, and a fixed budget's last step is
checked to be the cell's weights.

The real-model test needs the offline e5-small (about 15 s on 2 cores)."""

from pathlib import Path

import pytest
import torch

from hybrid_replication.experiment import Grid, _same_weights

GRIDS = Path(__file__).resolve().parents[1] / "configs" / "grids"

# regime -> (grid file, the base fields it changes against R1, the training source, the evaluation set)
REGIMES = {
    "R2": ("r2-hardneg-mlqa-to-xquad", {"hard_negatives"}, "mlqa-r", "xquad-r"),
    "R3": ("r3-paper-lr-mlqa-to-xquad", {"lr"}, "mlqa-r", "xquad-r"),
    "R4": ("r4-reinit-top-mlqa-to-xquad", {"reinit_top"}, "mlqa-r", "xquad-r"),
    "R5": ("r5-four-blocks-mlqa-to-xquad", {"trainable_layers"}, "mlqa-r", "xquad-r"),
    "R6": ("r6-full-mlqa-to-xquad", {"trainable_layers"}, "mlqa-r", "xquad-r"),
    "R7": ("r7-paper-hardneg-mlqa-to-xquad", {"hard_negatives", "lr"}, "mlqa-r", "xquad-r"),
    "R7 other grid": ("r7-paper-hardneg-xquad-to-mlqa", {"hard_negatives", "lr"}, "xquad-r", "mlqa-r"),
}


def _base(name: str) -> dict:
    return Grid.load(GRIDS / f"{name}.yaml").base


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_each_regime_changes_only_its_factors_of_r1(regime):
    name, changed, train, evaluated = REGIMES[regime]
    r1, grid = _base("r1-fixed-mlqa-to-xquad"), Grid.load(GRIDS / f"{name}.yaml")
    differ = {k for k in set(r1) | set(grid.base) if r1.get(k) != grid.base.get(k)}
    assert differ == changed, f"{name} changes {sorted(differ)} of R1, not {sorted(changed)}"
    assert grid.train == [{"name": train}] and grid.eval == {"dataset": evaluated}
    assert grid.axes["sampler"] == ["mono", "cross", "hybrid", "shuffled"] and len(grid.axes["seed"]) >= 3


def test_r7_is_r2_at_r3s_learning_rate():
    r2, r3, r7 = (_base(n) for n in ("r2-hardneg-mlqa-to-xquad", "r3-paper-lr-mlqa-to-xquad", REGIMES["R7"][0]))
    assert r7 == {**r2, "lr": r3["lr"]} and r3["lr"] == 3e-5
    assert len(Grid.load(GRIDS / f"{REGIMES['R7'][0]}.yaml").axes["seed"]) >= 5  # the headline: 5 seeds


def test_the_regime_grids_are_the_ones_the_library_and_the_full_run_name():
    from hybrid_replication.cli import CPU_GRIDS
    from hybrid_replication.grid_results import REGIMES as LIBRARY_REGIMES

    named = {name for regime, grids in LIBRARY_REGIMES.items() if regime != "R0" for name in grids.values()}
    assert named == {name for name, *_ in REGIMES.values()} | {"r1-fixed-mlqa-to-xquad"}
    assert {f"configs/grids/{name}.yaml" for name in named} <= set(CPU_GRIDS)
    assert all((GRIDS.parents[1] / path).exists() for path in CPU_GRIDS)


def test_r1_is_the_pilots_budget():
    import pandas as pd

    from hybrid_replication.grid_results import choose_budget

    pilot = GRIDS.parents[1] / "results" / "experiments" / "budget-pilot-mlqa"
    curves = {}
    for cell in sorted(pilot.iterdir()):
        log = pd.read_json(cell / "train_log.jsonl", lines=True)
        curves[cell.name] = log[log.event == "eval"].set_index("step").val_loss
    plan, r1 = choose_budget(curves), _base("r1-fixed-mlqa-to-xquad")
    assert (r1["max_steps"], r1["eval_at_steps"], r1["patience"]) == (plan["max_steps"], plan["eval_at_steps"], 0)


def test_a_last_snapshot_with_other_weights_is_refused():
    state = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    _same_weights(state, {k: v.clone() for k, v in state.items()}, "run")
    with pytest.raises(ValueError, match="run: the last snapshot"):
        _same_weights(state, {"w": torch.ones(2, 2), "b": torch.ones(2)}, "run")
    with pytest.raises(ValueError, match="run: the last snapshot"):
        _same_weights(state, {"w": torch.ones(2, 2)}, "run")


def test_reinit_changes_the_loaded_multilingual_e5_blocks():
    from hybrid_replication.encoder import load_encoder, transformer_layers
    from hybrid_replication.train_data import reinit_top_blocks

    try:
        loaded = load_encoder("multilingual-e5-small")
        again = load_encoder("multilingual-e5-small")
    except (OSError, ImportError) as e:
        pytest.skip(f"the offline multilingual-e5-small is not installed here ({e})")
    before = {name: p.detach().clone() for name, p in loaded.model.named_parameters()}
    reinit_top_blocks(loaded, 2, seed=0)
    reinit_top_blocks(again, 2, seed=0)
    depth = len(transformer_layers(loaded.model))
    top = tuple(f"{i}." for i in range(depth - 2, depth))
    for name, p in loaded.model.named_parameters():
        in_top = any(f".layer.{prefix}" in f".{name}" or f"layers.{prefix}" in name for prefix in top)
        if in_top and p.ndim == 2:
            assert not torch.equal(p, before[name]), f"{name} was not re-initialised"
        elif not in_top:
            assert torch.equal(p, before[name]), f"{name} changed, but it is below the re-initialised blocks"
    for p, q in zip(loaded.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)  # the same seed draws the same start


def _committed_cells():
    root = GRIDS.parents[1] / "results" / "experiments"
    return sorted(p.parent for p in root.glob("*/*/result.json") if not p.parent.name.startswith("."))


@pytest.mark.parametrize("cell", _committed_cells(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_cells_match_their_digests_and_steps(cell):
    """Every committed cell's tables match the sha256 its result.json lists (no table unlisted where digests exist);
    a fixed budget's steps keep only the pooled table, and the last step's numbers are the cell's own."""
    from hybrid_replication.core import read_json
    from hybrid_replication.experiment import STEP_TABLES, headline_numbers
    from hybrid_replication.integrity import file_sha256

    for folder in [cell, *sorted(p.parent for p in cell.glob("steps/step=*/result.json"))]:
        doc = read_json(folder / "result.json")
        listed, present = doc.get("tables") or {}, sorted(p.name for p in folder.glob("*.csv.gz"))
        for name, digest in listed.items():
            assert file_sha256(folder / name) == digest, f"{folder / name} does not match its digest"
        if listed:
            assert sorted(listed) == present, f"{folder}: tables {present}, digests for {sorted(listed)}"
        if folder != cell:
            assert set(present) <= set(STEP_TABLES), f"{folder} keeps {present}"
    doc = read_json(cell / "result.json")
    if doc.get("steps"):
        last = max(doc["steps"], key=int)
        assert doc["steps"][last] == headline_numbers(doc), f"{cell}: step {last} is not the cell's own evaluation"
