"""Bad input gives a `DataError` that names the file, the record and the field; missing data fails fast.

Every case writes a small bad file into `tmp_path` and checks the message, not just the type."""

import gzip, json, os, urllib.error
from pathlib import Path

import pytest

from hybrid_replication import data as D
from hybrid_replication import data_check as DC
from hybrid_replication.data import DataError, load_lareqa, read_lareqa_file, lang_code
from hybrid_replication.pairs import afriqa_pairs, mintaka_pairs, ntrex_pairs, read_jsonl
from hybrid_replication.miracl_data import load_topics, load_qrels, load_corpus


def good_doc():
    "A valid LAReQA document: one paragraph of two sentences, two questions."
    return {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "Paris is in France. It is big.",
                        "sentence_breaks": [[0, 19], [20, 30]],
                        "sentences": ["Paris is in France.", "It is big."],
                        "qas": [
                            {
                                "id": "q0",
                                "question": "Where is Paris?",
                                "answers": [{"text": "France", "answer_start": 12}],
                            },
                            {
                                "id": "q1",
                                "question": "How big is it?",
                                "answers": [{"text": "big", "answer_start": 26}],
                            },
                        ],
                    }
                ],
            }
        ]
    }


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def check(exc_info, file, record, field, *words):
    "The error names the file, the record and the field (and any extra words)."
    e = exc_info.value
    msg = str(e)
    assert str(file) in msg, msg
    if record is not None:
        assert f"record {record}" in msg, msg
    assert f"field {field!r}" in msg, msg
    for w in words:
        assert w in msg, msg
    assert e.field == field and (record is None or e.record == record)


# ---------------------------------------------------------------- LAReQA format


def test_good_file_loads(tmp_path):
    q, c, r = read_lareqa_file(write(tmp_path / "en.json", good_doc()))
    assert [x.cid for x in c] == ["en:0:0:0", "en:0:0:1"]
    assert r == {"q0": {"en:0:0:0"}, "q1": {"en:0:0:1"}}


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        read_lareqa_file(tmp_path / "en.json")
    check(e, tmp_path / "en.json", None, "file", "file not found", "HYBRID_DATA")


def test_missing_language_file_in_data_dir(tmp_path):
    (tmp_path / "xquad-r").mkdir()
    with pytest.raises(DataError) as e:
        load_lareqa("xquad-r", langs=["de"], data_dir=tmp_path)
    check(e, tmp_path / "xquad-r" / "de.json", None, "file", "HYBRID_DATA")


def test_malformed_json(tmp_path):
    f = write(tmp_path / "en.json", '{"data": [\n  {"title": "t",\n   "paragraphs": [}\n]}')
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "line 3 column 19", "file", "malformed JSON")


@pytest.mark.parametrize(
    "drop,record,field",
    [
        ("question", "data[0].paragraphs[0].qas[1]", "question"),
        ("id", "data[0].paragraphs[0].qas[1]", "id"),
        ("answers", "data[0].paragraphs[0].qas[1]", "answers"),
        ("answer_start", "data[0].paragraphs[0].qas[1].answers[0]", "answer_start"),
    ],
)
def test_missing_question_fields(tmp_path, drop, record, field):
    d = good_doc()
    qa = d["data"][0]["paragraphs"][0]["qas"][1]
    if drop == "answer_start":
        del qa["answers"][0]["answer_start"]
    else:
        del qa[drop]
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, record, field, "missing field")


@pytest.mark.parametrize("drop", ["context", "sentence_breaks", "qas"])
def test_missing_paragraph_fields(tmp_path, drop):
    d = good_doc()
    del d["data"][0]["paragraphs"][0][drop]
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "data[0].paragraphs[0]", drop, "missing field")


def test_bad_span(tmp_path):
    d = good_doc()
    d["data"][0]["paragraphs"][0]["sentence_breaks"][1] = [20, 99]
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "data[0].paragraphs[0]", "sentence_breaks[1]", "outside the context")


def test_answer_outside_every_span(tmp_path):
    d = good_doc()
    d["data"][0]["paragraphs"][0]["sentence_breaks"] = [[0, 19], [22, 30]]  # a gap at 19..21
    del d["data"][0]["paragraphs"][0]["sentences"]  # (the optional sentences no longer match the spans)
    d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 20
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "data[0].paragraphs[0].qas[0].answers[0]", "answer_start", "outside every sentence span")


def test_answer_at_span_end_belongs_to_next_sentence(tmp_path):
    "Spans are half-open: an answer starting exactly at a span's end is in the next sentence only."
    d = good_doc()
    p = d["data"][0]["paragraphs"][0]
    p["context"] = "巴黎在法国。它很大。"
    p["sentence_breaks"] = [[0, 6], [6, 10]]
    p["sentences"] = ["巴黎在法国。", "它很大。"]
    p["qas"] = [{"id": "q0", "question": "什么很大？", "answers": [{"text": "它", "answer_start": 6}]}]
    _, _, r = read_lareqa_file(write(tmp_path / "zh.json", d))
    assert r == {"q0": {"zh:0:0:1"}}


@pytest.mark.parametrize(
    "breaks, sentences, field, words",
    [
        ([[0, 19], [10, 30]], None, "sentence_breaks[1]", "must not overlap"),
        ([[0, 19], [0, 19]], None, "sentence_breaks[1]", "must not overlap"),  # a duplicated span
        ([[20, 30], [0, 19]], None, "sentence_breaks[1]", "sorted"),
        ([[0, 19], [20, 30]], ["It is big.", "Paris is in France."], "sentences[0]", "is not the text of span"),
        ([[0, 19], [20, 30]], ["Paris is in France."], "sentences", "1 sentences for 2 sentence_breaks"),
    ],
)
def test_inconsistent_spans_are_refused(tmp_path, breaks, sentences, field, words):
    "Overlapping spans once made one question relevant to two candidates (Mo. mAP 1.0 -> 0.875): refused."
    d = good_doc()
    p = d["data"][0]["paragraphs"][0]
    p["sentence_breaks"] = breaks
    if sentences is None:
        del p["sentences"]
    else:
        p["sentences"] = sentences
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "data[0].paragraphs[0]", field, words)


def test_unknown_language_code_in_file_name(tmp_path):
    f = write(tmp_path / "xx.json", good_doc())
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "file name", "lang", "unknown language code 'xx'")
    with pytest.raises(DataError) as e:
        load_lareqa(tmp_path)
    check(e, f, "file name", "lang", "unknown language code")


def test_unknown_language_code_elsewhere():
    with pytest.raises(DataError) as e:
        lang_code("qqq")
    assert "unknown language code 'qqq'" in str(e.value) and e.value.field == "lang"
    with pytest.raises(DataError) as e:
        mintaka_pairs(langs=["en", "zz"], path="unused.json")
    assert "zz" in str(e.value)


def test_conflicting_question_texts(tmp_path):
    d = good_doc()
    d["data"][0]["paragraphs"][0]["qas"][1]["id"] = "q0"  # same id, same language, different text
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(
        e, f, "data[0].paragraphs[0].qas[1]", "question", "'q0'", "different text", "data[0].paragraphs[0].qas[0]"
    )


def test_same_question_twice_is_merged(tmp_path):
    d = good_doc()
    qas = d["data"][0]["paragraphs"][0]["qas"]
    qas[1] = dict(
        qas[0], answers=[{"text": "big", "answer_start": 26}]
    )  # same id and text, second answer sentence
    q, _, r = read_lareqa_file(write(tmp_path / "en.json", d))
    assert len(q) == 1 and r == {"q0": {"en:0:0:0", "en:0:0:1"}}


@pytest.mark.parametrize(
    "where,record,field",
    [
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].__setitem__("question", "   "),
            "data[0].paragraphs[0].qas[0]",
            "question",
        ),
        (
            lambda d: d["data"][0]["paragraphs"][0]["qas"][0].__setitem__("id", ""),
            "data[0].paragraphs[0].qas[0]",
            "id",
        ),
        (lambda d: d["data"][0]["paragraphs"][0].__setitem__("context", ""), "data[0].paragraphs[0]", "context"),
    ],
)
def test_empty_strings(tmp_path, where, record, field):
    d = good_doc()
    where(d)
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, record, field, "empty string")


def test_wrong_type(tmp_path):
    d = good_doc()
    d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = "12"
    f = write(tmp_path / "en.json", d)
    with pytest.raises(DataError) as e:
        read_lareqa_file(f)
    check(e, f, "data[0].paragraphs[0].qas[0].answers[0]", "answer_start", "expected int, got str")


# ---------------------------------------------------------------- other sources


def test_malformed_jsonl(tmp_path):
    f = write(tmp_path / "x.json", '{"id": 0}\n{"id": 1,\n')
    with pytest.raises(DataError) as e:
        read_jsonl(f)
    check(e, f, "line 2", "json", "malformed JSON")


def afriqa_tree(root: Path, rows) -> Path:
    f = root / "afriqa" / "data" / "gold_passages" / "hau" / "gold_span_passages.afriqa.hau.en.train.json"
    write(f, "\n".join(json.dumps(r) for r in rows) + "\n")
    return f


def test_afriqa_missing_field_and_null_context(tmp_path):
    ok = {
        "id": "0",
        "question_lang": "Menene?",
        "question_translated": "What?",
        "context": "A passage.",
        "title": "T",
    }
    null = dict(ok, id="1", context=None, question_lang=float("nan"))
    f = afriqa_tree(tmp_path, [ok, null])
    with pytest.warns(UserWarning, match="1 row"):  # the null context is skipped and reported, not fatal
        pairs = afriqa_pairs("train", langs=["ha"], data_dir=tmp_path)
    assert [(p.query_lang, p.passage_lang) for p in pairs] == [("ha", "en"), ("en", "en")]
    bad = dict(ok)
    del bad["question_translated"]
    f = afriqa_tree(tmp_path, [ok, bad])
    with pytest.raises(DataError) as e:
        afriqa_pairs("train", langs=["hau"], data_dir=tmp_path)
    check(e, f, "line 2", "question_translated", "missing field")


def test_afriqa_missing_folder(tmp_path):
    with pytest.raises(DataError) as e:
        afriqa_pairs("train", data_dir=tmp_path)
    check(e, tmp_path / "afriqa", None, "folder", "HYBRID_DATA")


def test_mintaka_missing_translation(tmp_path):
    rows = [
        {"id": "a", "question": "Q?", "translations": {"de": "F?", "fr": "Q ?"}},
        {"id": "b", "question": "Q2?", "translations": {"fr": "Q2 ?"}},
    ]
    f = write(tmp_path / "m.json", rows)
    with pytest.raises(DataError) as e:
        mintaka_pairs(langs=["en", "de"], path=f)
    check(e, f, "[1].translations", "de", "missing field")
    assert len(mintaka_pairs(langs=["en", "fr"], path=f)) == 4


def test_mintaka_empty_question(tmp_path):
    f = write(tmp_path / "m.json", [{"id": "a", "question": "", "translations": {"de": "F?"}}])
    with pytest.raises(DataError) as e:
        mintaka_pairs(langs=["en", "de"], path=f)
    check(e, f, "[0]", "question", "empty string")


def ntrex_tree(root: Path, de_lines) -> Path:
    base = root / "ntrex128"
    write(base / "DOCUMENT_IDS.tsv", "doc1\ndoc1\ndoc2\n")
    write(base / "NTREX-128" / "newstest2019-src.eng.txt", "One.\r\nTwo.\r\nThree.\r\n")
    return write(base / "NTREX-128" / "newstest2019-ref.deu.txt", de_lines)


def test_ntrex_line_count_and_empty_line(tmp_path):
    f = ntrex_tree(tmp_path, "Eins.\nZwei.\n")
    with pytest.raises(DataError) as e:
        ntrex_pairs(["en", "de"], data_dir=tmp_path)
    check(e, f, "line 3", "line count", "expected 3")
    f = ntrex_tree(tmp_path, "Eins.\n \nDrei.\n")
    with pytest.raises(DataError) as e:
        ntrex_pairs(["en", "de"], data_dir=tmp_path)
    check(e, f, "line 2", "text", "empty string")
    f = ntrex_tree(tmp_path, "Eins.\nZwei.\nDrei.\n")
    pairs = ntrex_pairs(["eng", "deu"], data_dir=tmp_path)
    assert [(p.query, p.passage) for p in pairs[:2]] == [("One.", "Eins."), ("Eins.", "One.")]
    docs = ntrex_pairs(["en", "de"], data_dir=tmp_path, level="document")
    assert docs[0].query == "One. Two." and docs[0].qid == "ntrex:doc:doc1"


# ---------------------------------------------------------------- MIRACL TSV and corpus


def miracl_file(root: Path, kind: str, text: str) -> Path:
    return write(root / "miracl-topics-qrels" / f"{kind}.miracl-v1.0-sw-dev.tsv", text)


def test_topics_wrong_columns(tmp_path):
    f = miracl_file(tmp_path, "topics", "1\tSwali moja?\n2\tSwali\tla pili\n")
    with pytest.raises(DataError) as e:
        load_topics("sw", data_dir=tmp_path)
    check(e, f, "line 2", "columns", "expected 2")


def test_topics_empty_and_conflicting(tmp_path):
    f = miracl_file(tmp_path, "topics", "1\tSwali?\n2\t \n")
    with pytest.raises(DataError) as e:
        load_topics("sw", data_dir=tmp_path)
    check(e, f, "line 2", "query", "empty string")
    f = miracl_file(tmp_path, "topics", "1\tSwali?\n1\tSwali jingine?\n")
    with pytest.raises(DataError) as e:
        load_topics("sw", data_dir=tmp_path)
    check(e, f, "line 2", "query", "different text")


def test_qrels_bad_relevance(tmp_path):
    f = miracl_file(tmp_path, "qrels", "1\tQ0\t10#0\t1\n1\tQ0\t10#1\tyes\n")
    with pytest.raises(DataError) as e:
        load_qrels("sw", data_dir=tmp_path)
    check(e, f, "line 2", "relevance", "not an integer")


def test_qrels_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        load_qrels("sw", data_dir=tmp_path)
    check(e, tmp_path / "miracl-topics-qrels" / "qrels.miracl-v1.0-sw-dev.tsv", None, "file", "file not found")


def test_corpus_bad_lines(tmp_path):
    d = tmp_path / "miracl-corpus" / "miracl-corpus-v1.0-sw"
    d.mkdir(parents=True)
    f = d / "docs-0.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"docid": "1#0", "title": "T", "text": "Maandishi."}) + "\n")
        fh.write(json.dumps({"docid": "1#1", "title": "T", "text": ""}) + "\n")
    with pytest.raises(DataError) as e:
        load_corpus("sw", data_dir=tmp_path, download=False)
    check(e, f, "line 2", "text", "missing or empty")
    f2 = write(tmp_path / "c.jsonl", '{"docid": "1#0", "text": "ok"}\n{"docid": \n')
    with pytest.raises(DataError) as e:
        load_corpus("sw", path=f2)
    check(e, f2, "line 2", "json", "malformed JSON")


def test_corpus_missing_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    called = []
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: called.append(1))
    with pytest.raises(DataError) as e:
        load_corpus("sw", data_dir=tmp_path)
    assert not called  # offline: the hub is not even tried
    check(e, "miracl-corpus-v1.0-sw", None, "corpus", "offline", "HYBRID_DATA")


def test_corpus_hub_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HYBRID_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    seen = {}

    def boom(**kw):
        seen.update(kw)
        raise ConnectionError("Name or service not known")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", boom)
    with pytest.raises(DataError) as e:
        load_corpus("sw", data_dir=tmp_path)
    assert seen["repo_id"] == "miracl/miracl-corpus" and seen["allow_patterns"] == ["miracl-corpus-v1.0-sw/*"]
    assert seen["etag_timeout"] <= 10  # a short timeout, not the library default
    check(e, "miracl-corpus-v1.0-sw", None, "corpus", "hub download failed", "ConnectionError", "HYBRID_DATA")


# ---------------------------------------------------------------- no data folder: fail fast


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRID_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "hybrid_replication"


def test_data_dir_defaults_to_xdg_cache(empty_cache):
    assert D.data_dir() == empty_cache and empty_cache.is_dir()


def test_offline_fails_without_touching_the_network(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("offline mode must not open a connection")

    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(DataError) as e:
        load_lareqa("xquad-r", langs=["en"])
    check(e, empty_cache / "xquad-r" / "en.json", None, "file", "offline", "HYBRID_DATA", "data_dir=")


def test_unreachable_source_fails_with_short_timeout(empty_cache, monkeypatch):
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HYBRID_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    seen = {}

    def unreachable(url, timeout=None):
        seen.update(url=url, timeout=timeout)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(D.urllib.request, "urlopen", unreachable)
    with pytest.raises(DataError) as e:
        load_lareqa("mlqa-r", langs=["de"])
    assert seen["url"].endswith("/mlqa-r/de.json") and seen["timeout"] <= 10
    check(e, empty_cache / "mlqa-r" / "de.json", None, "file", "download", "failed", "HYBRID_DATA")
    assert not (empty_cache / "mlqa-r" / "de.json").exists()  # no partial file left behind


def test_download_fills_the_cache(empty_cache, monkeypatch):
    "With the source reachable (here: a fake one), the file lands in the cache and loads."
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HYBRID_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    import io

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(
        D.urllib.request, "urlopen", lambda url, timeout=None: Resp(json.dumps(good_doc()).encode())
    )
    rs = load_lareqa("xquad-r", langs=["en"])
    assert (empty_cache / "xquad-r" / "en.json").is_file() and len(rs.questions) == 2


def test_explicit_folder_is_never_written(tmp_path, monkeypatch):
    monkeypatch.setattr(
        D.urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download into a user folder")
    )
    with pytest.raises(DataError) as e:
        load_lareqa("xquad-r", langs=["en"], data_dir=tmp_path)
    check(e, tmp_path / "xquad-r" / "en.json", None, "file", "file not found")


def test_missing_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError) as e:
        D.data_dir()
    check(e, tmp_path / "nope", None, "HYBRID_DATA", "does not exist")


# ---------------------------------------------------------------- data-check command


def test_data_check_reports_a_bad_set(tmp_path, capsys):
    d = good_doc()
    d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 99
    write(tmp_path / "xquad-r" / "en.json", d)
    rc = DC.data_check_cli(["--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "== xquad-r: DATA ERROR" in out and "answer_start" in out
    assert "== mlqa-r: MISSING" in out and "== afriqa: MISSING" in out


def test_data_check_without_data_runs_the_demo(empty_cache, capsys):
    rc = DC.data_check_cli([])
    out = capsys.readouterr().out
    assert rc == 0 and "demo" in out and "HYBRID_DATA" in out


def test_two_files_for_one_language(tmp_path):
    write(tmp_path / "en.json", good_doc())
    f = write(tmp_path / "eng.json", good_doc())
    with pytest.raises(DataError) as e:
        load_lareqa(tmp_path)
    check(e, f, "file name", "lang", "already comes from en.json")


def test_folder_of_files_loads_with_stats(tmp_path):
    d = good_doc()
    write(tmp_path / "set" / "en.json", d)
    de = json.loads(json.dumps(d))
    de["data"][0]["paragraphs"][0]["qas"][0]["question"] = "Wo liegt Paris?"
    write(tmp_path / "set" / "de.json", de)
    rs = load_lareqa(tmp_path / "set")
    assert rs.name == "set" and rs.relevant["q0"] == {"en:0:0:0", "de:0:0:0"}
    st = D.dataset_stats(rs)
    assert (
        st.loc["de", "questions"] == 2
        and st.loc["en", "relevant_per_question"] == 2.0
        and st.loc["en", "relevant_same_lang"] == 1.0
    )
    with pytest.raises(DataError) as e:
        load_lareqa(tmp_path / "set", langs=["fr"])
    check(e, tmp_path / "set", None, "langs", "'fr'")


def test_miracl_unknown_split_language_and_offline_cache(empty_cache, monkeypatch):
    with pytest.raises(DataError) as e:
        load_topics("yo", "train")
    check(e, "topics.miracl-v1.0-yo-train.tsv", None, "lang", "no train topics for 'yo'")
    with pytest.raises(DataError) as e:
        load_topics("sw", "test")
    check(e, "miracl", None, "split", "unknown split 'test'")
    with pytest.raises(DataError) as e:
        load_topics("tlh")
    check(e, "miracl", None, "lang", "unknown language code 'tlh'")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        load_qrels("sw")
    check(
        e,
        empty_cache / "miracl-topics-qrels" / "qrels.miracl-v1.0-sw-dev.tsv",
        None,
        "file",
        "offline",
        "HYBRID_DATA",
    )
