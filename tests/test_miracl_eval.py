"""MIRACL evaluation end to end on the REAL Yoruba dev topics and qrels (119 queries) with a small
made-up corpus in the real format, checked against pytrec_eval on the same run (trec_eval -c means)."""

import json, os, shutil
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval

from hybrid_replication.data import DataError
from hybrid_replication.miracl_data import load_qrels, load_topics
from hybrid_replication.miracl_eval import HashedBowEncoder, encode_corpus_cached, evaluate_miracl

DATA = Path(os.environ.get("HYBRID_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(
    not (DATA / "miracl-topics-qrels").is_dir(), reason="needs the shared MIRACL topics/qrels"
)


def make_corpus(seed=0, n_distractors=400, drop_relevant_every=5):
    "Every judged docid (relevant: words of its query; judged non-relevant: one query word) plus distractors; some relevant passages left out, so recall < 1."
    rng = np.random.default_rng(seed)
    topics, qrels = load_topics("yo", "dev", DATA), load_qrels("yo", "dev", DATA)
    filler = [f"f{i}" for i in range(300)]
    corpus = {}
    for n, (q, judged) in enumerate(qrels.items()):
        words = topics[q].split()
        for d, rel in judged.items():
            if rel > 0 and n % drop_relevant_every == 0:
                continue
            text = " ".join(rng.choice(words, 5)) if rel > 0 else " ".join(rng.choice(words[:2], 1))
            corpus[d] = dict(title=f"T{d.split('#')[0]}", text=text + " " + " ".join(rng.choice(filler, 6)))
    for i in range(n_distractors):
        corpus[f"{9000000 + i}#{i % 7}"] = dict(title="", text=" ".join(rng.choice(filler, 8)))
    return [dict(docid=d, **v) for d, v in corpus.items()]


def pytrec_c(qrels, run):
    "trec_eval -c -m ndcg_cut.10 -m recall.100 via pytrec_eval: per-query values and the -c means."
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    return ev, {m: sum(v[m] for v in ev.values()) / len(qrels) for m in ("ndcg_cut_10", "recall_100")}


def test_end_to_end_matches_pytrec_eval(tmp_path):
    corpus = make_corpus()
    res = evaluate_miracl(
        HashedBowEncoder(256), "yo", corpus=corpus, data_dir=DATA, keep_run=True, show_progress=False
    )
    qrels = load_qrels("yo", "dev", DATA)
    assert res["n_queries"] == len(qrels) == 119
    assert all(len(v) == 100 for v in res["run"].values())  # the top 100 per query
    ref, ref_mean = pytrec_c(qrels, res["run"])
    for q, v in ref.items():
        assert res["per_query"][q]["ndcg_cut_10"] == pytest.approx(v["ndcg_cut_10"], abs=1e-12)
        assert res["per_query"][q]["recall_100"] == pytest.approx(v["recall_100"], abs=1e-12)
    for m, v in ref_mean.items():
        assert res["scores"][m] == pytest.approx(v, abs=1e-12)
    # the corpus leaves out some relevant passages: recall is below 1 but most are found
    assert 0.5 < res["scores"]["recall_100"] < 1 and 0.2 < res["scores"]["ndcg_cut_10"] < 1
    json.dumps(res)  # a results dict is JSON-serialisable as it is (provenance included)
    assert res["provenance"]["config"]["lang"] == "yo"


def test_jsonl_path_and_missing_topic_count_as_zero(tmp_path):
    corpus = make_corpus(1)
    path = tmp_path / "yo.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in corpus), encoding="utf-8")
    # a data folder whose topics file lacks one judged query: under -c that query scores 0
    d = tmp_path / "data" / "miracl-topics-qrels"
    d.mkdir(parents=True)
    shutil.copy(DATA / "miracl-topics-qrels" / "qrels.miracl-v1.0-yo-dev.tsv", d)
    lines = (
        (DATA / "miracl-topics-qrels" / "topics.miracl-v1.0-yo-dev.tsv")
        .read_text(encoding="utf-8")
        .splitlines(keepends=True)
    )
    (d / "topics.miracl-v1.0-yo-dev.tsv").write_text("".join(lines[1:]), encoding="utf-8")
    dropped = lines[0].split("\t")[0]
    res = evaluate_miracl(
        HashedBowEncoder(256), "yo", corpus=path, data_dir=tmp_path / "data", keep_run=True, show_progress=False
    )
    full = evaluate_miracl(HashedBowEncoder(256), "yo", corpus=corpus, data_dir=DATA, show_progress=False)
    assert res["n_judged_without_topic"] == 1 and dropped not in res["run"]
    assert res["per_query"][dropped] == {"ndcg_cut_10": 0.0, "recall_100": 0.0}
    ref, ref_mean = pytrec_c(load_qrels("yo", "dev", DATA), res["run"])
    assert res["scores"]["ndcg_cut_10"] == pytest.approx(ref_mean["ndcg_cut_10"], abs=1e-12)
    # the same corpus read from JSON lines gives the same per-query values for the other queries
    assert all(res["per_query"][q] == pytest.approx(full["per_query"][q]) for q in res["run"])


def test_cached_and_resumed_run_gives_the_same_numbers(tmp_path):
    corpus = make_corpus(2, n_distractors=100)

    class Dying(HashedBowEncoder):
        calls = 0

        def encode_corpus(self, c, batch_size=32, **kw):
            Dying.calls += 1
            if Dying.calls == 3:
                raise RuntimeError("killed")
            return super().encode_corpus(c, batch_size)

    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        evaluate_miracl(
            Dying(256), "yo", corpus=corpus, data_dir=DATA, cache_dir=cache, chunk_size=300, show_progress=False
        )
    man = json.loads((cache / "manifest.json").read_text())
    assert man["done"] == [0, 1] and man["dim"] == 256
    Dying.calls = 10  # no longer dies
    resumed = evaluate_miracl(
        Dying(256), "yo", corpus=corpus, data_dir=DATA, cache_dir=cache, chunk_size=300, show_progress=False
    )
    n_chunks = -(-len(corpus) // 300)
    assert Dying.calls == 10 + n_chunks - 2  # only the missing chunks were encoded
    fresh = evaluate_miracl(HashedBowEncoder(256), "yo", corpus=corpus, data_dir=DATA, show_progress=False)
    assert resumed["scores"] == fresh["scores"]
    # another encoder name or corpus does not reuse the cache
    other = HashedBowEncoder(128)
    emb = encode_corpus_cached(
        other, [r["docid"] for r in corpus], corpus, cache, chunk_size=300, show_progress=False
    )
    assert emb.shape == (len(corpus), 128)


@pytest.mark.parametrize("kind,kw", [("ivf", dict(nlist=8, nprobe=8)), ("hnsw", {})])
def test_approximate_indexes(kind, kw):
    corpus = make_corpus(3, n_distractors=200)
    flat = evaluate_miracl(HashedBowEncoder(128), "yo", corpus=corpus, data_dir=DATA, show_progress=False)
    approx = evaluate_miracl(
        HashedBowEncoder(128), "yo", corpus=corpus, data_dir=DATA, index=kind, show_progress=False, **kw
    )
    assert approx["index"] == kind
    assert approx["scores"]["recall_100"] == pytest.approx(flat["scores"]["recall_100"], abs=0.05)


def test_no_corpus_offline_fails_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no corpus in a user cache either
    with pytest.raises(DataError, match="MIRACL corpus"):
        evaluate_miracl(HashedBowEncoder(8), "yo", data_dir=DATA, show_progress=False)


def test_bad_corpus_records_are_named():
    with pytest.raises(DataError, match="item 1.*'text'"):
        evaluate_miracl(
            HashedBowEncoder(8),
            "yo",
            corpus=[dict(docid="1#0", text="a"), dict(docid="2#0")],
            data_dir=DATA,
            show_progress=False,
        )
    with pytest.raises(DataError, match="duplicate docid '1#0'"):
        evaluate_miracl(
            HashedBowEncoder(8),
            "yo",
            corpus=[dict(docid="1#0", text="a"), dict(docid="1#0", text="b")],
            data_dir=DATA,
            show_progress=False,
        )


def test_cache_keys_on_the_encoders_weights_and_records_its_name(tmp_path):
    pytest.importorskip("torch")
    from hybrid_replication.encoder import tiny_encoder
    from hybrid_replication.miracl_eval import _encoder_key

    corpus = make_corpus(0, n_distractors=20)
    ids = [r["docid"] for r in corpus]
    a, b = tiny_encoder(seed=0), tiny_encoder(seed=1)
    b.name = a.name  # a fine-tuned model keeps its base model's name
    assert _encoder_key(a) != _encoder_key(b)
    c = tiny_encoder(seed=0, query_prefix="query: ")  # same weights, another prefix: another key
    assert _encoder_key(c) != _encoder_key(a)
    cache = tmp_path / "cache"
    ea = np.array(encode_corpus_cached(a, ids, corpus, cache, chunk_size=64, show_progress=False))
    eb = np.array(encode_corpus_cached(b, ids, corpus, cache, chunk_size=64, show_progress=False))
    assert not np.allclose(ea, eb)  # b's weights were used, not a's cached rows
    np.testing.assert_allclose(eb, np.asarray(b.encode_corpus(corpus, batch_size=64), dtype=np.float32), atol=1e-5)
    assert json.loads((cache / "manifest.json").read_text())["encoder"] == _encoder_key(b)
    # duck-typed encoders without a fingerprint: class and name
    assert _encoder_key(HashedBowEncoder(64)) == "HashedBowEncoder:hashed-bow-64"
    res = evaluate_miracl(a, "yo", corpus=corpus, data_dir=DATA, show_progress=False)
    assert res["provenance"]["config"]["encoder"] == a.name
    assert res["provenance"]["config"]["encoder_key"] == _encoder_key(a)
