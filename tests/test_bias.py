"Language-bias measures: rank distance as the paper defines it, and the two diagnostics, on cases with known answers."

import numpy as np
import pandas as pd
import pytest

from hybrid_replication.bias import language_share_at_k, rank_distance, rank_distance_table, same_language_rank
from hybrid_replication.lareqa_eval import LareqaIndex, LareqaResult, evaluate_embeddings
from test_lareqa_eval import synthetic_set


def result_from_ranks(langs_of_q, ranks, rank_langs, languages):
    pool = pd.DataFrame({"qid": [f"q{i}" for i in range(len(ranks))], "lang": langs_of_q})
    return LareqaResult(
        "t", languages, pool, pd.DataFrame(), [np.asarray(r) for r in ranks], [np.asarray(l) for l in rank_langs]
    )


def test_rank_distance_is_max_minus_min():
    np.testing.assert_array_equal(rank_distance([np.array([5, 1, 9]), np.array([2, 3])]), [8, 1])
    assert np.isnan(rank_distance([np.array([4])])[0])


def test_rank_distance_table_macro_averages_languages_not_questions():
    # language a: two questions with RD 10 and 20; language b: one question with RD 100
    res = result_from_ranks(["a", "a", "b"], [[1, 11], [5, 25], [1, 101]], [["a", "b"]] * 3, ["a", "b"])
    t = rank_distance_table(res)
    assert t.loc["a", "mean"] == 15 and t.loc["b", "mean"] == 100
    assert t["mean"].mean() == pytest.approx(57.5)  # the paper's number: macro over languages
    assert t.n_questions.tolist() == [2, 1]


def test_same_language_rank():
    # a question in 'a': its a-answer at rank 2, other answers at ranks 1, 7, 9 -> not first, median of others 7
    res = result_from_ranks(
        ["a", "b"], [[2, 1, 7, 9], [3, 40, 50, 60]], [["a", "b", "c", "d"], ["a", "b", "c", "d"]], ["a", "b"]
    )
    t = same_language_rank(res)
    assert t.loc["a"].tolist() == [2, 7, 0.0, 0.25]
    assert t.loc["b"].tolist() == [40, 50, 0.0, 0.25]


def test_language_share_at_k_sees_a_language_cluster():
    rs = synthetic_set(n_ids=6, langs=("aa", "bb"), n_distractors=4)
    ix = LareqaIndex.from_set(rs)
    # every embedding is its language's direction: each top-k is entirely in the query's language
    dirs = {"aa": np.array([1.0, 0, 0]), "bb": np.array([0, 1.0, 0])}
    rng = np.random.default_rng(0)
    q = np.stack([dirs[l] for l in ix.q_lang]) + rng.normal(0, 1e-3, (ix.n_questions, 3))
    c = np.stack([dirs[l] for l in ix.c_lang]) + rng.normal(0, 1e-3, (ix.n_candidates, 3))
    t = language_share_at_k(q, c, ix, k=5)
    assert t.share_top5.tolist() == [1.0, 1.0]
    assert t.share_pool.tolist() == [0.5, 0.5] and t.ratio.tolist() == [2.0, 2.0]
    res = evaluate_embeddings(ix, q, c)
    assert (same_language_rank(res).same_first > 0.99).all()  # same-language answer always ranked first


def test_language_agnostic_embeddings_have_small_rank_distance():
    rs = synthetic_set(n_ids=20, langs=("aa", "bb", "cc"), n_distractors=30)
    ix = LareqaIndex.from_set(rs)
    rng = np.random.default_rng(1)
    base = {f"q{i}": rng.standard_normal(24) for i in range(20)}
    q = np.stack([base[x] for x in ix.q_qid])
    c = np.stack(
        [
            base["q" + cid.split(":a")[1]] + rng.normal(0, 0.05, 24) if ":a" in cid else rng.standard_normal(24)
            for cid in ix.c_id
        ]
    )
    res = evaluate_embeddings(ix, q, c)
    assert rank_distance_table(res)["mean"].max() <= 2  # the three parallel answers occupy the top 3
    biased = c + np.stack([{"aa": 5.0, "bb": 0, "cc": -5.0}[l] * np.eye(24)[0] for l in ix.c_lang])
    assert rank_distance_table(evaluate_embeddings(ix, q, biased))["mean"].mean() > 2
