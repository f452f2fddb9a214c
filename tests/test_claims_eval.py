"""The assumptions the claim notebooks C06 and C07 rest on, checked so that they cannot drift silently.

- C06 gives trec_eval a run truncated to the candidates scoring at least the lowest relevant score
  (trec_eval's AP does not depend on the candidates below the last relevant one), names candidate i
  `c{i:06d}` so that trec_eval's tie order (id descending) is our tie order (position descending),
  and expects scikit-learn's `average_precision_score` to agree with us exactly when no candidate
  ties a relevant score.
- C07 computes macro - micro per bootstrap resample by calling `bootstrap_distribution` twice with
  the same seed and groups, which is only a paired difference if both calls draw the same clusters.
"""

import numpy as np
import pytrec_eval
from hypothesis import given, settings, strategies as st
from sklearn.metrics import average_precision_score

from hybrid_replication.metrics import average_precision_from_ranks, relevant_ranks
from hybrid_replication.stats import bootstrap_distribution, macro_mean


def trec_ap(scores: np.ndarray, rel: np.ndarray, truncate: bool) -> float:
    keep = np.flatnonzero(scores >= scores[rel].min()) if truncate else np.arange(len(scores))
    run = {"q": {f"c{j:06d}": float(scores[j]) for j in keep}}
    qrels = {"q": {f"c{j:06d}": 1 for j in rel}}
    return pytrec_eval.RelevanceEvaluator(qrels, {"map"}).evaluate(run)["q"]["map"]


def ours_ap(scores: np.ndarray, rel: np.ndarray) -> float:
    # scores as a [1, n] "query x candidates" product: a one-hot query against candidates whose first coordinate is the score
    q = np.array([[1.0, 0.0]], dtype=np.float64)
    c = np.stack([scores, np.zeros_like(scores)], axis=1)
    r = relevant_ranks(q, c, [np.sort(rel)])
    return float(average_precision_from_ranks(r, np.array([len(rel)]))[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 60), st.integers(1, 6), st.booleans())
def test_truncated_trec_run_and_tie_order(seed, n, n_rel, heavy_ties):
    rng = np.random.default_rng(seed)
    n_rel = min(n_rel, n)
    scores = (rng.integers(0, 4, n) if heavy_ties else rng.standard_normal(n)).astype(np.float64)
    rel = rng.choice(n, n_rel, replace=False)
    full, short = trec_ap(scores, rel, False), trec_ap(scores, rel, True)
    assert abs(full - short) < 1e-12  # the truncation changes nothing
    assert abs(ours_ap(scores, rel) - full) < 1e-12  # and ties go the same way as ours


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 60), st.integers(1, 6))
def test_sklearn_agrees_without_ties(seed, n, n_rel):
    rng = np.random.default_rng(seed)
    n_rel = min(n_rel, n)
    scores = rng.permutation(n).astype(np.float64)  # all distinct: no ties
    rel = rng.choice(n, n_rel, replace=False)
    y = np.zeros(n, dtype=bool)
    y[rel] = True
    assert abs(average_precision_score(y, scores) - ours_ap(scores, rel)) < 1e-12


def test_sklearn_differs_on_ties():
    # a relevant candidate tied with an irrelevant one: scikit-learn counts the whole tied block at once,
    # trec_eval (and we) put the higher id first; C06 counts such rankings apart
    scores = np.array([1.0, 1.0, 0.0])
    rel = np.array([0])
    y = np.array([True, False, False])
    assert abs(ours_ap(scores, rel) - 0.5) < 1e-12  # candidate 1 (higher id) ranks first
    assert abs(trec_ap(scores, rel, False) - 0.5) < 1e-12
    assert abs(average_precision_score(y, scores) - 0.5) < 1e-12
    rel = np.array([1])
    y = np.array([False, True, False])
    assert abs(ours_ap(scores, rel) - 1.0) < 1e-12
    assert abs(average_precision_score(y, scores) - 0.5) < 1e-12


def test_bootstrap_same_seed_draws_same_clusters():
    rng = np.random.default_rng(0)
    n_clusters, n_strata = 40, 5
    # every cluster has one value in every stratum (XQuAD-R's design): macro = micro in every resample,
    # so the per-resample difference is ~0 only if both calls resample the same clusters
    g = np.repeat(np.arange(n_clusters), n_strata)
    s = np.tile(np.arange(n_strata), n_clusters)
    v = rng.random(len(g))
    macro_b = bootstrap_distribution(v, 500, 7, groups=g, strata=s)
    micro_b = bootstrap_distribution(v, 500, 7, groups=g)
    assert np.abs(macro_b - micro_b).max() < 1e-12
    assert micro_b.std() > 0.01  # the resamples do vary
    # and a different seed gives different resamples (the check above is not vacuous)
    assert np.abs(bootstrap_distribution(v, 500, 8, groups=g) - micro_b).max() > 1e-3


def test_macro_minus_micro_unbalanced():
    # MLQA-R's situation: strata of very different sizes; macro and micro differ, and the point estimates are the plain formulas
    v = np.array([1.0] * 10 + [0.0] * 2)
    s = np.array(["big"] * 10 + ["small"] * 2)
    assert abs(macro_mean(v, strata=s) - 0.5) < 1e-12
    assert abs(macro_mean(v) - 10 / 12) < 1e-12
