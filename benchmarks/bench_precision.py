"""fp32 against bf16 (with 4 length-sorted chunks) for k = 2, 4 and 12 trained blocks: the training step and the
evaluation (encoding questions and candidates), as ratios from one interleaved run, with the roofline share of
each training step (its matrix FLOPs against this CPU's measured matrix rate in that precision).

FLOPs of a step are counted from the real (unpadded) tokens of its queries and passages: per token and trained
block 2 x (4 H^2 + 2 H I) for the projections and feed-forward plus 4 L H for attention (L: the chunk's padded
length, approximated by the token's own text length), times 3 for forward and backward. The matrix rate is the
best of three 2048 x 2048 products per precision. It also prints whether this CPU computes bf16 natively
(avx512_bf16 or AMX) and so what `precision: auto` picks: without it, bf16 is emulated and many times slower
(`--blocks 2` keeps the run short there). Run on an idle machine:

    HYBRID_DATA=../shared/data .venv/bin/python benchmarks/bench_precision.py [--batch 64] [--steps 4]
        [--blocks 2 4 12]
"""

import argparse, statistics, time

import torch


def matrix_rate(dtype, n: int = 2048, repeats: int = 3) -> float:
    "FLOP/s of an n x n matrix product in `dtype` (best of `repeats`)."
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def step_flops(encoder, batch, k: int) -> float:
    "Matrix FLOPs of one training step (forward and backward) through the top `k` blocks, from real token counts."
    from hybrid_replication.train_data import pair_texts

    config = encoder.model.config
    hidden, inner = config.hidden_size, config.intermediate_size
    q, p, _ = pair_texts(batch, 0)
    lengths = [len(x) for x in encoder._token_ids(q, "query") + encoder._token_ids(p, "passage")]
    per_block = sum(n * (2 * (4 * hidden**2 + 2 * hidden * inner) + 4 * n * hidden) for n in lengths)
    return 3.0 * k * per_block


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-texts", type=int, default=256)
    ap.add_argument("--blocks", type=int, nargs="+", default=[2, 4, 12], help="trained blocks to time")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from hybrid_replication.config import TrainConfig
    from hybrid_replication.data import load_lareqa
    from hybrid_replication.embeddings import candidate_texts
    from hybrid_replication.experiment import _encode_with
    from hybrid_replication.loss import info_nce
    from hybrid_replication.sampling import make_sampler
    from hybrid_replication.train import effective_precision, native_bf16, train_step
    from hybrid_replication.train_data import MultiEmbed, build_encoder, freeze, frozen_trunk, make_optimizer
    from hybrid_replication.train_data import source_pairs

    base = TrainConfig.preset(
        "cpu",
        model="multilingual-e5-small",
        batch_size=a.batch,
        query_prefix="query: ",
        passage_prefix="passage: ",
        max_query_length=64,
        max_passage_length=128,
        temperature=0.05,
    )
    pairs = source_pairs({"name": "mlqa-r"})
    batches = [
        [pairs[i] for i in b] for b, _ in zip(make_sampler("hybrid", pairs, a.batch, seed=0), range(a.steps + 1))
    ]
    xquad = load_lareqa("xquad-r")
    questions = [q.text for q in xquad.questions][: a.eval_texts]
    candidates = candidate_texts(xquad)[: a.eval_texts]
    rates = {"fp32": matrix_rate(torch.float32), "bf16": matrix_rate(torch.bfloat16)}
    paths = {}
    for k in a.blocks:
        for precision, chunks in (("fp32", 1), ("bf16", 4)):
            cfg = TrainConfig.from_dict(
                {**base.to_dict(), "trainable_layers": k, "precision": precision, "length_chunks": chunks}
            )
            encoder = build_encoder(cfg)
            trunk = frozen_trunk(encoder, cfg, [p for b in batches for p in b], progress=False)
            if trunk is not None:
                trunk.ensure(questions, "query", False)
                trunk.ensure(candidates, "passage", False)
            freeze(encoder, word_embeddings=True, layers=trunk.n_frozen if trunk else 0)
            encoder.train()
            opt, model = make_optimizer(encoder, cfg), MultiEmbed(encoder, chunks)
            loss_fn = lambda q, p, h, t=cfg.temperature: info_nce(q, p, h, temperature=t)
            featurize = trunk.features if trunk else None
            step = lambda b, m=model, e=encoder, c=cfg, o=opt, f=featurize, lf=loss_fn: train_step(
                m, e, b, c, lf, o, featurize=f
            )
            encode = _encode_with(encoder, trunk, 64, False, precision)
            paths[(k, precision)] = (step, encode, encoder)
    for step, _, _ in paths.values():
        step(batches[0])  # warm-up
    step_times = {key: [] for key in paths}
    for b in batches[1:]:  # interleaved
        for key, (step, _, _) in paths.items():
            step_times[key].append(_seconds(lambda: step(b)))
    eval_times = {}
    for key, (_, encode, encoder) in paths.items():
        encoder.eval()
        eval_times[key] = _seconds(lambda: (encode(questions, "query"), encode(candidates, "passage")))
    print(
        f"batch {a.batch}, {a.steps} timed steps per path (medians, interleaved), {a.threads} threads; evaluation: "
        f"{len(questions)} questions + {len(candidates)} candidates; matrix rate fp32 {rates['fp32'] / 1e9:.0f}, "
        f"bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s (bf16 / fp32 {rates['bf16'] / rates['fp32']:.2f}); native bf16: "
        f"{native_bf16('cpu')}, so precision auto runs {effective_precision('auto', 'cpu')}"
    )
    print(
        "| trained blocks | precision | s/step | step bf16 / fp32 | roofline share | eval s | eval bf16 / fp32 |"
    )
    print("|---|---|---|---|---|---|---|")
    for (k, precision), times in step_times.items():
        s = statistics.median(times)
        flops = statistics.mean(step_flops(paths[(k, precision)][2], b, k) for b in batches[1:])
        share = flops / s / rates[precision]
        emulated = precision == "bf16" and not native_bf16("cpu")  # its matrix rate is near 0: no roofline
        share_text = "n/a (emulated)" if emulated else f"{share:.0%}"
        fp32_s, fp32_e = statistics.median(step_times[(k, "fp32")]), eval_times[(k, "fp32")]
        print(
            f"| {k} | {precision}{', 4 chunks' if precision == 'bf16' else ''} | {s:.3f} | {s / fp32_s:.2f} | "
            f"{share_text} | {eval_times[(k, precision)]:.2f} | {eval_times[(k, precision)] / fp32_e:.2f} |"
        )


if __name__ == "__main__":
    main()
