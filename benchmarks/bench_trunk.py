"""The frozen-trunk fast path: training-step and evaluation time for k = 1, 2, 4 trained blocks over a cached
trunk, against the plain path (all 12 blocks, `trainable_layers: null`) and sentence-transformers'
MultipleNegativesRankingLoss on the same model, texts and lengths, as ratios measured in one run.

One training step = featurise (tokenise, or look up the cached trunk), embed queries and passages, InfoNCE
with in-batch negatives, backward, clip, AdamW (`hybrid_replication.train.train_step`). Word embeddings are
frozen on every path (the `cpu` preset); steps alternate between the paths so that other load on the CPU hits
all of them alike; medians are reported. Evaluation = embedding `--eval-texts` XQuAD-R questions and as many
candidates (the trunk already cached: the grids cache it once per model and text); the one-off cost of
caching is reported per 1,000 texts.

    HYBRID_DATA=../shared/data .venv/bin/python benchmarks/bench_trunk.py [--batch 32] [--steps 3] [--threads 2]
"""

import argparse, json, statistics, tempfile, time
from pathlib import Path

import torch


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-texts", type=int, default=256)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from hybrid_replication.data import load_lareqa
    from hybrid_replication.embeddings import candidate_texts
    from hybrid_replication.loss import info_nce
    from hybrid_replication.sampling import make_sampler
    from hybrid_replication.config import TrainConfig
    from hybrid_replication.train_data import (
        MultiEmbed,
        build_encoder,
        freeze,
        frozen_trunk,
        make_optimizer,
        source_pairs,
    )
    from hybrid_replication.train import train_step

    base = TrainConfig.preset(
        "cpu",
        model="multilingual-e5-small",
        batch_size=a.batch,
        query_prefix="query: ",
        passage_prefix="passage: ",
        temperature=0.05,
    )
    pairs = source_pairs({"name": "mlqa-r"})
    sampler = make_sampler(
        "hybrid", [p.__class__(**{**p.__dict__, "hard_negatives": ()}) for p in pairs], a.batch, seed=0
    )
    batches = [[pairs[i] for i in b] for b, _ in zip(sampler, range(a.steps + 1))]
    xquad = load_lareqa("xquad-r")
    questions = [q.text for q in xquad.questions][: a.eval_texts]
    candidates = candidate_texts(xquad)[: a.eval_texts]

    paths = {}  # name -> (step function, encode function)
    for k in (1, 2, 4, None):
        cfg = TrainConfig.from_dict({**base.to_dict(), "trainable_layers": k})
        enc = build_encoder(cfg)
        t0 = time.perf_counter()
        texts = [p for b in batches for p in b]
        trunk = frozen_trunk(enc, cfg, texts, progress=False)
        if trunk is not None:
            trunk.ensure(questions, "query", False)
            trunk.ensure(candidates, "passage", False)
            cache_s = (time.perf_counter() - t0) / max(trunk.computed, 1) * 1000 if trunk.computed else None
        freeze(enc, word_embeddings=True, layers=trunk.n_frozen if trunk else 0)
        enc.train()
        opt, model = make_optimizer(enc, cfg), MultiEmbed(enc)
        featurize = trunk.features if trunk else None
        loss_fn = lambda q, p, h: info_nce(q, p, h, temperature=cfg.temperature)
        step = lambda b, m=model, e=enc, c=cfg, o=opt, f=featurize: train_step(m, e, b, c, loss_fn, o, featurize=f)
        if trunk:
            encode = lambda t, kind, tr=trunk: tr.encode(t, kind, 64, False)
        else:
            encode = lambda t, kind, e=enc: e.encode(t, kind, batch_size=64, show_progress=False)
        name = f"ours, top {k} of 12 blocks over the cached trunk" if k else "ours, plain path (all 12 blocks)"
        paths[name] = (step, encode, cache_s if trunk else None)

    plain = build_encoder(base)
    with tempfile.TemporaryDirectory() as d:
        plain.save(d)
        st = SentenceTransformer(d, device="cpu")
    st.train()
    st[0].auto_model.get_input_embeddings().requires_grad_(False)
    mnrl = MultipleNegativesRankingLoss(st, scale=1.0 / base.temperature)
    st_opt = torch.optim.AdamW(
        [p for p in st.parameters() if p.requires_grad], lr=base.lr, weight_decay=base.weight_decay
    )

    def st_step(batch):
        st.max_seq_length = base.max_query_length
        fq = st.tokenize([base.query_prefix + p.query.strip() for p in batch])
        st.max_seq_length = base.max_passage_length
        fp = st.tokenize([base.passage_prefix + p.passage.strip() for p in batch])
        loss = mnrl([fq, fp], None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in st.parameters() if p.requires_grad], base.max_grad_norm)
        st_opt.step()
        st_opt.zero_grad(set_to_none=True)

    def st_encode(texts, kind):
        prefix = base.query_prefix if kind == "query" else base.passage_prefix
        st.max_seq_length = base.max_query_length if kind == "query" else base.max_passage_length
        return st.encode([prefix + t.strip() for t in texts], batch_size=64, show_progress_bar=False)

    peer = "sentence-transformers MNRL (all 12 blocks)"
    paths[peer] = (st_step, st_encode, None)
    for step, _, _ in paths.values():
        step(batches[0])  # warm-up
    step_times = {n: [] for n in paths}
    for b in batches[1:]:
        for n, (step, _, _) in paths.items():
            t = time.perf_counter()
            step(b)
            step_times[n].append(time.perf_counter() - t)
    eval_times = {}
    for n, (_, encode, _) in paths.items():
        t = time.perf_counter()
        encode(questions, "query")
        encode(candidates, "passage")
        eval_times[n] = time.perf_counter() - t
    ref_step, ref_eval = statistics.median(step_times[peer]), eval_times[peer]
    print(
        f"batch {a.batch}, {a.steps} timed steps per path (medians, interleaved), lengths "
        f"{base.max_query_length}/{base.max_passage_length}, {a.threads} threads; evaluation: "
        f"{len(questions)} questions + {len(candidates)} candidates"
    )
    print("| path | s/step | step time / ST | eval s | eval time / ST | trunk caching, s per 1,000 texts |")
    print("|---|---|---|---|---|---|")
    rows = []
    for n, (_, _, cache_s) in paths.items():
        s = statistics.median(step_times[n])
        cache = f"{cache_s:.1f}" if cache_s else "-"
        print(
            f"| {n} | {s:.3f} | {s / ref_step:.3f} | {eval_times[n]:.2f} | {eval_times[n] / ref_eval:.3f} | {cache} |"
        )
        rows.append(
            dict(
                path=n,
                step_s=s,
                step_ratio=s / ref_step,
                eval_s=eval_times[n],
                eval_ratio=eval_times[n] / ref_eval,
                cache_s_per_1000=cache_s,
                steps=step_times[n],
            )
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
