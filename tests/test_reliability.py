"""Bad input through the installed command line: one line on stderr naming the file, record and field, exit code 2,
no traceback (unless `--debug`); numeric garbage refused; a diverging run stops without saving a NaN model;
SIGTERM exits 143; a one-language set writes standard JSON."""

import json, math, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from hybrid_replication.train import TrainConfig, NonFiniteLoss, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("hybrid-replication")
TINY = dict(
    model="tiny", sources=[{"name": "demo"}], batch_size=8, lr=1e-3, warmup_steps=1, threads=2, save_model=False
)
TINY_SETS = [
    "--set",
    "model=tiny",
    "--set",
    "sources=[{name: demo}]",
    "--set",
    "batch_size=8",
    "--set",
    "patience=0",
    "--set",
    "eval_every=0",
    "--set",
    "val_fraction=0.0",
    "--set",
    "save_model=false",
]


def run(*args, cwd=None, timeout=300):
    return subprocess.run(
        [str(EXE), *map(str, args)], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout
    )


def one_line_error(r, *needles):
    "Exit 2, exactly one line on stderr, no traceback, and every needle in it."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_evaluate_unknown_language_is_one_line_and_debug_shows_the_traceback():
    one_line_error(
        run("evaluate", "--model", "hashed-ngrams", "--dataset", "demo", "--langs", "xx"),
        "hybrid-replication evaluate:",
        "field 'lang'",
        "'xx'",
    )
    r = run("--debug", "evaluate", "--model", "hashed-ngrams", "--dataset", "demo", "--langs", "xx")
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize(
    "text, needle",
    [
        ("lr: .inf", "'lr': inf is not a finite number"),
        ("lr: .nan", "'lr': nan is not a finite number"),
        ("lr: -1.0e-5", "'lr': -1e-05 must be > 0"),
        ("weight_decay: -0.1", "'weight_decay'"),
        ("warmup_ratio: -0.5", "'warmup_ratio'"),
        ("epochs: 0", "'epochs': 0 must be > 0"),
        ("threads: -1", "'threads': -1 must be >= 1"),
        ("device: banana", "'device': 'banana'"),
    ],
)
def test_numeric_garbage_in_a_config_is_refused(tmp_path, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"preset: cpu\n{text}\n")
    one_line_error(run("train", "--config", cfg, cwd=tmp_path), str(cfg), needle)


def test_files_that_are_not_regular_text_files(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")  # opened, it would block forever: refused without opening
    one_line_error(run("train", "--config", tmp_path / "pipe.yaml", timeout=60), "pipe.yaml", "not a regular file")
    (tmp_path / "folder.yaml").mkdir()
    one_line_error(
        run("train", "--config", tmp_path / "folder.yaml"), "folder.yaml", "not a regular file (a folder)"
    )
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    one_line_error(run("train", "--config", tmp_path / "loop.yaml"), "loop.yaml", "cannot read")
    (tmp_path / "latin1.yaml").write_bytes("query_prefix: caf\xe9\n".encode("latin-1"))
    one_line_error(run("train", "--config", tmp_path / "latin1.yaml"), "latin1.yaml", "not UTF-8")
    (tmp_path / "grid.yaml").write_text("name: [unclosed\n")
    one_line_error(run("experiment", tmp_path / "grid.yaml"), "grid.yaml", "not valid YAML")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_is_one_line(tmp_path):
    cfg = tmp_path / "secret.yaml"
    cfg.write_text("preset: cpu\n")
    cfg.chmod(0)
    one_line_error(run("train", "--config", cfg), "secret.yaml", "cannot read")


def test_lareqa_json_problems_name_the_record(tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    para = {
        "context": "One. Two.",
        "sentence_breaks": [[0, 9], [5, 9]],
        "qas": [{"id": "q1", "question": "Which?", "answers": [{"answer_start": 6, "text": "Two."}]}],
    }
    (data / "en.json").write_text(json.dumps({"data": [{"paragraphs": [para]}]}))
    one_line_error(
        run("evaluate", "--model", "hashed-ngrams", "--dataset", data, "--out", tmp_path / "r.json"),
        "en.json",
        "data[0].paragraphs[0]",
        "sentence_breaks[1]",
        "must not overlap",
    )
    (data / "en.json").write_text('{"data": [{"paragraphs": [{"context": "\\ud800"}]}]}')
    one_line_error(run("evaluate", "--model", "hashed-ngrams", "--dataset", data), "en.json", "surrogate")
    (data / "en.json").write_text("[" * 100_000)
    one_line_error(run("evaluate", "--model", "hashed-ngrams", "--dataset", data), "en.json", "nested too deeply")


def test_a_bom_does_not_become_part_of_the_first_topic_id(tmp_path):
    from hybrid_replication.miracl_data import load_topics

    folder = tmp_path / "miracl-topics-qrels"
    folder.mkdir()
    (folder / "topics.miracl-v1.0-sw-dev.tsv").write_bytes("\ufeff1\tSwali moja\n2\tSwali mbili\n".encode("utf-8"))
    assert list(load_topics("sw", "dev", data_dir=tmp_path)) == ["1", "2"]


def test_a_one_language_set_writes_standard_json_with_null_cross_lingual_scores(tmp_path):
    out = tmp_path / "en.json"
    r = run(
        "evaluate",
        "--model",
        "hashed-ngrams",
        "--dataset",
        "demo",
        "--langs",
        "en",
        "--out",
        out,
        "--n-boot",
        "20",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["summary"]["cross_map"] is None and doc["summary"]["mono_map"] > 0


def test_a_diverging_run_stops_before_saving_a_nan_model(tmp_path):
    # a temperature of 1e-30 turns every logit into inf: the first loss is NaN (a config refuses such a
    # temperature, so it is set after the checks, as a library caller could)
    cfg = TrainConfig(**dict(TINY, save_model=True), max_steps=5, ckpt_every=1, output_dir=str(tmp_path / "run"))
    cfg.temperature = 1e-30
    with pytest.raises(
        NonFiniteLoss, match="step 1: .*not finite.*no checkpoint was written and no model was saved"
    ):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "final").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_sigterm_exits_143_after_a_checkpoint_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    args = [
        str(EXE),
        "train",
        "--preset",
        "cpu",
        "--no-progress",
        *TINY_SETS,
        "--set",
        "max_steps=100000",
        "--set",
        f"output_dir={out}",
    ]
    p = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    log = out / "log.jsonl"
    while (
        time.time() < deadline and p.poll() is None and (not log.exists() or len(log.read_text().splitlines()) < 2)
    ):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 2


def test_resuming_on_another_thread_count_says_so(tmp_path, capfd):
    cfg = TrainConfig(**dict(TINY, threads=None), max_steps=3, output_dir=str(tmp_path / "run"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train(cfg, progress=False, stop_at_step=1)
        torch.set_num_threads(1)
        train(cfg, resume=True, progress=False)
    finally:
        torch.set_num_threads(before)
    assert "written with 2 torch threads, this run has 1" in capfd.readouterr().err


def test_killed_writers_leave_no_temporary_files_behind(tmp_path):
    from hybrid_replication.core import atomic_write_json

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".r.json.{dead.pid}.x1.tmp").write_text("{half")
    alive = tmp_path / f".r.json.{os.getpid()}.x2.tmp"  # a writer still running: left alone
    alive.write_text("{")
    atomic_write_json(tmp_path / "r.json", {"a": math.pi})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.json", alive.name])
