"""The `hybrid-replication` command end to end, as a user runs it (a subprocess, the installed entry point)."""

import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("hybrid-replication")


def run(*args, env_extra=None, cwd=ROOT, timeout=600):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([str(EXE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_subcommand():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    for name in ("data-check", "train", "evaluate", "replicate", "verdicts", "readme"):
        assert name in r.stdout


def test_unknown_command_fails_with_message():
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_data_check_runs_on_the_demo_set_without_a_data_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYBRID_DATA"}
    env.update(HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run(
        [str(EXE), "data-check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "demo" in (r.stdout + r.stderr).lower()


@pytest.mark.skipif(not os.environ.get("HYBRID_DATA"), reason="needs the real data ($HYBRID_DATA)")
def test_data_check_on_real_data_prints_table10_counts():
    r = run("data-check")
    assert r.returncode == 0, r.stdout + r.stderr
    # XQuAD-R: 1,190 questions per language; MLQA-R English: 6,264 candidates (the paper's Table 10)
    assert "1190" in r.stdout.replace(",", "") and "6264" in r.stdout.replace(",", "")


def test_data_check_fails_clearly_on_a_broken_data_dir(tmp_path):
    (tmp_path / "xquad-r").mkdir()
    (tmp_path / "xquad-r" / "en.json").write_text("{not json")
    r = run("data-check", "--data-dir", str(tmp_path))
    assert r.returncode != 0
    assert "en.json" in (r.stdout + r.stderr)
