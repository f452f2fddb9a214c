"LAReQA evaluation: agreement with LAReQA's scikit-learn scorer, the pair settings, macro vs micro, caching, and the command line end to end."

import gzip, json, os
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.metrics import average_precision_score

from hybrid_replication.data import Candidate, DataError, Question, RetrievalSet
from hybrid_replication.embeddings import HashedNgramEncoder, cached_embeddings, candidate_texts
from hybrid_replication.lareqa_eval import LareqaIndex, evaluate_cli, evaluate_embeddings, headline_cis


def synthetic_set(n_ids=12, langs=("aa", "bb", "cc"), n_distractors=3, drop=None, seed=0) -> RetrievalSet:
    "Every id asked in every language (except the (id, lang) in `drop`), one answer sentence per language, distractors."
    rng = np.random.default_rng(seed)
    drop = set(drop or ())
    qs, cs, rel = [], [], {}
    for i in range(n_ids):
        for l in langs:
            if (i, l) in drop:
                continue
            qs.append(Question(f"q{i}", l, f"question {i} in {l}"))
            cid = f"{l}:a{i}"
            cs.append(Candidate(cid, l, f"answer {i} in {l}", f"context {i}"))
            rel.setdefault(f"q{i}", set()).add(cid)
    for l in langs:
        for j in range(n_distractors):
            cs.append(Candidate(f"{l}:d{j}", l, f"distractor {j} in {l}", ""))
    order = rng.permutation(len(cs))
    return RetrievalSet("synthetic", qs, [cs[k] for k in order], rel)


def random_embeddings(rs, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((len(rs.questions), dim)).astype(np.float32), rng.standard_normal(
        (len(rs.candidates), dim)
    ).astype(np.float32)


def norm(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_pool_ap_matches_lareqa_sklearn_scorer():
    rs = synthetic_set()
    q, c = random_embeddings(rs)
    res = evaluate_embeddings(rs, q, c)
    ix = LareqaIndex.from_set(rs)
    S = norm(q) @ norm(c).T
    for i, rel in enumerate(ix.relevant):
        y = np.zeros(ix.n_candidates, bool)
        y[rel] = True
        assert res.pool.ap[i] == pytest.approx(average_precision_score(y, S[i]), abs=1e-9)
    assert res.summary()["multi_map"] == pytest.approx(res.pool.ap.mean())


def test_pair_setting_restricts_the_pool_and_ap_is_reciprocal_rank():
    rs = synthetic_set()
    q, c = random_embeddings(rs, seed=1)
    res = evaluate_embeddings(rs, q, c)
    ix = LareqaIndex.from_set(rs)
    S = norm(q) @ norm(c).T
    for _, row in res.pairs.sample(20, random_state=0).iterrows():
        i = np.flatnonzero((ix.q_qid == row.qid) & (ix.q_lang == row.qlang))[0]
        cand = np.flatnonzero(ix.c_lang == row.clang)
        ans = [k for k in ix.relevant[i] if ix.c_lang[k] == row.clang][0]
        rank = 1 + (S[i, cand] > S[i, ans]).sum()
        assert row.ap == pytest.approx(1 / rank) and row.rr == pytest.approx(1 / rank)
        assert row["r@1"] == float(rank == 1)


def test_perfect_embeddings_score_one_everywhere():
    rs = synthetic_set()
    rng = np.random.default_rng(0)
    base = {f"q{i}": rng.standard_normal(32) for i in range(12)}
    q = np.stack([base[x.qid] for x in rs.questions])
    c = np.stack(
        [
            base["q" + x.cid.split(":a")[1]] if ":a" in x.cid else rng.standard_normal(32) * 0.01
            for x in rs.candidates
        ]
    )
    res = evaluate_embeddings(rs, q, c)
    s = res.summary()
    for k in ("mono_map", "cross_map", "multi_map", "mono_r@1", "cross_r@1", "multi_hit@10"):
        assert s[k] == pytest.approx(1.0)
    assert s["multi_r@10"] == pytest.approx(1.0)  # 3 relevant, all in the top 10


def test_macro_and_micro_differ_when_pairs_differ_in_size():
    # ids 0-5 asked in cc too, 6-11 only in aa and bb: the (aa, cc) pair has half the questions of (aa, bb)
    drop = [(i, "cc") for i in range(6, 12)]
    rs = synthetic_set(drop=drop)
    q, c = random_embeddings(rs, seed=3)
    res = evaluate_embeddings(rs, q, c)
    counts = res.pair_counts()
    assert counts.loc["aa", "bb"] == 12 and counts.loc["aa", "cc"] == 6 and counts.loc["cc", "cc"] == 6
    m = res.pair_matrix("ap").to_numpy()
    off = ~np.eye(3, dtype=bool)
    s = res.summary()
    assert s["cross_map"] == pytest.approx(m[off].mean())
    cross = res.pairs[res.pairs.qlang != res.pairs.clang]
    assert s["cross_map_micro"] == pytest.approx(cross.ap.mean())
    assert s["n_cross_pairs"] == 6 and s["n_mono_pairs"] == 3
    # per query language: cross = mean over the other candidate languages; their mean is the macro over pairs
    pl = res.per_language()
    assert pl.loc["aa", "cross_map"] == pytest.approx(m[0, 1:].mean())
    assert pl.cross_map.mean() == pytest.approx(s["cross_map"])
    assert pl.mono_map.mean() == pytest.approx(s["mono_map"])


@settings(max_examples=25, deadline=None)
@given(n_ids=st.integers(2, 8), n_langs=st.integers(1, 4), n_dis=st.integers(0, 5), seed=st.integers(0, 10_000))
def test_properties_on_random_sets(n_ids, n_langs, n_dis, seed):
    langs = tuple("abcd"[:n_langs])
    rs = synthetic_set(n_ids, langs, n_dis, seed=seed)
    q, c = random_embeddings(rs, dim=4, seed=seed)
    res = evaluate_embeddings(rs, q, c)
    s = res.summary()
    for k, v in s.items():
        if k.startswith(("mono", "cross", "multi")) and not np.isnan(v):
            assert 0 <= v <= 1, k
    assert len(res.pool) == len(rs.questions)
    assert len(res.pairs) == len(rs.questions) * n_langs  # every id is asked and answered in every language
    assert all(len(r) == n_langs for r in res.pool_ranks)
    # with one relevant per language the pair AP is the reciprocal rank
    np.testing.assert_allclose(res.pairs.ap, res.pairs.rr)
    # recall@10 is at most 10 / n_relevant, hit@10 is at least recall@10
    assert (res.pool["r@10"] <= np.minimum(1, 10 / res.pool.n_rel) + 1e-12).all()
    assert (res.pool["hit@10"] >= res.pool["r@10"] - 1e-12).all()


def test_bad_relevance_is_a_data_error_naming_the_question():
    rs = synthetic_set()
    rs.relevant["q3"] = {"zz:nowhere"}
    with pytest.raises(DataError, match="q3"):
        LareqaIndex.from_set(rs)
    rs = synthetic_set()
    rs.relevant.pop("q2")
    with pytest.raises(DataError, match="q2"):
        LareqaIndex.from_set(rs)


def test_embedding_shape_mismatch_is_refused():
    rs = synthetic_set()
    q, c = random_embeddings(rs)
    with pytest.raises(ValueError, match="do not match"):
        evaluate_embeddings(rs, q[:-1], c)


class CountingEncoder(HashedNgramEncoder):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def encode(self, texts, kind="query", **kw):
        self.calls.append((kind, len(texts)))
        return super().encode(texts, kind)


def test_cache_resumes_per_language_and_keys_on_options(tmp_path):
    rs = synthetic_set()
    enc = CountingEncoder(dim=64)
    q1, c1 = cached_embeddings(enc, rs, "m", cache_dir=tmp_path, show_progress=False)
    assert len(enc.calls) == 6  # 3 languages x (questions, candidates)
    files = sorted(tmp_path.rglob("*.npy"))
    assert len(files) == 6
    files[0].unlink()  # as if the run had been killed before that language was written
    enc.calls.clear()
    q2, c2 = cached_embeddings(enc, rs, "m", cache_dir=tmp_path, show_progress=False)
    assert len(enc.calls) == 1
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(c1, c2)
    enc.calls.clear()  # a different candidate text (with context) is a different cache entry for the candidates only
    cached_embeddings(enc, rs, "m", with_context=True, cache_dir=tmp_path, show_progress=False)
    assert [k for k, _ in enc.calls] == ["passage"] * 3


def test_candidate_texts_with_context_keep_the_sentence_first():
    rs = synthetic_set(n_ids=2, langs=("aa",), n_distractors=0)
    t = candidate_texts(rs, with_context=True)
    assert all(x.startswith(cand.sentence) and cand.context in x for x, cand in zip(t, rs.candidates))
    assert candidate_texts(rs) == [cand.sentence for cand in rs.candidates]


def test_headline_cis_bracket_the_value_and_are_seeded():
    rs = synthetic_set(n_ids=30)
    q, c = random_embeddings(rs, seed=4)
    res = evaluate_embeddings(rs, q, c)
    a, b = headline_cis(res, n_boot=200, seed=1), headline_cis(res, n_boot=200, seed=1)
    assert a == b
    for k, v in a.items():
        assert v["low"] <= v["value"] <= v["high"], k
    assert a["multi_map"]["value"] == pytest.approx(res.summary()["multi_map"])


def test_tiny_encoder_goes_through_the_encoder_path():
    torch = pytest.importorskip("torch")
    from hybrid_replication.encoder import tiny_encoder
    from hybrid_replication.embeddings import encode_texts

    enc = tiny_encoder()
    e = encode_texts(enc, ["a question", "another one"], "query", batch_size=2, show_progress=False)
    assert e.shape[0] == 2 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)


def test_evaluate_cli_end_to_end_on_demo(tmp_path, capsys):
    out = tmp_path / "res" / "demo.json"
    args = [
        "--model",
        "hashed-ngrams",
        "--dataset",
        "demo",
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "plots"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--n-boot",
        "50",
    ]
    assert evaluate_cli(args) == 0
    doc = json.loads(out.read_text())
    assert {
        "summary",
        "per_language",
        "pairs",
        "rank_distance",
        "same_language_rank",
        "language_share_at_10",
        "ci",
        "provenance",
    } <= set(doc)
    assert doc["provenance"]["config"]["candidate_text"] == "sentence"
    assert doc["summary"]["n_mono_pairs"] == len(doc["languages"])
    assert doc["rank_distance"]["macro"] == pytest.approx(
        np.mean(list(doc["rank_distance"]["per_language"].values()))
    )
    pq = pd.read_csv(out.with_suffix(".per_question.csv.gz"))
    assert len(pq) == doc["summary"]["n_questions"]
    assert pq.ap.mean() == pytest.approx(doc["summary"]["multi_map"])
    assert len(list((tmp_path / "plots").glob("*.png"))) == 4
    assert "Mo. mAP" in capsys.readouterr().out
    # the second run reads every embedding from the cache and gives the same numbers
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy")}
    pq_bytes = out.with_suffix(".per_question.csv.gz").read_bytes()
    assert evaluate_cli(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy")} == mtimes
    assert json.loads(out.read_text())["summary"] == doc["summary"]
    assert (
        out.with_suffix(".per_question.csv.gz").read_bytes() == pq_bytes
    )  # byte-identical: no temp name or time in the gzip header


def test_cli_dispatches_evaluate(tmp_path):
    from hybrid_replication.cli import main

    out = tmp_path / "d.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                "hashed-ngrams",
                "--dataset",
                "demo",
                "--langs",
                "en,de",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "c"),
                "--n-boot",
                "20",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["languages"] == ["de", "en"]


def test_ties_are_broken_by_candidate_id_descending_not_position():
    # two candidates with identical embeddings; the relevant one comes second in the file but has the smaller id
    qs = [Question("q0", "aa", "question")]
    cs = [Candidate("aa:b", "aa", "same text", ""), Candidate("aa:a", "aa", "same text", "")]
    rs = RetrievalSet("ties", qs, cs, {"q0": {"aa:a"}})
    q = np.array([[1.0, 0.0]], np.float32)
    c = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    res = evaluate_embeddings(rs, q, c)
    # trec_eval: equal scores ranked by docid descending, so "aa:b" comes first and the relevant "aa:a" second
    # (by position, the later candidate "aa:a" would be ranked first and score 1.0)
    assert res.pool.ap.tolist() == [0.5] and res.pool_ranks[0].tolist() == [2]
    assert res.pairs.ap.tolist() == [0.5]
    pytrec_eval = pytest.importorskip("pytrec_eval")
    ev = pytrec_eval.RelevanceEvaluator({"q0": {"aa:a": 1}}, {"map"})
    assert ev.evaluate({"q0": {"aa:b": 1.0, "aa:a": 1.0}})["q0"]["map"] == pytest.approx(0.5)
    # the same set with the candidates swapped in the file gives the same result
    rs2 = RetrievalSet("ties", qs, cs[::-1], {"q0": {"aa:a"}})
    assert evaluate_embeddings(rs2, q, c).pool.ap.tolist() == [0.5]


def test_pair_ties_use_the_ids_of_that_languages_candidates():
    # in a pair block the candidates are a slice of the pool: the ids must be sliced with them
    qs = [Question("q0", "aa", "question"), Question("q0", "bb", "frage")]
    cs = [
        Candidate("bb:z", "bb", "x", ""),
        Candidate("aa:a", "aa", "x", ""),
        Candidate("aa:y", "aa", "x", ""),
        Candidate("bb:b", "bb", "x", ""),
    ]
    rs = RetrievalSet("ties2", qs, cs, {"q0": {"aa:y", "bb:b"}})
    q = np.ones((2, 2), np.float32)
    c = np.ones((4, 2), np.float32)  # everything ties
    res = evaluate_embeddings(rs, q, c)
    ap = res.pairs.set_index(["qlang", "clang"]).ap
    assert ap[("aa", "aa")] == 1.0 and ap[("bb", "aa")] == 1.0  # "aa:y" > "aa:a"
    assert ap[("aa", "bb")] == 0.5 and ap[("bb", "bb")] == 0.5  # "bb:z" > "bb:b"
    # pool order by id descending: bb:z, bb:b, aa:y, aa:a -> relevant at ranks 2 and 3
    assert [sorted(r.tolist()) for r in res.pool_ranks] == [[2, 3], [2, 3]]


def test_cache_keys_on_the_weights_not_only_the_name(tmp_path):
    pytest.importorskip("torch")
    from hybrid_replication.encoder import tiny_encoder
    from hybrid_replication.lareqa_eval import evaluate_lareqa

    rs = synthetic_set(n_ids=3, langs=("aa", "bb"), n_distractors=1)
    a, b = tiny_encoder(seed=0), tiny_encoder(seed=1)
    b.name = a.name  # like a fine-tuned model and its base: one name, other weights
    qa, ca = cached_embeddings(a, rs, a.name, cache_dir=tmp_path, show_progress=False)
    qb, cb = cached_embeddings(b, rs, b.name, cache_dir=tmp_path, show_progress=False)
    assert not np.allclose(qa, qb) and not np.allclose(ca, cb)
    assert len(list(tmp_path.rglob("*.npy"))) == 8  # 2 encoders x 2 languages x (questions, candidates)
    # the same weights again read the cache: same embeddings, no new file
    qa2, _ = cached_embeddings(tiny_encoder(seed=0), rs, a.name, cache_dir=tmp_path, show_progress=False)
    np.testing.assert_array_equal(qa, qa2)
    assert len(list(tmp_path.rglob("*.npy"))) == 8
    ra = evaluate_lareqa(a, rs, cache_dir=tmp_path, show_progress=False)
    rb = evaluate_lareqa(b, rs, cache_dir=tmp_path, show_progress=False)
    np.testing.assert_allclose(ra.pool.ap, evaluate_embeddings(rs, qa, ca).pool.ap)
    np.testing.assert_allclose(rb.pool.ap, evaluate_embeddings(rs, qb, cb).pool.ap)


def test_encoder_with_weights_but_no_fingerprint_warns_and_keeps_the_old_key(tmp_path):
    class Duck(HashedNgramEncoder):
        def state_dict(self):
            return {}

    rs = synthetic_set(n_ids=2, langs=("aa",), n_distractors=0)
    with pytest.warns(UserWarning, match="no fingerprint"):
        cached_embeddings(Duck(dim=32), rs, "m", cache_dir=tmp_path, show_progress=False)
    names = sorted(p.name for p in tmp_path.rglob("*.npy"))
    cached_embeddings(HashedNgramEncoder(dim=32), rs, "m", cache_dir=tmp_path, show_progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*.npy")) == names  # same name and options: same entries


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_rows"])
def test_corrupt_cache_file_is_named_and_encoded_again(tmp_path, damage):
    rs = synthetic_set(n_ids=4, langs=("aa", "bb"), n_distractors=1)
    enc = CountingEncoder(dim=64)
    q1, c1 = cached_embeddings(enc, rs, "m", cache_dir=tmp_path, show_progress=False)
    f = sorted(tmp_path.rglob("passage-*.npy"))[0]
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:-7])
    elif damage == "garbage":
        f.write_bytes(b"not a numpy file")
    else:
        np.save(f, np.zeros((1, 64), np.float32))
    enc.calls.clear()
    with pytest.warns(UserWarning, match=f.name):
        q2, c2 = cached_embeddings(enc, rs, "m", cache_dir=tmp_path, show_progress=False)
    assert enc.calls == [("passage", 5)]
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(q1, q2)
