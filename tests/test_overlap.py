"Overlap audit: normalisation properties, LSH against brute force, counting, the audit -> outcome rule; the shipped demo set's format."

import json, os, random
from importlib.resources import files
from itertools import product

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from hybrid_replication.overlap import (
    normalize_text,
    normalize_texts,
    shingle_hashes,
    jaccard,
    find_duplicates,
    overlap_counts,
    audit_overlap,
    overlap_outcome,
    TextIndex,
    lareqa_fields,
)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_normalize_is_idempotent(s):
    n = normalize_text(s)
    assert normalize_text(n) == n
    assert n == n.strip() and "  " not in n


@settings(max_examples=50, deadline=None)
@given(st.lists(texts, max_size=8))
def test_batch_normalisation_equals_single(xs):
    assert normalize_texts(xs) == [normalize_text(x) for x in xs]


def test_normalisation_examples():
    assert normalize_text("Super_Bowl_50") == normalize_text("Super Bowl 50") == "super bowl 50"
    assert normalize_text("STRASSE") == normalize_text("Straße")  # casefold
    assert normalize_text("ﬁve") == "five"  # NFKC ligature
    assert normalize_text("हिन्दी।") == "हिन्दी"  # virama kept, danda removed


def _brute(train, evals, threshold, n=5):
    "Every (train, eval) pair of distinct normalised texts at Jaccard >= threshold, computed directly from shingle sets."
    ut, ue = list(dict.fromkeys(normalize_texts(train))), list(dict.fromkeys(normalize_texts(evals)))

    def sets(xs):
        h, off = shingle_hashes(xs, n, normalized=True)
        return [set(h[off[i] : off[i + 1]].tolist()) for i in range(len(xs))]

    st_, se = sets(ut), sets(ue)
    out = set()
    for i, j in product(range(len(ut)), range(len(ue))):
        if not ut[i] or not ue[j]:
            continue
        a, b = st_[i], se[j]
        if ut[i] == ue[j] or len(a & b) / len(a | b) >= threshold:
            out.add((ut[i], ue[j]))
    return out


def _mutate(s, rng, k):
    s = list(s)
    for _ in range(k):
        s[rng.randrange(len(s))] = rng.choice("abcdefghij ")
    return "".join(s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lsh_finds_what_brute_force_finds(seed):
    rng = random.Random(seed)
    words = "the a river moon bread volcano ash queen lens light tower ship coal fire snow rain cloud sea land air".split()
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(15, 30))) for _ in range(120)]
    train = base[:60] + [_mutate(s, rng, rng.randint(0, 2)) for s in base[60:90]]
    evals = base[30:60] + [_mutate(s, rng, rng.randint(0, 6)) for s in base[60:120]]  # Jaccard about 1 down to 0.6
    for threshold in (0.8, 0.6):
        got = find_duplicates(train, evals, threshold=threshold)
        got = {(normalize_text(a), normalize_text(b)) for a, b in zip(got.train_text, got.eval_text)}
        want = _brute(train, evals, threshold)
        assert sum(a != b for a, b in want) >= 5  # the case is not only exact copies
        assert got <= want  # every reported pair is real (verified exactly)
        assert len(want - got) <= max(1, len(want) // 50), (
            threshold,
            want - got,
        )  # LSH recall near 1 at these thresholds


def test_jaccard_and_empty():
    h, off = shingle_hashes(["abcdefg", "abcdefg", ""])
    a, b, e = (h[off[i] : off[i + 1]] for i in range(3))
    assert jaccard(a, b) == 1.0 and jaccard(e, e) == 0.0 and len(e) == 0
    assert find_duplicates(["", "   "], ["", "?"]).empty  # empty texts are never duplicates


def test_counts_include_repeats_and_short():
    train = ["What did early lighthouses burn?", "Why?"]
    evals = ["what did early lighthouses burn", "What did early lighthouses burn?", "why", "Who wrote Hamlet?"]
    c = overlap_counts(train, evals)
    assert (c["n_eval"], c["exact"], c["near"], c["short"]) == (4, 3, 0, 1)
    assert c["share"] == 0.75


def test_index_reuse_gives_the_same_pairs():
    a = ["Where do many volcanoes lie?", "How far can volcanic ash travel?"]
    b = ["Where do many volcanoes lie ?", "How far can ash travel?"]
    direct = find_duplicates(a, b, threshold=0.5)
    reused = find_duplicates(TextIndex.build(a), TextIndex.build(b), threshold=0.5)
    pd.testing.assert_frame_equal(direct, reused)
    with pytest.raises(ValueError, match="different n or num_perm"):
        find_duplicates(TextIndex.build(a, n=4), TextIndex.build(b), threshold=0.5)


def _row(field, n_eval, exact=0, near=0, short=0, eval="E"):
    return dict(
        train="T",
        eval=eval,
        field=field,
        n_train=1,
        n_eval=n_eval,
        exact=exact,
        near=near,
        short=short,
        share=0.0,
        examples=[],
    )


@pytest.mark.parametrize(
    "rows,expected",
    [
        ([_row("questions", 100)], "holds"),
        ([_row("questions", 100, exact=1, short=1)], "holds"),
        ([_row("titles", 10, exact=1), _row("passages", 100)], "partly holds"),
        ([_row("contexts", 1000, near=9)], "partly holds"),
        ([_row("contexts", 1000, near=10)], "does not hold"),
    ],
)
def test_overlap_outcome_maps_each_case(rows, expected):
    assert overlap_outcome(pd.DataFrame(rows)).verdict == expected


def test_audit_skips_and_fields():
    tr = {"A": {"questions": ["What is magma?"], "titles": ["Volcano"]}}
    ev = {
        "A": {"questions": ["What is magma?"]},
        "B": {"questions": ["what is magma"], "passages": ["Magma is molten rock."]},
    }
    a = audit_overlap(tr, ev, skip={("A", "A")}, progress=False)
    assert a[["train", "eval", "field", "exact"]].values.tolist() == [["A", "B", "questions", 1]]


# The shipped demo set (owned with this module): exact LAReQA format, parallel ids, spans computed correctly.


def test_demo_set_format():
    folder = files("hybrid_replication") / "demo_data" / "demo-r"
    langs = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    assert len(langs) >= 5 and (folder / "LICENSE").is_file()
    ids = {}
    for l in langs:
        doc = json.loads((folder / f"{l}.json").read_text(encoding="utf-8"))
        assert doc["version"] == "1.1"
        ids[l] = []
        for art in doc["data"]:
            assert art["title"]
            for p in art["paragraphs"]:
                ctx, spans = p["context"], p["sentence_breaks"]
                assert [ctx[s:e] for s, e in spans] == p["sentences"]
                for q in p["qas"]:
                    a = q["answers"][0]
                    assert ctx[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]
                    assert any(
                        s <= a["answer_start"] and a["answer_start"] + len(a["text"]) <= e for s, e in spans
                    )
                    ids[l].append(q["id"])
    assert all(v == ids["en"] for v in ids.values()) and len(ids["en"]) == len(set(ids["en"])) >= 30


@pytest.mark.skipif(not os.environ.get("HYBRID_DATA"), reason="needs the real data (HYBRID_DATA)")
def test_real_lareqa_contexts_do_not_overlap():
    # the data README: MLQA-R shares no context with XQuAD-R; after normalisation two article titles do coincide
    x, m = lareqa_fields("xquad-r"), lareqa_fields("mlqa-r")
    assert overlap_counts(m["contexts"], x["contexts"])["exact"] == 0
    titles = find_duplicates(m["titles"], x["titles"], threshold=1.1)  # exact only
    assert "Prime_number" in set(titles.eval_text)
