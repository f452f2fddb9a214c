"""Property tests of the batch samplers (`hybrid_replication.sampling`) on random training pairs."""

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hybrid_replication.data import TrainPair
from hybrid_replication.sampling import Batch, batch_stats, make_sampler

KINDS = ["mono", "cross", "hybrid", "shuffled"]
LANGS = ["aa", "bb", "cc", "dd"]
SETTINGS = dict(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@st.composite
def pair_sets(draw, clean=False):
    """LAReQA-like pairs: question q exists in a few languages, with every (query, passage) language pair.
    Unless `clean`, different questions may share an answer text and items carry hard negatives that can
    equal other questions' answers (the cases the in-batch rules are for)."""
    langs = LANGS[: draw(st.integers(1, 4))]
    n_q = draw(st.integers(1, 30))
    n_src = draw(st.integers(1, 2))
    pairs = []
    for q in range(n_q):
        present = sorted(draw(st.sets(st.sampled_from(langs), min_size=1)))
        group = q if clean else draw(st.integers(0, n_q - 1))
        hard_ids = [] if clean else draw(st.lists(st.integers(0, n_q - 1), max_size=2))
        for x in present:
            for y in present:
                hard = tuple(f"answer {h} in {y}" for h in hard_ids) if not clean else ()
                pairs.append(
                    TrainPair(
                        f"q{q}", x, f"question {q} in {x}", y, f"answer {group} in {y}", hard, f"src{q % n_src}"
                    )
                )
    return pairs


def global_batch_size(draw):
    ws = draw(st.sampled_from([1, 2, 4]))
    return ws * draw(st.integers(1, 3)), ws


def check_batch(b: Batch, pairs, bs, kind):
    ps = [pairs[i] for i in b.indices]
    assert len(ps) == bs
    assert len({(p.source, p.qid) for p in ps}) == bs, "a question id repeats in a batch"
    assert len({p.passage for p in ps}) == bs, "a passage repeats in a batch"
    for i, p in enumerate(ps):
        others = {o.passage for j, o in enumerate(ps) if j != i}
        assert not others & set(p.hard_negatives), "a positive is another item's hard negative"
    if b.source:
        assert {p.source for p in ps} == {b.source}
    inner = kind
    if kind == "hybrid":
        inner = b.kind
    if inner == "mono":
        assert b.kind == "mono" and all(p.query_lang == p.passage_lang == b.langs[0] for p in ps)
    elif inner == "cross":
        assert b.kind == "cross" and all(p.query_lang != p.passage_lang for p in ps)
        assert set(b.langs) == {(p.query_lang, p.passage_lang) for p in ps}
    else:
        assert b.kind == "shuffled"


def feasible(kind, pairs, bs):
    "Whether a sampler of `kind` can exist, for clean pairs (each (question, language) answer text unique)."

    def ok(ps):
        mono = {}
        for p in ps:
            if p.is_mono:
                mono.setdefault(p.query_lang, set()).add(p.qid)
        cross = {p.qid for p in ps if not p.is_mono}
        can = {
            "mono": any(len(v) >= bs for v in mono.values()),
            "cross": len(cross) >= bs,
            "shuffled": len({p.qid for p in ps}) >= bs,
        }
        can["hybrid"] = can["mono"] and can["cross"]
        return can[kind]

    return all(ok([p for p in pairs if p.source == s]) for s in {p.source for p in pairs})


def build(kind, pairs, bs, seed, **kw):
    try:
        return make_sampler(kind, pairs, bs, seed=seed, **kw)
    except ValueError as e:
        assert "batch_size" in str(e) or "no cross-lingual" in str(e) or "no monolingual" in str(e), str(e)
        return None


@settings(**SETTINGS)
@given(data=st.data(), clean=st.booleans(), kind=st.sampled_from(KINDS), seed=st.integers(0, 2**31))
def test_batches_obey_the_rules(data, clean, kind, seed):
    pairs = data.draw(pair_sets(clean=clean))
    bs, ws = global_batch_size(data.draw)
    s = build(kind, pairs, bs, seed)
    if clean:
        assert (s is not None) == feasible(kind, pairs, bs)
    if s is None:
        return
    try:
        plans = [s.plan(e) for e in range(2)]
    except RuntimeError as e:
        # only the greedy fill of tangled data (shared answers, hard negatives) may fail, and says so
        assert not clean and "fill" in str(e)
        return
    for plan in plans:
        assert len(plan) == len(s) >= 1
        for b in plan:
            check_batch(b, pairs, bs, kind)
    # determinism: the same seed gives the same batches
    assert make_sampler(kind, pairs, bs, seed=seed).plan(1) == plans[1]
    # the realised statistics see no rule broken either
    st_ = batch_stats(s, pairs, epochs=[0, 1])
    assert (
        st_["batches_repeating_question"] == st_["batches_repeating_passage"] == st_["kind_label_mismatches"] == 0
    )


@settings(**SETTINGS)
@given(data=st.data(), kind=st.sampled_from(KINDS), seed=st.integers(0, 1000))
def test_ranks_split_each_global_batch(data, kind, seed):
    pairs = data.draw(pair_sets(clean=True))
    bs, ws = global_batch_size(data.draw)
    full = build(kind, pairs, bs, seed)
    if full is None:
        return
    per_rank = [list(make_sampler(kind, pairs, bs, seed=seed, rank=r, world_size=ws)) for r in range(ws)]
    want = full.plan(0)
    assert all(len(x) == len(want) for x in per_rank)
    for k, b in enumerate(want):
        parts = [per_rank[r][k] for r in range(ws)]
        assert all(len(p) == bs // ws for p in parts)
        assert sum(parts, []) == list(b.indices)  # together they are the global batch, in order
        assert len(set(sum(parts, []))) == bs  # and disjoint


def take(sampler, n):
    "The next n local batches, moving on through epochs as a training loop would."
    out = []
    while len(out) < n:
        for b in sampler:
            out.append(b)
            if len(out) == n:
                break
    return out


@settings(**SETTINGS)
@given(data=st.data(), kind=st.sampled_from(KINDS), seed=st.integers(0, 1000))
def test_resume_equals_uninterrupted(data, kind, seed):
    pairs = data.draw(pair_sets(clean=True))
    bs, ws = global_batch_size(data.draw)
    rank = data.draw(st.integers(0, ws - 1))
    mk = lambda: make_sampler(kind, pairs, bs, seed=seed, rank=rank, world_size=ws)
    try:
        straight = mk()
    except ValueError:
        return
    n = 3 * len(straight)
    want = take(straight, n)
    stop = data.draw(st.integers(0, n))
    first = mk()
    got = take(first, stop)
    state = json.loads(json.dumps(first.state_dict()))  # the state survives a JSON checkpoint
    resumed = mk()
    resumed.load_state_dict(state)
    got += take(resumed, n - stop)
    assert got == want


@settings(**SETTINGS)
@given(data=st.data(), kind=st.sampled_from(KINDS), seed=st.integers(0, 1000))
def test_resume_with_prefetch_uses_batches_done(data, kind, seed):
    pairs = data.draw(pair_sets(clean=True))
    try:
        s = make_sampler(kind, pairs, 1, seed=seed)
    except ValueError:
        return
    want = s.plan(0)
    done = data.draw(st.integers(0, len(want)))
    it = iter(s)
    [next(it) for _ in range(len(want))]  # a DataLoader ran ahead to the end of the epoch
    r = make_sampler(kind, pairs, 1, seed=seed)
    r.load_state_dict(s.state_dict(batches_done=done))
    assert take(r, len(want) - done) == [list(b.indices) for b in want[done:]]


def test_state_of_another_run_is_refused():
    pairs = [TrainPair(f"q{i}", l, f"q{i}{l}", l, f"a{i}{l}") for i in range(10) for l in ("aa", "bb")]
    s = make_sampler("mono", pairs, 2, seed=1)
    with pytest.raises(ValueError, match="'seed'"):
        make_sampler("mono", pairs, 2, seed=2).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="fingerprint"):
        make_sampler("mono", pairs[:-1], 2, seed=1).load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="'sampler'"):
        make_sampler("shuffled", pairs, 2, seed=1).load_state_dict(s.state_dict())


def _balanced(n_q=40, langs=LANGS, src=""):
    return [
        TrainPair(f"q{q}", x, f"question {q} {x}", y, f"answer {q} {y}", (), src)
        for q in range(n_q)
        for x in langs
        for y in langs
    ]


@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_hybrid_share_converges_to_alpha(alpha):
    pairs = _balanced()
    s = make_sampler("hybrid", pairs, 4, seed=5, alpha=alpha, batches_per_epoch=1500)
    kinds = Counter(b.kind for b in s.plan(0))
    share = kinds["mono"] / 1500
    # binomial standard deviation is at most 0.013 here: 0.06 is a loose (about 4.6 sigma) bound
    assert abs(share - alpha) < 0.06, (alpha, kinds)
    if alpha in (0.0, 1.0):
        assert share == alpha


def test_mono_languages_uniform_or_by_size():
    # unbalanced: language aa has 4 times as many questions as the others
    pairs = [p for p in _balanced(n_q=80) if p.is_mono and (p.query_lang == "aa" or int(p.qid[1:]) < 20)]
    for weighting, want_aa in (("uniform", 0.25), ("size", 80 / 140)):
        s = make_sampler("mono", pairs, 4, seed=0, batches_per_epoch=2000, lang_weighting=weighting)
        share = Counter(b.langs[0] for b in s.plan(0))["aa"] / 2000
        assert abs(share - want_aa) < 0.05, (weighting, share)


def test_cross_pairs_uniform_per_item_and_per_batch():
    pairs = _balanced(n_q=30, langs=LANGS[:3])
    for per_batch in (False, True):
        s = make_sampler("cross", pairs, 5, seed=0, batches_per_epoch=600, per_batch_pair=per_batch)
        plan = s.plan(0)
        counts = Counter((pairs[i].query_lang, pairs[i].passage_lang) for b in plan for i in b.indices)
        assert len(counts) == 6 and max(counts.values()) / min(counts.values()) < 1.35, counts
        if per_batch:
            assert all(len(b.langs) == 1 for b in plan)


def test_multi_source_batches_and_proportions():
    pairs = _balanced(n_q=60, src="big") + [
        TrainPair(p.qid, p.query_lang, p.query, p.passage_lang, p.passage, (), "small") for p in _balanced(n_q=20)
    ]
    s = make_sampler("hybrid", pairs, 4, seed=0, batches_per_epoch=2000)
    plan = s.plan(0)
    assert all({pairs[i].source for i in b.indices} == {b.source} for b in plan)
    assert abs(Counter(b.source for b in plan)["big"] / 2000 - 0.75) < 0.05
    rr = make_sampler("hybrid", pairs, 4, seed=0, source_weighting="round_robin").plan(0)
    assert [b.source for b in rr[:4]] == ["big", "small", "big", "small"]
    assert len(make_sampler("mono", pairs, 4)) == 60 // 4 + 20 // 4


def test_impossible_batch_size_is_a_clear_error():
    pairs = _balanced(n_q=5)
    for kind in KINDS:
        with pytest.raises(ValueError, match="batch_size 6"):
            make_sampler(kind, pairs, 6)
    with pytest.raises(ValueError, match="not divisible by world_size"):
        make_sampler("mono", pairs, 3, world_size=2)
    with pytest.raises(ValueError, match="unknown sampler kind"):
        make_sampler("xx", pairs, 2)
    # a language too small for a batch is left out, not an error, when another can fill it
    s = make_sampler(
        "mono", _balanced(n_q=5) + [TrainPair(f"z{i}", "ee", "q", "ee", f"a{i}") for i in range(3)], 4
    )
    assert s.excluded == ["ee"] and "ee" not in s.languages


def test_works_as_a_dataloader_batch_sampler():
    import torch

    pairs = _balanced(n_q=12)
    s = make_sampler("hybrid", pairs, 4, seed=0)
    dl = torch.utils.data.DataLoader(pairs, batch_sampler=s, collate_fn=list)
    got = [[pairs.index(p) for p in b] for b in dl]
    assert got == [list(b.indices) for b in make_sampler("hybrid", pairs, 4, seed=0).plan(0)]
    assert len(dl) == 3
