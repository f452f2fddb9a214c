"Training loop end to end: the command line with SIGINT and resume, bit-exact resume with gradient caching and hard negatives, early stopping, config round trips."

import json, math, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

import hybrid_replication.train as T
from hybrid_replication.train import TrainConfig, JsonlLog, load_checkpoint, train

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]
# the random tiny BERT on the shipped demo set (30 questions x 7 languages): seconds, not minutes
TINY = dict(
    model="tiny", sources=[{"name": "demo"}], batch_size=8, lr=1e-3, warmup_steps=1, threads=2, save_model=False
)


def _weights(d):
    return load_checkpoint(Path(d) / "checkpoint.pt")["model"]


def _log(d):
    return [
        {k: v for k, v in r.items() if k not in ("step_time", "elapsed")}
        for r in JsonlLog.read(Path(d) / "log.jsonl")
    ]


def _steps(d):
    return [r["step"] for r in JsonlLog.read(Path(d) / "log.jsonl") if "loss" in r]


def test_resume_bit_exact_with_grad_cache_hard_negatives_symmetric(tmp_path):
    "4 steps straight == 2 steps, stop, resume 2 steps: every trainable weight and every log line (dropout on)."
    cfg = dict(
        TINY,
        max_steps=4,
        grad_cache_chunk=3,
        hard_negatives=1,
        symmetric=True,
        temperature=0.05,
        val_fraction=0.2,
        eval_every=2,
    )
    a = train(TrainConfig(**cfg, output_dir=str(tmp_path / "a")), progress=False)
    b1 = train(TrainConfig(**cfg, output_dir=str(tmp_path / "b")), progress=False, stop_at_step=2)
    assert (b1["steps"], b1["stopped"]) == (2, "stop_at_step")
    b2 = train(TrainConfig(**cfg, output_dir=str(tmp_path / "b")), resume=True, progress=False)
    assert a["steps"] == b2["steps"] == 4 and b2["finished"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert sorted(wa) == sorted(wb) and len(wa) > 10
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _log(tmp_path / "a") == _log(tmp_path / "b")
    # the run did train: the weights moved from the initial encoder
    init = T.build_encoder(TrainConfig(**cfg))
    moved = [k for k, v in init.named_parameters() if k in wa and not torch.equal(v.detach(), wa[k])]
    assert len(moved) == len(wa)


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = dict(TINY, max_steps=2)
    train(TrainConfig(**cfg, output_dir=str(tmp_path)), progress=False, stop_at_step=1)
    with pytest.raises(ValueError, match="'lr'"):
        train(TrainConfig(**dict(cfg, lr=1e-2), output_dir=str(tmp_path)), resume=True, progress=False)
    # a resumable field may change: run to 3 steps instead of 2
    s = train(TrainConfig(**dict(cfg, max_steps=3), output_dir=str(tmp_path)), resume=True, progress=False)
    assert s["steps"] == 3 and _steps(tmp_path) == [1, 2, 3]


def test_early_stopping_keeps_the_best(tmp_path, monkeypatch):
    "Validation losses 1.0, 1.2, 1.3 with patience 2: stop at step 3, best at step 1, `best/` written."
    losses = iter([1.0, 1.2, 1.3, 9.9])
    monkeypatch.setattr(T, "validation_loss", lambda *a, **k: next(losses))
    cfg = TrainConfig(
        **dict(TINY, save_model=True),
        max_steps=10,
        val_fraction=0.2,
        eval_every=1,
        patience=2,
        output_dir=str(tmp_path),
    )
    s = train(cfg, progress=False)
    assert (s["stopped"], s["steps"], s["best_step"], s["best_val_loss"]) == ("early_stopping", 3, 1, 1.0)
    evals = [r for r in JsonlLog.read(tmp_path / "log.jsonl") if r.get("event") == "eval"]
    assert [(r["step"], r["val_loss"]) for r in evals] == [(1, 1.0), (2, 1.2), (3, 1.3)]
    assert (tmp_path / "best" / "config.json").exists() and (tmp_path / "final").exists()


def test_validation_holds_out_every_language_of_a_question(tmp_path):
    from hybrid_replication.train_data import source_pairs, split_validation

    pairs = source_pairs({"name": "demo"})
    tr, va = split_validation(pairs, 0.2, seed=0)
    assert len(va) == 6 and all(p.query_lang == p.passage_lang == "en" for p in va)
    assert not ({p.qid for p in tr} & {p.qid for p in va})


def test_cli_sigint_then_resume(tmp_path):
    "`python -m hybrid_replication.train`: SIGINT mid-run saves a checkpoint and exits 130; --resume finishes the run."
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "hybrid_replication.train",
        "--preset",
        "cpu",
        "--no-progress",
        "--set",
        "model=tiny",
        "--set",
        "sources=[{name: demo}]",
        "--set",
        "batch_size=8",
        "--set",
        "lr=1e-3",
        "--set",
        "val_fraction=0.2",
        "--set",
        "eval_every=0",
        "--set",
        "patience=0",
        "--set",
        "ckpt_every=0",
        "--set",
        "save_model=false",
        "--set",
        f"output_dir={out}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        args + ["--set", "max_steps=100000"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(_steps(out)) < 3 and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[1][-3000:]
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr[-3000:]
    assert "SIGINT" in stderr
    k = load_checkpoint(out / "checkpoint.pt")["step"]
    assert k >= 3 and _steps(out) == list(range(1, k + 1))
    assert json.loads(stdout.strip().splitlines()[-1])["stopped"] == "signal"
    r = subprocess.run(
        args + ["--set", f"max_steps={k + 2}", "--resume"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert _steps(out) == list(range(1, k + 3))
    assert json.loads((out / "summary.json").read_text())["finished"] is True


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert T.train_cli(["--preset", "cpu", "--set", "samplr=mono"]) == 2
    assert "samplr" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("preset: cpu\nbatch_size: [1\n")
    assert T.train_cli(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert T.train_cli(["--config", str(ROOT / "configs" / "cpu-hybrid-mlqa.yaml"), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "sampler: hybrid" in printed and "multilingual-e5-small" in printed


_configs = st.builds(
    # alpha applies only to the hybrid sampler: other samplers keep the default
    lambda **kw: TrainConfig(**{**kw, "alpha": kw["alpha"] if kw["sampler"] == "hybrid" else 0.5}),
    sampler=st.sampled_from(["mono", "cross", "hybrid", "shuffled"]),
    alpha=st.floats(0, 1),
    batch_size=st.integers(2, 512),
    lr=st.floats(1e-7, 1e-2),
    temperature=st.none() | st.floats(0.01, 1.0),
    query_prefix=st.text(max_size=12),
    passage_prefix=st.text(max_size=12),
    hard_negatives=st.integers(0, 3),
    sources=st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(["mlqa-r", "xquad-r", "afriqa"]),
                "langs": st.none() | st.lists(st.sampled_from(["en", "de", "ar", "zh"]), max_size=3),
            }
        ),
        min_size=1,
        max_size=3,
    ),
    max_steps=st.none() | st.integers(1, 10**6),
    seed=st.integers(0, 2**31),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=_configs, suffix=st.sampled_from([".yaml", ".json"]))
def test_config_round_trip(tmp_path, cfg, suffix):
    assert TrainConfig.load(cfg.save(tmp_path / f"c{suffix}")) == cfg
    assert cfg.with_overrides([]) == cfg


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    cfg = TrainConfig(**TINY, max_steps=2, val_fraction=0.2, eval_every=2, output_dir=str(tmp_path))
    train(cfg, progress=False)
    before, w = _log(tmp_path), _weights(tmp_path)
    s = train(cfg, resume=True, progress=False)
    assert s["steps"] == 2 and _log(tmp_path) == before
    for k, v in _weights(tmp_path).items():
        assert torch.equal(v, w[k])


@pytest.mark.parametrize(
    "fields",
    [
        dict(val_source={"name": "demo"}, val_lang="sw"),  # a validation source without val_lang pairs
        dict(val_fraction=0.2, hard_negatives=50),  # every validation pair lacks the hard negatives
    ],
)
def test_empty_validation_set_is_a_clear_error_at_setup(tmp_path, fields):
    cfg = TrainConfig(**TINY, max_steps=2, eval_every=1, output_dir=str(tmp_path), **fields)
    with pytest.raises(ValueError, match="validation set has 0 pairs") as e:
        train(cfg, progress=False)
    for name in ("val_source", "val_lang", "val_fraction", "hard_negatives"):
        assert name in str(e.value)
    assert not (tmp_path / "log.jsonl").exists()  # refused before training
    with pytest.raises(ValueError, match="need at least 2"):
        T.validation_loss(T.build_encoder(cfg), [], cfg, None)


def test_resuming_an_early_stopped_run_takes_no_step(tmp_path, monkeypatch):
    "Stopped early at step 3 (losses 1.0, 1.2, 1.3, patience 2): resuming it trains nothing and evaluates nothing."
    losses = iter([1.0, 1.2, 1.3, 9.9, 9.9])
    monkeypatch.setattr(T, "validation_loss", lambda *a, **k: next(losses))
    cfg = TrainConfig(**TINY, max_steps=10, val_fraction=0.2, eval_every=1, patience=2, output_dir=str(tmp_path))
    s = train(cfg, progress=False)
    assert (s["stopped"], s["steps"]) == ("early_stopping", 3)
    before, w = _log(tmp_path), _weights(tmp_path)
    s2 = train(cfg, resume=True, progress=False)
    assert (s2["stopped"], s2["steps"], s2["best_step"]) == ("early_stopping", 3, 1)
    assert _log(tmp_path) == before and _steps(tmp_path) == [1, 2, 3]
    for k, v in _weights(tmp_path).items():
        assert torch.equal(v, w[k])
    # a larger patience (a resumable field) lets it go on
    s3 = train(TrainConfig(**dict(cfg.to_dict(), patience=3)), resume=True, progress=False)
    assert s3["steps"] == 4 and _steps(tmp_path) == [1, 2, 3, 4]


def test_saved_model_records_its_prefixes_and_lengths(tmp_path):
    "A fair fine-tuned-vs-untuned comparison needs the prefixes and lengths the model was trained with: they travel with it."
    from hybrid_replication.encoder import Encoder
    from hybrid_replication.core import read_json

    cfg = TrainConfig(
        **dict(TINY, save_model=True),
        max_steps=1,
        query_prefix="query: ",
        passage_prefix="passage: ",
        max_query_length=24,
        max_passage_length=80,
        output_dir=str(tmp_path),
    )
    train(cfg, progress=False)
    saved = read_json(tmp_path / "final" / "encoder_config.json")
    assert {k: saved[k] for k in ("query_prefix", "passage_prefix", "max_query_length", "max_passage_length")} == {
        "query_prefix": "query: ",
        "passage_prefix": "passage: ",
        "max_query_length": 24,
        "max_passage_length": 80,
    }
    back = Encoder.from_pretrained(tmp_path / "final")
    assert (back.query_prefix, back.passage_prefix, back.max_query_length, back.max_passage_length) == (
        "query: ",
        "passage: ",
        24,
        80,
    )


def test_bf16_autocast_trains_and_counts_tokens(tmp_path):
    "precision: bf16 (the GPU setting) runs on the CPU too; every step logs its real token count."
    s = train(TrainConfig(**TINY, max_steps=2, precision="bf16", output_dir=str(tmp_path)), progress=False)
    recs = [r for r in JsonlLog.read(tmp_path / "log.jsonl") if "loss" in r]
    assert s["finished"] and all(math.isfinite(r["loss"]) and r["tokens"] > 16 for r in recs)
    with pytest.raises(ValueError, match="'precision'"):
        TrainConfig(**TINY, precision="fp8")
