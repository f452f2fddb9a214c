"""Where one training step goes: the split of a cached top-k step (and of the plain full-model step) into its
parts, timed in one interleaved run, plus `torch.profiler`'s top operators for the cached step.

The parts, in the order `train.train_step` runs them:
- tokenise: the encoder's tokenizer on the step's queries and passages (prefix, truncation);
- keys: the trunk cache's key per text (sha1 of its token ids);
- features: the cached trunk's rows looked up (memory map), converted to float32 and padded
  (`FrozenTrunk._padded`); on the plain path, padding the token ids;
- forward: the trainable blocks (and pooling) on queries and passages;
- loss: InfoNCE with in-batch negatives;
- backward;
- optimizer: gradient clipping and AdamW.

Paths (each a training configuration): the top k blocks over the cached trunk and the plain path (all 12
blocks), in fp32 and with `precision: bf16` and `length_chunks: 4`, beside sentence-transformers' MNRL step
in fp32 (as users run it) and under the same bf16 autocast. Every path's time is also given as a ratio to
sentence-transformers' fp32 step.

Run on an idle machine (timings are ratios within this run):

    HYBRID_DATA=../shared/data .venv/bin/python benchmarks/profile_step.py [--batch 64] [--steps 6] [--k 2]
        [--profile]
"""

import argparse, statistics, time
from collections import defaultdict

import torch


def _timed(times, name, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    times[name].append(time.perf_counter() - t)
    return out


def split_step(encoder, trunk, model, loss_fn, optimizer, batch, cfg, times):
    "One training step, its parts timed separately (the same work as `train_step`, without gradient caching)."
    from hybrid_replication.trunk import text_key
    from hybrid_replication.train_data import pair_texts

    q, p, _ = pair_texts(batch, 0)
    ids = _timed(times, "tokenise", lambda: (encoder._token_ids(q, "query"), encoder._token_ids(p, "passage")))
    if trunk is not None:
        keys = _timed(times, "keys", lambda: [[text_key(x) for x in side] for side in ids])
        groups = _timed(times, "features", lambda: [trunk._padded(k) for k in keys])
    else:
        groups = _timed(times, "features", lambda: [encoder._pad(side) for side in ids])
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    with autocast:
        embedded = _timed(times, "forward", lambda: model(*groups, None))
        loss = _timed(times, "loss", lambda: loss_fn(*embedded))
    _timed(times, "backward", loss.backward)

    def update():
        params = [x for x in encoder.parameters() if x.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    _timed(times, "optimizer", update)


def _st_step(base, bf16: bool):
    "sentence-transformers' MultipleNegativesRankingLoss step on the same model, texts and lengths."
    import tempfile

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from hybrid_replication.train_data import build_encoder

    with tempfile.TemporaryDirectory() as d:
        build_encoder(base).save(d)
        st = SentenceTransformer(d, device="cpu")
    st.train()
    st[0].auto_model.get_input_embeddings().requires_grad_(False)
    mnrl = MultipleNegativesRankingLoss(st, scale=1.0 / base.temperature)
    params = [p for p in st.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=base.lr, weight_decay=base.weight_decay)

    def step(batch):
        st.max_seq_length = base.max_query_length
        fq = st.tokenize([base.query_prefix + p.query.strip() for p in batch])
        st.max_seq_length = base.max_passage_length
        fp = st.tokenize([base.passage_prefix + p.passage.strip() for p in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = mnrl([fq, fp], None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, base.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--k", type=int, default=2, help="trainable top blocks on the cached path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from hybrid_replication.config import TrainConfig
    from hybrid_replication.loss import info_nce
    from hybrid_replication.sampling import make_sampler
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
    sampler = make_sampler("hybrid", pairs, a.batch, seed=0)
    batches = [[pairs[i] for i in b] for b, _ in zip(sampler, range(a.steps + 1))]
    paths = {}
    for k, precision, chunks in ((a.k, "fp32", 1), (a.k, "bf16", 4), (None, "fp32", 1), (None, "bf16", 4)):
        cfg = TrainConfig.from_dict(
            {**base.to_dict(), "trainable_layers": k, "precision": precision, "length_chunks": chunks}
        )
        encoder = build_encoder(cfg)
        trunk = frozen_trunk(encoder, cfg, [p for b in batches for p in b], progress=False)
        freeze(encoder, word_embeddings=True, layers=trunk.n_frozen if trunk else 0)
        encoder.train()
        loss_fn = lambda q, p, h, t=cfg.temperature: info_nce(q, p, h, temperature=t)
        where = f"top {k} of 12 over the cached trunk" if k else "plain path (all 12 blocks)"
        name = f"ours, {where}, {precision}" + (f", {chunks} length chunks" if chunks > 1 else "")
        paths[name] = (encoder, trunk, MultiEmbed(encoder, chunks), make_optimizer(encoder, cfg), cfg, loss_fn)
    peers = {
        "sentence-transformers MNRL, fp32": _st_step(base, False),
        "sentence-transformers MNRL, bf16": _st_step(base, True),
    }
    times = {n: defaultdict(list) for n in [*paths, *peers]}
    for n, (encoder, trunk, model, opt, cfg, loss_fn) in paths.items():
        split_step(encoder, trunk, model, loss_fn, opt, batches[0], cfg, defaultdict(list))  # warm-up
    for step in peers.values():
        step(batches[0])
    for b in batches[1:]:  # interleaved, so that other load hits every path alike
        for n, (encoder, trunk, model, opt, cfg, loss_fn) in paths.items():
            split_step(encoder, trunk, model, loss_fn, opt, b, cfg, times[n])
        for n, step in peers.items():
            _timed(times[n], "whole step", step, b)
    print(f"batch {a.batch}, {a.steps} timed steps per path (medians, interleaved), {a.threads} threads")
    parts = ["tokenise", "keys", "features", "forward", "loss", "backward", "optimizer"]
    print("| path | s/step | / ST fp32 | " + " | ".join(parts) + " |")
    print("|---|---|---|" + "---|" * len(parts))
    reference = statistics.median(times["sentence-transformers MNRL, fp32"]["whole step"])
    for n, t in times.items():
        med = {p: statistics.median(v) for p, v in t.items()}
        total = sum(med.values())
        shares = " | ".join(f"{med[p] / total:.0%}" if p in med else "-" for p in parts)
        print(f"| {n} | {total:.3f} | {total / reference:.3f} | {shares} |")
    if a.profile:
        encoder, trunk, model, opt, cfg, loss_fn = next(iter(paths.values()))
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            split_step(encoder, trunk, model, loss_fn, opt, batches[1], cfg, defaultdict(list))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
