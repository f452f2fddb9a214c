"""Pooled (multilingual) mAP over XQuAD-R-sized scores: our fast path vs the peers.

Setting: 13,090 queries (1,190 question ids x 11 languages) against 13,014 candidates, 11 relevant
candidates per query (one per language, shared by the 11 translations of a question), random
L2-normalised embeddings of dimension 384 (the real relevance structure, made-up vectors: the
timing does not depend on what the vectors mean).

Peers:
- LAReQA's scorer: per question, scikit-learn `average_precision_score` over the full pooled
  candidate list. Timed on a subset of queries (default 500) and extrapolated linearly to all
  13,090 (each query costs the same: one score row, one sort).
- pytrec_eval: a full run dict would hold 170 million entries, too big; timed on a subset of
  queries (default 200) with their full candidate lists (run dict built from the score rows
  included in its time, as a user would have to) and extrapolated linearly.
Ours: `relevant_ranks` + `average_precision_from_ranks` on all 13,090 queries, timed in full.
The numbers of all three are checked to agree on the subsets.

    .venv/bin/python benchmarks/bench_map.py [--threads 2] [--sklearn-queries 500] [--pytrec-queries 200]
"""

import argparse, time

import numpy as np
import torch

from hybrid_replication.metrics import average_precision_from_ranks, relevant_ranks, score_chunks


def xquad_like(signal=0.0, seed=0, n_ids=1190, n_langs=11, n_cand=13014, dim=384):
    "Random unit vectors with XQuAD-R's shape and relevance structure; `signal` > 0 pulls each query towards its relevant candidates."
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(n_cand, dim)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    # candidates split into 11 languages; each question id has one relevant candidate per language
    lang_of_cand = np.sort(rng.integers(0, n_langs, n_cand))
    per_lang = [np.flatnonzero(lang_of_cand == l) for l in range(n_langs)]
    rel_of_id = np.stack([rng.choice(c, n_ids, replace=len(c) < n_ids) for c in per_lang], 1)  # [n_ids, 11]
    relevant = [
        np.sort(rel_of_id[i % n_ids]) for i in range(n_ids * n_langs)
    ]  # query i = id i % n_ids in language i // n_ids
    centroid = C[rel_of_id].mean(1)
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    Q = signal * centroid[np.arange(n_ids * n_langs) % n_ids] + rng.normal(size=(n_ids * n_langs, dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    Q = (Q / np.linalg.norm(Q, axis=1, keepdims=True)).astype(np.float32)
    return Q, C, relevant


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sklearn-queries", type=int, default=500)
    ap.add_argument("--pytrec-queries", type=int, default=200)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument(
        "--signal",
        type=float,
        default=0.65,
        help="pull of each query towards its relevant candidates in the realistic set (0.65: pooled mAP near 0.5, like the paper's Mul. numbers)",
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t_ours, cpu = {}, {}
    for name, signal in (("unrelated vectors", 0.0), ("realistic", a.signal)):
        Q, C, relevant = xquad_like(signal)
        n = len(Q)
        t, c = time.perf_counter(), time.process_time()
        ranks = relevant_ranks(Q, C, relevant, chunk_size=a.chunk_size)
        ours_ap = average_precision_from_ranks(ranks, [len(r) for r in relevant])
        t_ours[name] = time.perf_counter() - t
        cpu[name] = time.process_time() - c
        print(
            f"ours (fast path, all {n:,} queries x {len(C):,} candidates, dim {Q.shape[1]}, {len(relevant[0])} relevant each, "
            f"{name}): {t_ours[name]:.2f} s wall, {cpu[name]:.2f} s CPU, mAP {ours_ap.mean():.4f}"
        )
    # the peers below run on the realistic set (their cost does not depend on the scores)

    # the score rows of the peers' subsets, computed the same way (the peers need them too; not timed for either)
    sub = np.random.default_rng(1).choice(n, max(a.sklearn_queries, a.pytrec_queries), replace=False)
    rows = {}
    for s, S in score_chunks(Q[sub], C, a.chunk_size):
        for i, r in enumerate(S.numpy()):
            rows[int(sub[s + i])] = r

    from sklearn.metrics import average_precision_score

    sk_q = sub[: a.sklearn_queries]
    t, c = time.perf_counter(), time.process_time()
    sk = []
    for q in sk_q:
        y = np.zeros(len(C), dtype=bool)
        y[relevant[q]] = True
        sk.append(average_precision_score(y, rows[int(q)]))
    t_sk = (time.perf_counter() - t) * n / len(sk_q)
    cpu["sk"] = (time.process_time() - c) * n / len(sk_q)
    diff_sk = np.abs(np.array(sk) - ours_ap[sk_q]).max()
    print(
        f"scikit-learn average_precision_score per query (LAReQA scorer): {len(sk_q)} queries timed, "
        f"extrapolated to {n:,}: {t_sk:.1f} s; max |AP diff| vs ours {diff_sk:.2e}"
    )

    import pytrec_eval

    pt_q = sub[: a.pytrec_queries]
    t, c = time.perf_counter(), time.process_time()
    ids = [f"c{j}" for j in range(len(C))]
    qrels = {f"q{q}": {ids[j]: 1 for j in relevant[q]} for q in pt_q}
    run = {f"q{q}": dict(zip(ids, rows[int(q)].tolist())) for q in pt_q}
    res = pytrec_eval.RelevanceEvaluator(qrels, {"map"}).evaluate(run)
    t_pt = (time.perf_counter() - t) * n / len(pt_q)
    cpu["pt"] = (time.process_time() - c) * n / len(pt_q)
    # ids 'c<j>' order ties differently from indices, but random float scores have no ties here
    diff_pt = max(abs(res[f"q{q}"]["map"] - ours_ap[q]) for q in pt_q)
    print(
        f"pytrec_eval (run dict + evaluate): {len(pt_q)} queries timed, extrapolated to {n:,}: {t_pt:.1f} s; "
        f"max |AP diff| vs ours {diff_pt:.2e}"
    )

    tr, tu = t_ours["realistic"], t_ours["unrelated vectors"]
    cr, cu = cpu["realistic"], cpu["unrelated vectors"]
    print(
        f"\n| method | wall s, {n:,} queries | CPU s | wall ratio to ours realistic / unrelated | CPU ratio to ours realistic / unrelated |"
    )
    print("|---|---|---|---|---|")
    print(f"| ours, realistic vectors (pooled mAP {ours_ap.mean():.2f}) | {tr:.1f} | {cr:.1f} | 1 | 1 |")
    print(
        f"| ours, unrelated vectors (relevant ranks uniform) | {tu:.1f} | {cu:.1f} | {tu / tr:.2f} | {cu / cr:.2f} |"
    )
    print(
        f"| scikit-learn per query (LAReQA scorer), extrapolated from {len(sk_q)} | {t_sk:.1f} | {cpu['sk']:.1f} | {t_sk / tr:.1f} / {t_sk / tu:.1f} | {cpu['sk'] / cr:.1f} / {cpu['sk'] / cu:.1f} |"
    )
    print(
        f"| pytrec_eval on full run dicts, extrapolated from {len(pt_q)} | {t_pt:.1f} | {cpu['pt']:.1f} | {t_pt / tr:.1f} / {t_pt / tu:.1f} | {cpu['pt'] / cr:.1f} / {cpu['pt'] / cu:.1f} |"
    )
    print(
        "(ratios > 1: slower than ours; ours uses --threads torch threads, the peers one core; the score matrix product is inside our time, and not inside the peers')"
    )
    assert diff_sk < 1e-6 and diff_pt < 1e-6, "the numbers disagree"


if __name__ == "__main__":
    main()
