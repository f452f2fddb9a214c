"""Our metrics against the reference implementations: pytrec_eval (trec_eval itself) and ranx.

Documented differences (checked below, so they cannot drift silently):
- pytrec_eval reports only queries that are in both the qrels and the run; a query of the run
  whose judgements hold no relevant document is reported with 0 on every measure (as ours).
  Judged queries missing from the run are absent from pytrec_eval's output; ours drops them too
  unless `complete=True` (trec_eval -c), which reports them with 0. pytrec_eval has no -c: the
  official MIRACL mean is pytrec_eval's sum divided by the number of judged queries.
- ranx breaks ties differently from trec_eval (not by document id descending), so ranx agrees
  with us only on runs without tied scores; its `map`/`ndcg@k`/`mrr` are compared on tie-free
  runs only (recall and hit rate are covered by pytrec_eval).
"""

import math, random

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings, strategies as st

from hybrid_replication.metrics import (
    evaluate_run,
    mean_measures,
    relevant_ranks,
    score_chunks,
    average_precision_from_ranks,
    reciprocal_rank_from_ranks,
    recall_at_k_from_ranks,
    hit_at_k_from_ranks,
    ndcg_at_k_from_ranks,
)

MEASURES = [
    "map",
    "map_cut_5",
    "ndcg",
    "ndcg_cut_3",
    "ndcg_cut_10",
    "recall_5",
    "recall_100",
    "P_5",
    "recip_rank",
    "success_1",
    "success_10",
]


def random_case(seed, n_q=30, n_docs=40, tie_levels=6, graded=True):
    "Qrels and a run with heavy ties (scores drawn from few values), graded/negative judgements, empty relevance, missing and extra queries."
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n_docs)] + [
        "D7",
        "d07",
        "z",
        "a#1",
        "a#10",
    ]  # ids whose string order differs from numeric order
    qrels, run = {}, {}
    for q in range(n_q):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 12))
        levels = [-1, 0, 0, 1, 2, 3] if graded else [0, 1]
        qrels[qid] = {d: rng.choice(levels) for d in judged}
        if q % 7 == 3:
            qrels[qid] = {d: 0 for d in judged}  # no relevant document
        if q % 9 == 5:
            continue  # judged but missing from the run
        retrieved = rng.sample(docs, rng.randint(1, len(docs)))
        run[qid] = {d: float(rng.randint(0, tie_levels)) / 2 if tie_levels else rng.random() for d in retrieved}
    run["unjudged"] = {"d1": 1.0}  # in the run only: ignored by both
    return qrels, run


def pytrec(qrels, run, measures):
    # pytrec_eval takes trec_eval's 'family.cutoff' names ('ndcg_cut.3') and answers 'ndcg_cut_3'
    ev = pytrec_eval.RelevanceEvaluator(
        qrels, {"{}.{}".format(*m.rsplit("_", 1)) if m[-1].isdigit() else m for m in measures}
    )
    return ev.evaluate(run)


@pytest.mark.parametrize("seed", range(8))
def test_dict_path_matches_pytrec_eval_with_ties(seed):
    qrels, run = random_case(seed)
    ref = pytrec(qrels, run, MEASURES)
    ours = evaluate_run(qrels, run, MEASURES)
    assert set(ours) == set(ref)  # same queries reported (judged and in the run)
    assert any(
        all(r <= 0 for r in qrels[q].values()) for q in ours
    )  # the case includes a query with no relevant document...
    for q in ref:
        for m in MEASURES:
            assert ours[q][m] == pytest.approx(ref[q][m], abs=1e-12), (seed, q, m)
        if all(r <= 0 for r in qrels[q].values()):  # ...which both report with 0
            assert all(ours[q][m] == 0 == ref[q][m] for m in MEASURES)


def test_complete_counts_missing_queries_as_zero_like_trec_eval_c():
    qrels, run = random_case(1)
    missing = [q for q in qrels if q not in run]
    assert missing
    ref = pytrec(qrels, run, ["ndcg_cut_10", "recall_100"])
    ours = evaluate_run(qrels, run, ["ndcg_cut_10", "recall_100"], complete=True)
    assert set(ours) == set(qrels)
    assert all(ours[q] == {"ndcg_cut_10": 0.0, "recall_100": 0.0} for q in missing)
    # trec_eval -c mean = (sum over the queries pytrec_eval reports) / (number of judged queries)
    for m in ["ndcg_cut_10", "recall_100"]:
        assert mean_measures(ours)[m] == pytest.approx(sum(v[m] for v in ref.values()) / len(qrels))


def test_relevance_level_2():
    qrels, run = random_case(3)
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"map", "recall.10", "recip_rank"}, relevance_level=2).evaluate(
        run
    )
    ours = evaluate_run(qrels, run, ["map", "recall_10", "recip_rank"], relevance_level=2)
    for q in ref:
        for m in ["map", "recall_10", "recip_rank"]:
            assert ours[q][m] == pytest.approx(ref[q][m], abs=1e-12)


@settings(
    max_examples=40, deadline=None, derandomize=True
)  # the same examples on every run: CI never draws new ones
@given(st.data())
def test_dict_path_matches_pytrec_eval_property(data):
    n_docs = data.draw(st.integers(1, 15))
    docs = [f"{i}#{data.draw(st.integers(0, 12))}" for i in range(n_docs)]
    docs = list(dict.fromkeys(docs))
    judged = data.draw(st.lists(st.sampled_from(docs), unique=True, max_size=len(docs)))
    qrel = {d: data.draw(st.integers(-1, 3)) for d in judged} or {"none": 0}
    run = {
        d: data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.5]))
        for d in data.draw(st.lists(st.sampled_from(docs), unique=True, min_size=1))
    }
    ref = pytrec({"q": qrel}, {"q": run}, MEASURES)["q"]
    ours = evaluate_run({"q": qrel}, {"q": run}, MEASURES)["q"]
    for m in MEASURES:
        assert ours[m] == pytest.approx(ref[m], abs=1e-12), m


def _dense_case(seed, n_q=40, n_c=300, d=8, integer=True):
    rng = np.random.default_rng(seed)
    if integer:  # small integers: exact scores, many exact ties, duplicated candidates
        C = rng.integers(-2, 3, size=(n_c, d)).astype(np.float32)
        C[n_c // 2 : n_c // 2 + 20] = C[:20]
        Q = rng.integers(-2, 3, size=(n_q, d)).astype(np.float32)
    else:
        C = rng.normal(size=(n_c, d)).astype(np.float32)
        C /= np.linalg.norm(C, axis=1, keepdims=True)
        Q = rng.normal(size=(n_q, d)).astype(np.float32)
        Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    relevant = [np.sort(rng.choice(n_c, size=rng.integers(0, 12), replace=False)) for _ in range(n_q)]
    return Q, C, relevant


def _run_from_scores(Q, C, ids, chunk_size):
    return {
        f"q{s + i}": {ids[j]: v for j, v in enumerate(row)}
        for s, S in score_chunks(Q, C, chunk_size)
        for i, row in enumerate(S.tolist())
    }


@pytest.mark.parametrize(
    "share", [0.0, 1.0]
)  # 0: search every candidate; 1: only those above the lowest relevant score
@pytest.mark.parametrize("seed,integer,chunk", [(0, True, 7), (1, True, 256), (2, False, 16)])
def test_fast_path_matches_dict_path_and_pytrec_eval(seed, integer, chunk, share):
    Q, C, relevant = _dense_case(seed, integer=integer)
    rng = np.random.default_rng(seed)
    # string ids whose order is not the index order (so the tie rule really uses the ids)
    ids = [f"{int(x)}#{int(y)}" for x, y in zip(rng.permutation(len(C)), rng.integers(0, 20, len(C)))]
    assert len(set(ids)) == len(ids)
    qrels = {f"q{i}": ({ids[j]: 1 for j in rel} or {ids[0]: 0}) for i, rel in enumerate(relevant)}
    n_rel = [len(r) for r in relevant]
    ranks = relevant_ranks(Q, C, relevant, chunk_size=chunk, cand_ids=ids, survivor_share=share)
    if integer:
        S = Q @ C.T
        assert any(np.sum(S[i] == S[i][r]) > 1 for i in range(len(Q)) for r in relevant[i])  # ties do occur
    run = _run_from_scores(Q, C, ids, chunk)
    fast = {
        "map": average_precision_from_ranks(ranks, n_rel),
        "map_cut_10": average_precision_from_ranks(ranks, n_rel, k=10),
        "recip_rank": reciprocal_rank_from_ranks(ranks),
        "recall_100": recall_at_k_from_ranks(ranks, n_rel, 100),
        "success_10": hit_at_k_from_ranks(ranks, 10),
        "ndcg_cut_10": ndcg_at_k_from_ranks(ranks, n_rel, 10),
        "ndcg": ndcg_at_k_from_ranks(ranks, n_rel),
    }
    ours = evaluate_run(qrels, run, list(fast))
    ref = pytrec(qrels, run, list(fast))
    for m, vals in fast.items():
        np.testing.assert_allclose(vals, [ours[f"q{i}"][m] for i in range(len(Q))], atol=1e-12, err_msg=m)
        np.testing.assert_allclose(vals, [ref[f"q{i}"][m] for i in range(len(Q))], atol=1e-12, err_msg=m)


def test_fast_path_default_ids_are_indices():
    Q, C, relevant = _dense_case(5)
    ranks = relevant_ranks(Q, C, relevant, chunk_size=9)
    ids = [f"{i:04d}" for i in range(len(C))]  # zero-padded: string order = index order
    assert [r.tolist() for r in ranks] == [r.tolist() for r in relevant_ranks(Q, C, relevant, cand_ids=ids)]
    S = Q @ C.T
    for i, rel in enumerate(relevant):  # brute force: full sort by (score desc, index desc)
        order = sorted(range(len(C)), key=lambda j: (S[i, j], j), reverse=True)
        pos = {j: p + 1 for p, j in enumerate(order)}
        assert ranks[i].tolist() == [pos[j] for j in rel]


def test_ranx_agrees_on_tie_free_runs_and_differs_on_ties():
    ranx = pytest.importorskip("ranx")
    qrels, run = random_case(4, tie_levels=0, graded=False)  # continuous scores: no ties
    qrels = {q: v for q, v in qrels.items() if q in run and any(r > 0 for r in v.values())}
    run = {q: run[q] for q in qrels}
    # three measures only: ranx compiles each with numba on first use, ~10 s of CPU apiece
    res = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ["map", "ndcg@10", "mrr"])
    mine = mean_measures(evaluate_run(qrels, run, ["map", "ndcg_cut_10", "recip_rank"]))
    for a, b in [("map", "map"), ("ndcg@10", "ndcg_cut_10"), ("mrr", "recip_rank")]:
        assert res[a] == pytest.approx(mine[b], abs=1e-9), a
    # with a tie, trec_eval (and we) rank the larger id first; ranx does not
    q, r = {"q": {"a": 1}}, {"q": {"a": 1.0, "b": 1.0}}
    assert evaluate_run(q, r, ["recip_rank"])["q"]["recip_rank"] == 0.5
    assert ranx.evaluate(ranx.Qrels(q), ranx.Run(r), "mrr") == pytest.approx(1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown measure"):
        evaluate_run({}, {}, ["mrr"])
    with pytest.raises(ValueError, match="not a finite number"):
        evaluate_run({"q": {"a": 1}}, {"q": {"a": float("nan")}}, ["map"])
    with pytest.raises(IndexError, match="out of range"):
        relevant_ranks(np.eye(2), np.eye(2), [np.array([2]), np.array([0])])
    with pytest.raises(ValueError, match="n_relevant"):
        average_precision_from_ranks([np.array([1, 2])], 1)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_fast_path_brute_force_property_heavy_ties(data):
    # 2-d vectors with entries in {-1, 0, 1}: almost every score is tied, relevant ones among themselves too
    n_c, n_q = data.draw(st.integers(1, 25)), data.draw(st.integers(1, 6))
    vec = st.lists(st.integers(-1, 1), min_size=2, max_size=2)
    C = np.array(data.draw(st.lists(vec, min_size=n_c, max_size=n_c)), dtype=np.float32)
    Q = np.array(data.draw(st.lists(vec, min_size=n_q, max_size=n_q)), dtype=np.float32)
    relevant = [
        np.array(sorted(data.draw(st.sets(st.integers(0, n_c - 1), max_size=n_c))), dtype=np.int64)
        for _ in range(n_q)
    ]
    chunk = data.draw(st.integers(1, 4))
    ranks = relevant_ranks(Q, C, relevant, chunk_size=chunk, survivor_share=data.draw(st.sampled_from([0.0, 1.0])))
    S = Q @ C.T
    for i, rel in enumerate(relevant):
        order = sorted(range(n_c), key=lambda j: (S[i, j], j), reverse=True)
        pos = {j: p + 1 for p, j in enumerate(order)}
        assert ranks[i].tolist() == [pos[j] for j in rel]
