"""Simulation checks of hybrid_replication.stats: coverage, null p-values, power, clusters, macro averages."""

import numpy as np
import pytest

from hybrid_replication.stats import (
    bootstrap_ci,
    compare,
    macro_mean,
    paired_bootstrap,
    paired_test,
    permutation_test,
)


def test_ci_covers_true_mean_at_about_nominal_rate():
    # per-query AP-like values from a known law: mean of 1/Geometric(p) is -p log(p) / (1 - p)
    p = 0.6
    true = -p * np.log(p) / (1 - p)
    rng = np.random.default_rng(0)
    covered = [true in bootstrap_ci(1.0 / rng.geometric(p, 200), n_boot=400, seed=i) for i in range(200)]
    assert 0.88 <= np.mean(covered) <= 0.99  # nominal 0.95; percentile bootstrap runs a bit narrow at n=200


def test_clustered_ci_covers_where_row_bootstrap_does_not():
    # 150 question ids x 6 languages with a strong shared question effect
    rng = np.random.default_rng(1)
    qids = np.repeat(np.arange(150), 6)
    lang = np.tile(list("abcdef"), 150)
    cover_rows, cover_clusters = [], []
    for i in range(80):
        v = rng.normal(0, 1, 150)[qids] + rng.normal(0, 0.3, len(qids))  # true mean 0
        cover_rows.append(0.0 in bootstrap_ci(v, n_boot=200, seed=i, strata=lang))
        cover_clusters.append(0.0 in bootstrap_ci(v, n_boot=200, seed=i, groups=qids, strata=lang))
    assert np.mean(cover_clusters) >= 0.88
    assert np.mean(cover_rows) < 0.75  # resampling rows ignores the correlation and undercovers


def test_macro_mean_and_empty_strata():
    v = np.array([1.0, 1.0, 1.0, 0.0])
    s = np.array(["x", "x", "x", "y"])
    assert macro_mean(v, strata=s) == 0.5 and macro_mean(v) == 0.75
    # a stratum with a single query is sometimes absent from a resample; the macro mean skips it then
    iv = bootstrap_ci(v, strata=s, n_boot=200)
    assert 0.5 <= iv.high <= 1.0 and np.isfinite(iv.low)


def test_identical_systems_give_p_one():
    a = np.random.default_rng(2).random(300)
    assert permutation_test(a, a.copy(), n_perm=500) == 1.0
    assert paired_test(a, a.copy(), method="bootstrap", n_boot=300) == 1.0
    assert "within noise" in compare(a, a.copy(), n_perm=300, n_boot=300).verdict


def test_large_shift_gives_small_p():
    rng = np.random.default_rng(3)
    a = rng.random(300)
    b = np.clip(a + 0.05 + rng.normal(0, 0.05, 300), 0, 1)
    assert permutation_test(a, b, n_perm=2000) < 0.01
    iv, p = paired_bootstrap(a, b, n_boot=1000)
    assert p < 0.01 and iv.low > 0
    c = compare(a, b, names=("base", "new"), n_perm=2000)
    assert c.verdict.startswith("base") and "significant at 0.05 (new better)" in c.verdict
    assert c.to_dict()["p_value"] == c.p_value


def test_null_p_values_are_not_too_small():
    # under the null the sign-flip p-value is (close to) uniform: few below 0.05
    rng = np.random.default_rng(4)
    ps = [
        permutation_test(x := rng.random(80), x + rng.normal(0, 0.1, 80), n_perm=300, seed=i) for i in range(100)
    ]
    assert np.mean(np.array(ps) < 0.05) <= 0.12
    assert 0.3 < np.mean(ps) < 0.7


def test_clustered_permutation_flips_whole_questions():
    # the difference is shared by all rows of a question: row-wise flips would overstate significance
    rng = np.random.default_rng(5)
    qids = np.repeat(np.arange(40), 10)
    a = rng.random(400)
    b = a + rng.normal(0.02, 0.1, 40)[qids]
    p_rows = permutation_test(a, b, n_perm=2000)
    p_clusters = permutation_test(a, b, n_perm=2000, groups=qids)
    assert p_clusters > p_rows


def test_bad_input():
    with pytest.raises(ValueError, match="same queries"):
        permutation_test([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="groups has 1 entries"):
        bootstrap_ci([1.0, 2.0], groups=[1])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="method"):
        paired_test([1.0], [1.0], method="t")
