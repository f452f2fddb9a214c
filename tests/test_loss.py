"""InfoNCE (`hybrid_replication.loss`) against a hand-written computation, its gradient, and the DDP gather path."""

import math, os, tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hybrid_replication.loss import InfoNCELoss, info_nce


def hand_info_nce(q, p, hard=None, temperature=None, symmetric=False):
    "The loss written out with explicit loops over Python floats: cosine, softmax, -log, mean."
    Q, P = q.tolist(), p.tolist()
    H = hard.tolist() if hard is not None else []
    t = 1.0 if temperature is None else temperature

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / (
            math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        )

    def nll(anchor, target, cands):
        return -math.log(math.exp(cos(anchor, target) / t) / sum(math.exp(cos(anchor, c) / t) for c in cands))

    fwd = sum(nll(Q[i], P[i], P + H) for i in range(len(Q))) / len(Q)
    if not symmetric:
        return fwd
    bwd = sum(nll(P[i], Q[i], Q) for i in range(len(P))) / len(P)
    return (fwd + bwd) / 2


def _inputs(B=4, D=5, k=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    # deliberately not normalised: the loss normalises (cosine scores)
    return (
        torch.randn(B, D, generator=g, dtype=dtype) * 3,
        torch.randn(B, D, generator=g, dtype=dtype),
        torch.randn(B * k, D, generator=g, dtype=dtype) * 0.5,
    )


@pytest.mark.parametrize("temperature", [None, 0.05, 0.5])
@pytest.mark.parametrize("with_hard", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_hand_computation(temperature, with_hard, symmetric):
    q, p, h = _inputs(seed=int(100 * (temperature or 0)) + 2 * with_hard + symmetric)
    hard = h if with_hard else None
    got = info_nce(q, p, hard, temperature=temperature, symmetric=symmetric).item()
    assert got == pytest.approx(hand_info_nce(q, p, hard, temperature, symmetric), rel=1e-10, abs=1e-12)
    assert InfoNCELoss(temperature, symmetric)(q, p, hard).item() == pytest.approx(got, rel=1e-12)


def test_hard_negative_layouts_agree_and_hard_negatives_raise_the_loss():
    q, p, h = _inputs(B=3, k=4)
    flat = info_nce(q, p, h, temperature=0.05)
    test_3d = info_nce(q, p, h.reshape(3, 4, -1), temperature=0.05)
    assert torch.allclose(flat, test_3d)
    assert flat > info_nce(q, p, temperature=0.05)  # more negatives, larger partition function


def test_normalize_false_uses_raw_dot_products():
    q, p, _ = _inputs()
    qn, pn = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(p, dim=-1)
    assert torch.allclose(info_nce(qn, pn, normalize=False), info_nce(q, p))
    assert not torch.allclose(info_nce(q, p, normalize=False), info_nce(q, p))


@pytest.mark.parametrize("temperature,symmetric", [(None, False), (0.05, True), (0.2, False)])
def test_gradcheck(temperature, symmetric):
    q, p, h = (x.requires_grad_() for x in _inputs(B=3, D=4, k=1, seed=7))
    assert torch.autograd.gradcheck(
        lambda a, b, c: info_nce(a, b, c, temperature=temperature, symmetric=symmetric), (q, p, h)
    )


def test_gradient_matches_finite_differences_of_hand_version():
    q, p, h = _inputs(B=3, D=4, k=1, seed=3)
    q.requires_grad_()
    info_nce(q, p, h, temperature=0.1, symmetric=True).backward()
    eps, num = 1e-6, torch.zeros_like(q)
    for i in range(q.shape[0]):
        for j in range(q.shape[1]):
            up, dn = q.detach().clone(), q.detach().clone()
            up[i, j] += eps
            dn[i, j] -= eps
            num[i, j] = (hand_info_nce(up, p, h, 0.1, True) - hand_info_nce(dn, p, h, 0.1, True)) / (2 * eps)
    assert torch.allclose(q.grad, num, atol=1e-6)


def test_bad_input_errors():
    q, p, h = _inputs()
    with pytest.raises(ValueError, match="q and p must both be"):
        info_nce(q, p[:2])
    with pytest.raises(ValueError, match="hard must be"):
        info_nce(q, p, h[:, :3])
    with pytest.raises(ValueError, match="temperature must be positive"):
        info_nce(q, p, temperature=0.0)


def test_gather_without_process_group_is_local():
    q, p, h = _inputs()
    assert torch.equal(info_nce(q, p, h, gather=True, symmetric=True), info_nce(q, p, h, symmetric=True))


# ---- DDP: two gloo processes against one process on the concatenated batch ----------------------

CONFIGS = [dict(temperature=None, symmetric=False), dict(temperature=0.05, symmetric=True)]


def _ddp_worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        q, p, h = _inputs(B=4 * world_size, k=2, seed=11)
        b, hb = q.shape[0] // world_size, h.shape[0] // world_size
        res = []
        for cfg in CONFIGS:
            ql, pl, hl = (
                x[r0:r1].clone().requires_grad_()
                for x, r0, r1 in (
                    (q, rank * b, (rank + 1) * b),
                    (p, rank * b, (rank + 1) * b),
                    (h, rank * hb, (rank + 1) * hb),
                )
            )
            loss = info_nce(ql, pl, hl, gather=True, **cfg)
            loss.backward()
            res.append(dict(loss=loss.detach(), q=ql.grad, p=pl.grad, h=hl.grad))
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_gather_equals_single_process_on_concatenated_batch():
    W = 2
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_ddp_worker, args=(W, os.path.join(d, "init"), d), nprocs=W, join=True)
        ranks = [torch.load(os.path.join(d, f"rank{r}.pt")) for r in range(W)]
    q, p, h = (x.requires_grad_() for x in _inputs(B=4 * W, k=2, seed=11))
    for c, cfg in enumerate(CONFIGS):
        for x in (q, p, h):
            x.grad = None
        full = info_nce(q, p, h, **cfg)
        full.backward()
        # the global loss is the mean of the ranks' losses (equal shares of the batch)
        assert torch.allclose(sum(r[c]["loss"] for r in ranks) / W, full.detach(), atol=1e-12)
        # each rank's gradient is W times its slice of the global gradient; DDP's average divides by W
        for name, full_grad in (("q", q.grad), ("p", p.grad), ("h", h.grad)):
            got = torch.cat([r[c][name] for r in ranks]) / W
            assert torch.allclose(got, full_grad, atol=1e-12), (cfg, name)
        # and the gathered loss is not just the local one: the other rank's passages are negatives
        assert not torch.allclose(
            ranks[0][c]["loss"], info_nce(q[:4].detach(), p[:4].detach(), h[:4].detach(), **cfg)
        )
