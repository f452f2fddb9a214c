"""The paper's tables shipped in the package are byte-for-byte the project's reference copies."""

from pathlib import Path
import pytest
from hybrid_replication.paper_tables import paper_dir, paper_summary

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "paper"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/paper is not beside the checkout")
@pytest.mark.parametrize("name", ["per_language_map_recall.csv", "rank_distance.csv", "miracl.csv"])
def test_shipped_tables_equal_shared_copies(name):
    assert (paper_dir() / name).read_bytes() == (SHARED / name).read_bytes()


def test_paper_headline_numbers_match_paper_md():
    # PAPER.md: XLM-R hybrid on XQuAD-R .798 / .705 / .593 (Mo. / Cr. / Mul.), rank distance 286.6
    t = paper_summary("XQuAD-R").loc[("XLM-R", "hybrid")]
    assert round(t.mono_map, 3) == 0.798 and round(t.cross_map, 3) == 0.705 and round(t.multi_map, 3) == 0.593
    assert t.rank_distance == pytest.approx(286.6)
