"""Issue 21, classes 6-10, driven as a user hits them through `hybrid-replication` (in process, `main([...])`):
strict config types, settings that cannot train, bad input that used to be an internal error, a full disk, portable
provenance paths, answer texts and duplicate keys in data files. Each bad input exits 2 with one line on stderr
naming the file and the field, and no traceback."""

import errno, json, time
from pathlib import Path

import pytest
import torch

from hybrid_replication import core
from hybrid_replication.cli import main

TINY = """\
preset: cpu
model: tiny
sources: [{name: demo}]
batch_size: 8
val_fraction: 0.0
eval_every: 0
patience: 0
max_steps: 2
ckpt_every: 0
save_model: false
"""


def one_line_error(capsys, argv, *needles):
    "`main(argv)` exits 2 with exactly one line on stderr, no traceback, holding every needle."
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def config(tmp_path, extra: str, name="c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(TINY + f"output_dir: {tmp_path / 'run'}\n" + extra + "\n")
    return path


# ---------------------------------------------------------------- class 6: strict types


@pytest.mark.parametrize(
    "line, field, words",
    [
        ("symmetric: 'false'", "'symmetric'", "'false' is not a boolean"),
        ("save_model: no thanks", "'save_model'", "'no thanks' is not a boolean"),
        ("freeze_word_embeddings: 2", "'freeze_word_embeddings'", "2 is not a boolean"),
        ("model: ''", "'model'", "is empty"),
        ("model: null", "'model'", "None is not text"),
        ("sampler: mono\nalpha: 0.3", "'alpha'", "applies only to sampler 'hybrid'"),
    ],
)
def test_wrong_types_in_a_config_file_are_refused(tmp_path, capsys, line, field, words):
    cfg = config(tmp_path, line)
    one_line_error(capsys, ["train", "--config", cfg], str(cfg), f"field {field}", words)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_set_parses_booleans_and_refuses_a_preset(tmp_path, capsys):
    cfg = config(tmp_path, "")
    assert main(["train", "--config", str(cfg), "--set", "symmetric=false", "--print-config"]) == 0
    assert "symmetric: false" in capsys.readouterr().out
    one_line_error(capsys, ["train", "--config", cfg, "--set", "symmetric='false'"], "--set", "'symmetric'")
    one_line_error(capsys, ["train", "--config", cfg, "--set", "preset=paper"], "preset=paper", "--preset NAME")


# ---------------------------------------------------------------- class 7: settings that cannot train


@pytest.mark.parametrize(
    "line, field, words",
    [
        ("max_query_length: 1", "'max_query_length'", "no room for text"),
        ("max_passage_length: 2", "'max_passage_length'", "no room for text"),
        ("temperature: 1.0e30", "'temperature'", "the loss constant"),
        ("temperature: 1.0e-12", "'temperature'", "the loss explodes"),
        ("warmup_steps: 50", "'warmup_steps'", "longer than the run (max_steps 2)"),
        ("max_steps: 1000000000000", "'max_steps'", "never ends"),
    ],
)
def test_settings_that_cannot_train_are_refused_with_the_reason(tmp_path, capsys, line, field, words):
    cfg = config(tmp_path, line)
    one_line_error(capsys, ["train", "--config", cfg], str(cfg), f"field {field}", words)


def test_a_plan_of_endless_epochs_is_refused_at_once(tmp_path, capsys):
    cfg = config(tmp_path, "max_steps: null\nepochs: 1.0e300")
    t0 = time.perf_counter()
    one_line_error(capsys, ["train", "--config", cfg], str(cfg), "field 'epochs'", "never ends")
    assert time.perf_counter() - t0 < 10


# ---------------------------------------------------------------- class 8: bad input, not an internal error


@pytest.mark.parametrize(
    "line, field, words",
    [
        ("query_prefix: 123", "'query_prefix'", "123 is not text"),
        ("output_dir: null", "'output_dir'", "None is not text"),
        ("seed: 1180591620717411303424", "'seed'", "must be <= 4294967295"),  # 2**70
        ("seed: -1", "'seed'", "must be >= 0"),
        ("sources: [{name: demo, langz: [en]}]", "'sources[0].langz'", "not an option of source 'demo'"),
    ],
)
def test_bad_config_values_exit_2_naming_the_field(tmp_path, capsys, line, field, words):
    cfg = config(tmp_path, line)
    one_line_error(capsys, ["train", "--config", cfg], str(cfg), f"field {field}", words)


def test_a_yaml_syntax_error_in_a_training_config_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: cpu\nsources: [{name: demo}\nlr: 1.0e-4\n")
    one_line_error(capsys, ["train", "--config", cfg], str(cfg), "record line 3 column 1", "not valid YAML")


@pytest.mark.parametrize("device", ["cuda", "cuda:99"])
def test_a_device_this_machine_lacks_exits_2(tmp_path, capsys, device):
    if torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has CUDA")
    cfg = config(tmp_path, f"device: '{device}'")
    one_line_error(capsys, ["train", "--config", cfg], "field 'device'", f"'{device}' but")


def demo_folder(tmp_path: Path, change=None, changed=("en",)) -> Path:
    "A copy of the demo set's English and German files, `change(text)` applied to the text of those `changed`."
    folder = tmp_path / "set"
    folder.mkdir()
    demo = Path(core.__file__).parent / "demo_data" / "demo-r"
    for lang in ("en", "de"):
        text = (demo / f"{lang}.json").read_text(encoding="utf-8")
        (folder / f"{lang}.json").write_text(
            change(text) if change and lang in changed else text, encoding="utf-8"
        )
    return folder


def evaluate(tmp_path, folder):
    return ["evaluate", "--model", "hashed-ngrams", "--dataset", folder, "--out", tmp_path / "r.json",
            "--cache-dir", tmp_path / "cache", "--n-boot", "10"]  # fmt: skip


def test_the_demo_copy_evaluates(tmp_path, capsys):
    assert main([str(a) for a in evaluate(tmp_path, demo_folder(tmp_path))]) == 0, capsys.readouterr().err


def test_a_set_without_questions_exits_2(tmp_path, capsys):
    def no_questions(text):
        doc = json.loads(text)
        for art in doc["data"]:
            for para in art["paragraphs"]:
                para["qas"] = []
        return json.dumps(doc)

    folder = demo_folder(tmp_path, no_questions, changed=("en", "de"))
    one_line_error(capsys, evaluate(tmp_path, folder), str(folder), "field 'qas'", "no questions")
    assert not (tmp_path / "r.json").exists()


def test_a_5000_digit_integer_in_a_data_file_exits_2(tmp_path, capsys):
    folder = demo_folder(
        tmp_path, lambda text: text.replace('"answer_start": ', '"answer_start": ' + "9" * 5000, 1)
    )
    one_line_error(capsys, evaluate(tmp_path, folder), "en.json", "field 'file'", "a number too long")


# ---------------------------------------------------------------- class 9: a full disk


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file write failed"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)  # fmt: skip
def test_a_full_disk_names_the_folder_and_exits_2(tmp_path, capsys, monkeypatch, failure):
    "The checkpoint's bytes go to disk through `open(..., 'wb')` (torch.save fills a buffer first): fill the disk there."
    import builtins
    from hybrid_replication import train as train_module

    real_open = builtins.open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:8])  # what a writer leaves when the disk fills up
            raise failure

    def full_disk_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullDisk(f) if mode == "wb" else f

    monkeypatch.setattr(train_module, "open", full_disk_open, raising=False)
    cfg = config(tmp_path, "max_steps: 1")
    run = tmp_path / "run"
    one_line_error(capsys, ["train", "--config", cfg, "--no-progress"], "checkpoint.pt", f"no space left on {run}")
    assert not list(run.glob("*.pt")) and not list(run.glob(".checkpoint.pt.*"))  # no half checkpoint left


# ---------------------------------------------------------------- provenance


def test_provenance_records_paths_relative_to_the_checkout(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(core, "_checkout_root", lambda: tmp_path)  # pretend the temporary folder is the checkout
    cfg = config(tmp_path, "max_steps: 1")
    assert main(["train", "--config", str(cfg), "--no-progress"]) == 0, capsys.readouterr().err
    prov = json.loads((tmp_path / "run" / "summary.json").read_text())["provenance"]
    assert prov["config"]["output_dir"] == "run"
    assert str(tmp_path) not in json.dumps(prov)


# ---------------------------------------------------------------- class 10: data


def test_an_answer_text_that_is_not_the_context_exits_2(tmp_path, capsys):
    def wrong_offset(text):
        doc = json.loads(text)
        ans = doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]
        ans["text"] = "not what the context holds at this offset"
        return json.dumps(doc)

    folder = demo_folder(tmp_path, wrong_offset)
    one_line_error(
        capsys,
        evaluate(tmp_path, folder),
        "en.json",
        "record data[0].paragraphs[0].qas[0].answers[0]",
        "field 'text'",
    )


def test_a_duplicate_key_in_a_data_file_exits_2(tmp_path, capsys):
    folder = demo_folder(
        tmp_path, lambda text: text.replace('"answer_start": ', '"answer_start": 0, "answer_start": ', 1)
    )
    one_line_error(capsys, evaluate(tmp_path, folder), "en.json", "field 'answer_start'", "key given twice")


@pytest.mark.parametrize("option, value", [("--n-boot", "0"), ("--seed", "-1")])
def test_resampling_options_name_themselves(tmp_path, capsys, option, value):
    # refused by the bootstrap, after the encoding's progress lines: the error is the one last line
    argv = [a for a in evaluate(tmp_path, demo_folder(tmp_path)) if a not in ("--n-boot", "10")]
    assert main([*map(str, argv), option, value]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"({option}): {value} must be" in err.strip().splitlines()[-1], err


@pytest.mark.parametrize("option, value", [("--n-boot", "0"), ("--seed", "-1"), ("--threads", "-3")])
def test_evaluate_options_are_refused_before_any_compute(tmp_path, capsys, option, value):
    "Refused at once: one line on stderr and no progress before it (nothing was encoded)."
    argv = [a for a in evaluate(tmp_path, demo_folder(tmp_path)) if a not in ("--n-boot", "10")]
    one_line_error(capsys, [*argv, option, value], f"({option}): {value} must be")


def test_evaluate_outputs_are_checked_before_anything_is_written(tmp_path, capsys):
    folder = demo_folder(tmp_path)
    (tmp_path / "a_folder").mkdir()
    argv = evaluate(tmp_path, folder)
    argv[argv.index("--out") + 1] = tmp_path / "a_folder"
    one_line_error(capsys, argv, "a_folder", "--out")
    (tmp_path / "a_file").write_text("x")
    plots = [*evaluate(tmp_path, folder), "--plots", tmp_path / "a_file"]
    one_line_error(capsys, plots, "a_file", "--plots", "is a file")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "cache").exists()  # nothing was written


def test_a_grid_whose_base_is_null_exits_2(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nbase: null\ntrain: [{name: demo}]\neval: {dataset: demo}\naxes: {seed: [0]}\n")
    one_line_error(capsys, ["experiment", grid, "--dry-run"], "g.yaml", "field 'base'", "must be a mapping")


def test_a_warmup_longer_than_an_epoch_based_run_is_refused(tmp_path, capsys):
    cfg = config(tmp_path, "max_steps: null\nepochs: 1\nwarmup_steps: 10000").read_text()
    path = tmp_path / "w.yaml"
    path.write_text(cfg.replace("max_steps: 2\n", ""))
    one_line_error(capsys, ["train", "--config", path], "warmup_steps", "longer than the run")
