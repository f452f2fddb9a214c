"""Training pairs and the loaders behind them: properties on generated sets, and facts of the real data.

The real-data tests need the data folder (`HYBRID_DATA`, set by the Makefile when ../shared/data exists)."""

import collections, json, os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from hybrid_replication.data import (
    DataError,
    Candidate,
    Question,
    RetrievalSet,
    TABLE10,
    lang_code,
    load_lareqa,
    read_lareqa_file,
    table10_check,
    dataset_stats,
    _ISO3_TO_1,
    _ISO3_ONLY,
)
from hybrid_replication.pairs import (
    lareqa_pairs,
    afriqa_pairs,
    afriqa_inventory,
    mintaka_pairs,
    ntrex_pairs,
    ntrex_languages,
)

DATA = os.environ.get("HYBRID_DATA")
real = pytest.mark.skipif(
    not DATA or not Path(DATA, "xquad-r").is_dir(), reason="needs the real data (HYBRID_DATA)"
)


# ---------------------------------------------------------------- language codes


@given(st.sampled_from(sorted(_ISO3_TO_1) + sorted(_ISO3_ONLY)), st.sampled_from(["", "-Latn", "-US", "_CN"]))
def test_lang_code_is_idempotent_and_drops_subtags(code, tag):
    c = lang_code(code + tag)
    assert lang_code(c) == c == lang_code(code.upper())
    assert len(c) == 2 or c in _ISO3_ONLY


@given(st.text(alphabet="qjxz", min_size=2, max_size=3))
def test_unknown_codes_raise(code):
    if code in _ISO3_TO_1 or code in _ISO3_ONLY or code in set(_ISO3_TO_1.values()):
        return
    with pytest.raises(DataError, match="unknown language code"):
        lang_code(code)


# ---------------------------------------------------------------- LAReQA pairs on generated parallel sets


@st.composite
def parallel_sets(draw):
    "A random parallel set: n paragraphs of 1-4 sentences, questions in a random subset of languages."
    langs = draw(st.lists(st.sampled_from(["en", "de", "zh", "ar", "sw"]), min_size=1, max_size=4, unique=True))
    qs, cands, rel = [], [], {}
    n_par = draw(st.integers(1, 4))
    for p in range(n_par):
        n_sent = draw(st.integers(1, 4))
        for l in langs:
            ctx = " ".join(f"{l}-p{p}-s{s}." for s in range(n_sent))
            cands += [Candidate(f"{l}:0:{p}:{s}", l, f"{l}-p{p}-s{s}.", ctx) for s in range(n_sent)]
        for qi in range(draw(st.integers(0, 2))):
            qid = f"q{p}.{qi}"
            ans = draw(st.integers(0, n_sent - 1))
            q_langs = draw(st.lists(st.sampled_from(langs), min_size=1, unique=True))
            qs += [Question(qid, l, f"{l} question {qid}?") for l in q_langs]
            a_langs = draw(st.lists(st.sampled_from(langs), min_size=1, unique=True))
            rel[qid] = {f"{l}:0:{p}:{ans}" for l in a_langs}
    return RetrievalSet("gen", qs, cands, rel)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parallel_sets(), st.integers(0, 5), st.booleans())
def test_lareqa_pairs_properties(rs, k, with_context):
    pairs = lareqa_pairs(rs, with_context=with_context, max_hard_negatives=k)
    cands = {c.cid: c for c in rs.candidates}
    qlangs = collections.defaultdict(set)
    for q in rs.questions:
        qlangs[q.qid].add(q.lang)
    # every (query language x answer language) combination exactly once
    got = collections.Counter((p.qid, p.query_lang, p.passage_lang) for p in pairs)
    want = {(qid, x, cands[c].lang) for qid, cs in rs.relevant.items() for c in cs for x in qlangs[qid]}
    assert set(got) == want and set(got.values()) <= {1}
    for p in pairs:
        answer = next(cands[c] for c in sorted(rs.relevant[p.qid]) if cands[c].lang == p.passage_lang)
        assert p.passage.split("\n")[0] == answer.sentence
        assert (p.passage == answer.sentence) != with_context
        assert len(p.hard_negatives) <= k and p.passage not in p.hard_negatives
        assert all(n.split("\n")[0].startswith(f"{p.passage_lang}-p") for n in p.hard_negatives)  # same language
        para = answer.cid.split(":")[2]
        assert all(
            n.split("\n")[0].startswith(f"{p.passage_lang}-p{para}-") for n in p.hard_negatives
        )  # same paragraph
        assert p.is_mono == (p.query_lang == p.passage_lang)


def test_lareqa_pairs_filters_languages():
    rs = RetrievalSet(
        "t",
        [Question("q", "en", "Q?"), Question("q", "de", "F?")],
        [
            Candidate("en:0:0:0", "en", "A.", "A. B."),
            Candidate("en:0:0:1", "en", "B.", "A. B."),
            Candidate("de:0:0:0", "de", "A-de.", "A-de. B-de."),
        ],
        {"q": {"en:0:0:0", "de:0:0:0"}},
    )
    ps = lareqa_pairs(rs, query_langs=["de"], passage_langs=["eng"])
    assert [(p.query, p.passage, p.hard_negatives) for p in ps] == [("F?", "A.", ("B.",))]
    bad = RetrievalSet("t", rs.questions, rs.candidates, {"q": {"fr:0:0:0"}})
    with pytest.raises(DataError, match="not in the pool"):
        lareqa_pairs(bad)


# ---------------------------------------------------------------- real data


@real
@pytest.mark.parametrize("name", ["xquad-r", "mlqa-r"])
def test_table10_counts(name):
    rs = load_lareqa(name)
    t = table10_check(rs)
    assert t.match.all(), t
    assert len({c.cid for c in rs.candidates}) == len(rs.candidates)


@real
def test_candidate_ids_are_stable_and_point_at_the_span():
    a, b = load_lareqa("xquad-r", langs=["tr"]), load_lareqa("xquad-r", langs=["tr"])
    assert [c.cid for c in a.candidates] == [c.cid for c in b.candidates]
    doc = json.loads(Path(DATA, "xquad-r", "tr.json").read_text(encoding="utf-8"))
    by_id = {c.cid: c for c in a.candidates}
    for ai, art in enumerate(doc["data"]):
        for pi, para in enumerate(art["paragraphs"]):
            for si, (s, e) in enumerate(para["sentence_breaks"]):
                assert by_id[f"tr:{ai}:{pi}:{si}"].sentence == para["context"][s:e].strip()


@real
def test_every_real_answer_is_in_its_own_language_and_paragraph():
    rs = load_lareqa("mlqa-r")
    cands = {c.cid: c for c in rs.candidates}
    langs = collections.defaultdict(set)
    for q in rs.questions:
        langs[q.qid].add(q.lang)
    for qid, cs in rs.relevant.items():
        assert {cands[c].lang for c in cs} == langs[qid]  # one answer sentence per language of the question
        assert len(cs) == len(langs[qid])


@real
def test_mlqa_pairs_counts():
    rs = load_lareqa("mlqa-r")
    ps = lareqa_pairs(rs)
    per_id = collections.Counter(q.qid for q in rs.questions)
    assert len(ps) == sum(n * n for n in per_id.values())
    assert sum(p.is_mono for p in ps) == len(rs.questions)


@real
def test_afriqa_real_files():
    inv = afriqa_inventory()
    assert int(inv.null_or_empty_context.sum()) == 156
    missing = sorted(f"{l}-{s}" for l, s in inv.index[inv.passages.isna()])
    assert missing == ["swa-dev", "swa-train", "wol-dev", "wol-test", "wol-train", "yor-dev"]
    with pytest.warns(UserWarning):
        ps = afriqa_pairs("test")
    assert len(ps) == 2 * int(inv.xs("test", level="split").usable.sum())
    assert {p.query_lang for p in ps} >= {"yo", "ha", "ig", "rw", "sw", "tw", "zu", "bem", "fon", "en", "fr"}


@real
def test_mintaka_and_ntrex_real_files():
    ps = mintaka_pairs(langs=["ja", "pt"])
    assert len(ps) == 4000 and {p.qid for p in ps[:2]} == {ps[0].qid}
    files = ntrex_languages()
    assert {"en", "de", "ar", "zh", "sw", "yo", "ha", "ig", "rw", "zu", "wo", "el", "vi", "th", "tr"} <= set(files)
    ps = ntrex_pairs(["el", "vi"])
    assert len(ps) == 2 * 1997 and all(p.query and p.passage and "\r" not in p.passage for p in ps)


def _fake_ntrex(root: Path, with_document_ids: bool) -> Path:
    "A two-language, two-line NTREX-128 layout."
    folder = root / "ntrex128" / "NTREX-128"
    folder.mkdir(parents=True)
    (folder / "newstest2019-src.eng.txt").write_text("One.\nTwo.\n", encoding="utf-8")
    (folder / "newstest2019-ref.deu.txt").write_text("Eins.\nZwei.\n", encoding="utf-8")
    if with_document_ids:
        (root / "ntrex128" / "DOCUMENT_IDS.tsv").write_text("doc1\ndoc1\n", encoding="utf-8")
    return root


def test_ntrex_without_document_ids_names_the_file(tmp_path):
    from hybrid_replication.pairs import ntrex_inventory

    ok = _fake_ntrex(tmp_path / "ok", with_document_ids=True)
    assert (
        len(ntrex_pairs(["en", "de"], data_dir=ok)) == 4
        and len(ntrex_pairs(["en", "de"], data_dir=ok, level="document")) == 2
    )
    bad = _fake_ntrex(tmp_path / "bad", with_document_ids=False)
    for call in (lambda: ntrex_pairs(["en", "de"], data_dir=bad), lambda: ntrex_inventory(data_dir=bad)):
        with pytest.raises(DataError, match="DOCUMENT_IDS.tsv") as e:
            call()
        assert "HYBRID_DATA" in str(e.value) and e.value.field == "file"
