"""Training-step time of our loop vs sentence-transformers, and vs what this CPU's matmul rate allows.

One step = tokenise a batch of queries and passages, embed both, InfoNCE with in-batch negatives,
backward, clip, AdamW. Ours: `hybrid_replication.train.train_step` (the loop's own step function).
Peer: the same model written by `Encoder.save` and loaded as `SentenceTransformer`, with
`MultipleNegativesRankingLoss(scale=1/temperature)` (scale 1 = the paper's plain cosine), the same
texts, the same max lengths (queries 32, passages 96 tokens), the same frozen word embeddings, AdamW.
Steps alternate ours/theirs so that load from other jobs on the shared CPU hits both alike; medians.

The roofline: a fp32 `torch.mm` of 2048x2048 gives this CPU's attainable GFLOP/s; a step needs about
6 x non-embedding parameters x tokens (forward + backward) plus the attention products
(12 x layers x L^2 x hidden per sequence), counted over padded positions (what is computed).

    HYBRID_DATA=/work/shared/data .venv/bin/python benchmarks/bench_train_step.py [--batch 16] [--steps 3] [--threads 2]
"""

import argparse, json, statistics, tempfile, time
from pathlib import Path

import torch


def matmul_gflops(n=2048, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / min(ts) / 1e9


def step_flops(encoder, feats):
    "fwd+bwd FLOPs: 6 x non-embedding params x positions + attention score/value products."
    cfg = encoder.model.config
    emb = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" in n)
    body = sum(p.numel() for p in encoder.model.parameters()) - emb
    total = 0
    for f in feats:
        B, L = f["input_ids"].shape
        total += 6 * body * B * L + 12 * cfg.num_hidden_layers * B * L * L * cfg.hidden_size
    return total


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from hybrid_replication.config import TrainConfig
    from hybrid_replication.train_data import MultiEmbed, build_encoder, freeze, make_optimizer, source_pairs
    from hybrid_replication.train import train_step
    from hybrid_replication.sampling import make_sampler
    from hybrid_replication.loss import info_nce

    cfg = TrainConfig.preset("cpu", model="multilingual-e5-small", batch_size=a.batch)
    ours = build_encoder(cfg)
    freeze(ours, word_embeddings=True)
    ours.train()
    with tempfile.TemporaryDirectory() as d:
        ours.save(d)
        st = SentenceTransformer(d, device="cpu")
    st.train()
    st[0].auto_model.get_input_embeddings().requires_grad_(False)
    scale = 1.0 if cfg.temperature is None else 1.0 / cfg.temperature
    mnrl = MultipleNegativesRankingLoss(st, scale=scale)
    st_opt = torch.optim.AdamW(
        [p for p in st.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    opt = make_optimizer(ours, cfg)
    model = MultiEmbed(ours)
    loss_fn = lambda q, p, h: info_nce(q, p, h, temperature=cfg.temperature)

    pairs = source_pairs({"name": "mlqa-r"})
    sampler = make_sampler(
        "hybrid", [p.__class__(**{**p.__dict__, "hard_negatives": ()}) for p in pairs], a.batch, seed=0
    )
    batches = [[pairs[i] for i in b] for b, _ in zip(sampler, range(a.steps + 1))]

    def st_step(batch):
        q = [cfg.query_prefix + p.query.strip() for p in batch]
        ps = [cfg.passage_prefix + p.passage.strip() for p in batch]
        st.max_seq_length = cfg.max_query_length
        fq = st.tokenize(q)
        st.max_seq_length = cfg.max_passage_length
        fp = st.tokenize(ps)
        loss = mnrl([fq, fp], None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in st.parameters() if p.requires_grad], cfg.max_grad_norm)
        st_opt.step()
        st_opt.zero_grad(set_to_none=True)
        return loss.item(), (fq, fp)

    # same inputs: the token counts of both tokenisations agree
    fq_o = ours.tokenize([p.query for p in batches[0]], "query")
    fp_o = ours.tokenize([p.passage for p in batches[0]], "passage")
    _, (fq_s, fp_s) = st_step(batches[0])
    same_tokens = (fq_o["attention_mask"].sum().item(), fp_o["attention_mask"].sum().item()) == (
        fq_s["attention_mask"].sum().item(),
        fp_s["attention_mask"].sum().item(),
    )
    train_step(model, ours, batches[0], cfg, loss_fn, opt)  # warm-up for ours (theirs warmed above)

    t_ours, t_theirs, l_ours, l_theirs, flops = [], [], [], [], []
    for b in batches[1:]:
        t = time.perf_counter()
        lo, _, _ = train_step(model, ours, b, cfg, loss_fn, opt)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        lt, _ = st_step(b)
        t_theirs.append(time.perf_counter() - t)
        l_ours.append(lo)
        l_theirs.append(lt)
        flops.append(
            step_flops(
                ours,
                [ours.tokenize([p.query for p in b], "query"), ours.tokenize([p.passage for p in b], "passage")],
            )
        )
    gf = matmul_gflops()
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    ideal = statistics.median(flops) / (gf * 1e9)
    rows = [("ours (train_step)", mo, ideal / mo), ("sentence-transformers MNRL", mt, ideal / mt)]
    print(
        f"batch {a.batch}, {a.steps} timed steps each (medians), {a.threads} threads, lengths {cfg.max_query_length}/{cfg.max_passage_length}, "
        f"word embeddings frozen; same token counts: {same_tokens}"
    )
    print(
        f"matmul rate {gf:.1f} GFLOP/s (fp32 2048^3); step FLOPs {statistics.median(flops) / 1e9:.1f} GFLOP -> ideal {ideal:.3f} s"
    )
    print("| implementation | s/step | fraction of matmul roofline |\n|---|---|---|")
    for name, t, frac in rows:
        print(f"| {name} | {t:.3f} | {frac:.2f} |")
    print(
        f"ratio ours/theirs: {mo / mt:.3f}  (losses, first timed step: ours {l_ours[0]:.4f}, theirs {l_theirs[0]:.4f})"
    )
    res = dict(
        batch=a.batch,
        steps=a.steps,
        threads=a.threads,
        ours_s=mo,
        theirs_s=mt,
        ratio=mo / mt,
        gflops=gf,
        step_gflop=statistics.median(flops) / 1e9,
        ideal_s=ideal,
        ours_all=t_ours,
        theirs_all=t_theirs,
        same_tokens=same_tokens,
    )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
