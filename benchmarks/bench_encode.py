"""Encoding throughput: our `Encoder.encode` against `SentenceTransformer.encode` on the same model.

    HYBRID_DATA=../shared/data .venv/bin/python benchmarks/bench_encode.py [--model multilingual-e5-small] [--n 512] [--repeat 3]

Texts: `--n` real XQuAD-R texts (half questions, half candidate sentences, drawn with seed 0 from
all eleven languages). The peer is the same model: ours is saved to a temporary
Sentence-Transformers folder and loaded with `SentenceTransformer(path)`; both run on the CPU with
2 threads, batch size 32, the same max length (ST's one `max_seq_length` = our passage length) and
the same prefix (ST applies it as the "document"/"query" prompt). Rows: texts/s from the median time of
`--repeat` alternating runs after a warm-up, and the ratio ours/theirs (> 1: ours is faster);
the last column is the largest difference between the two sets of embeddings."""

import argparse, os, random, statistics, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
import torch


def texts_from_xquad_r(n, seed=0):
    from hybrid_replication.data import load_lareqa

    rs = load_lareqa("xquad-r")
    rng = random.Random(seed)
    qs = rng.sample([q.text for q in rs.questions], n // 2)
    cs = rng.sample([c.sentence for c in rs.candidates], n - n // 2)
    return qs, cs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="multilingual-e5-small", help="a name for load_encoder, or 'tiny'")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    from hybrid_replication.encoder import load_encoder, tiny_encoder
    from sentence_transformers import SentenceTransformer

    enc = tiny_encoder() if a.model == "tiny" else load_encoder(a.model)
    enc.max_query_length = enc.max_passage_length = a.max_length
    qs, cs = texts_from_xquad_r(a.n)
    with tempfile.TemporaryDirectory() as d:
        st = SentenceTransformer(str(enc.save(Path(d) / "m")), device="cpu")
    assert st.max_seq_length == a.max_length
    tok_lens = [len(x) for x in enc._token_ids(qs, "query") + enc._token_ids(cs, "passage")]

    rows, tot = [], [0, 0.0, 0.0]
    for kind, texts, prompt in (("questions", qs, "query"), ("sentences", cs, "document")):
        side = "query" if prompt == "query" else "passage"
        ours = lambda: enc.encode(texts, kind=side, batch_size=a.batch_size, show_progress=False)
        theirs = lambda: st.encode(texts, prompt_name=prompt, batch_size=a.batch_size, show_progress_bar=False)
        ours()
        theirs()  # warm-up (allocator, tokenizer caches)
        to, tt = [], []
        for _ in range(a.repeat):  # alternate, so that load from other processes hits both alike
            t0 = time.perf_counter()
            eo = ours()
            to.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            et = theirs()
            tt.append(time.perf_counter() - t0)
        diff = float(np.abs(eo - et).max())
        mo, mt = statistics.median(to), statistics.median(tt)
        rows.append((kind, len(texts), len(texts) / mo, len(texts) / mt, mt / mo, diff))
        tot[0] += len(texts)
        tot[1] += mo
        tot[2] += mt
    rows.append(("all", tot[0], tot[0] / tot[1], tot[0] / tot[2], tot[2] / tot[1], max(r[5] for r in rows)))

    print(
        f"model: {enc.name}  texts: XQuAD-R, {a.n} (tokens incl. prefix: mean {np.mean(tok_lens):.1f}, "
        f"max {max(tok_lens)})  batch {a.batch_size}  max length {a.max_length}  threads {a.threads}  torch {torch.__version__}"
    )
    print(f"{'texts':<10} {'n':>5} {'ours/s':>9} {'ST/s':>9} {'ours/ST':>8} {'max|diff|':>10}")
    for kind, n, o, t, r, diff in rows:
        print(f"{kind:<10} {n:>5} {o:>9.1f} {t:>9.1f} {r:>8.2f} {diff:>10.1e}")


if __name__ == "__main__":
    sys.exit(main())
