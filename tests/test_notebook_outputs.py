"""The claim notebooks are committed with their outputs, and the verdict a notebook shows is its verdict file's."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = sorted((ROOT / "nbs" / "claims").glob("C*.ipynb"))


def _output_texts(path: Path) -> list[str]:
    texts = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            data = out.get("data", {})
            texts.append(
                "".join(data.get("text/markdown", ""))
                + "".join(data.get("text/plain", ""))
                + "".join(out.get("text", ""))
            )
    return texts


def test_every_claim_has_a_notebook():
    assert len(CLAIMS) >= 8


@pytest.mark.parametrize("notebook", CLAIMS, ids=lambda p: p.stem)
def test_a_claim_notebook_shows_its_verdict_file(notebook):
    texts = _output_texts(notebook)
    assert texts, f"{notebook.name} has no saved outputs: run `hybrid-replication notebooks claims` and commit it"
    verdict_file = ROOT / "results" / "verdicts" / f"{notebook.stem.split('_')[0]}.json"
    if not verdict_file.exists():
        assert any("no verdict" in t for t in texts), (
            f"{notebook.name}: no verdict file, and its outputs do not say why"
        )
        return
    v = json.loads(verdict_file.read_text(encoding="utf-8"))
    shown = f"**Verdict: {v['verdict']}** — {v['reason']}"
    assert any(shown in t for t in texts), f"{notebook.name} shows another verdict than {verdict_file.name}"
