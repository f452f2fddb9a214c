"Gradient caching on the real (tiny) encoder with dropout: the same loss and parameter gradients as the ordinary computation."

import pytest
import torch

from hybrid_replication.encoder import tiny_encoder
from hybrid_replication.gradcache import grad_cache_backward, split_features
from hybrid_replication.loss import info_nce

torch.set_num_threads(2)
Q = [
    "Who lays the eggs in a honey bee colony?",
    "Wer legt die Eier in einem Bienenvolk?",
    "¿Quién pone los huevos?",
    "Quand la tour Eiffel a-t-elle été construite ?",
    "埃菲尔铁塔是什么时候建成的？",
    "Когда построили Эйфелеву башню?",
    "What do worker bees collect?",
]
P = [
    "A single queen lays all of the colony's eggs.",
    "Eine einzige Königin legt alle Eier des Volkes.",
    "Una sola reina pone todos los huevos.",
    "La tour a été construite de 1887 à 1889.",
    "该塔建于1887年至1889年。",
    "Башня была построена в 1887–1889 годах.",
    "Worker bees collect nectar from flowers.",
]
H = [
    "Honey bees live in colonies.",
    "Die Türme sind hoch.",
    "Las abejas viven en colmenas.",
    "Paris est une ville.",
    "巴黎是一座城市。",
    "Париж — город.",
    "Bees dance on the comb.",
]


def _grads(enc):
    return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "chunk,kw", [(2, dict()), (3, dict(temperature=0.05, symmetric=True)), (1, dict(temperature=0.1))]
)
def test_grad_cache_matches_one_graph_with_dropout(chunk, kw):
    "Dropout on: GradCache == the same chunks embedded with a graph from the same seed, one loss, one backward."
    enc = tiny_encoder(seed=1).train()
    groups = [enc.tokenize(Q, "query"), enc.tokenize(P, "passage"), enc.tokenize(H, "passage")]
    loss_fn = lambda q, p, h: info_nce(q, p, h, **kw)
    torch.manual_seed(5)
    enc.zero_grad()
    embs = [torch.cat([enc(c) for c in split_features(g, chunk)]) for g in groups]
    ref = loss_fn(*embs)
    ref.backward()
    ref_g = _grads(enc)
    torch.manual_seed(5)
    enc.zero_grad()
    loss = grad_cache_backward(enc, groups, loss_fn, chunk)
    assert torch.allclose(loss, ref.detach(), atol=1e-6)
    got = _grads(enc)
    assert set(got) == set(ref_g) and len(got) > 10
    for n in ref_g:
        assert torch.allclose(got[n], ref_g[n], atol=1e-6, rtol=1e-4), n
    # and the RNG ends where the ordinary computation leaves it, so the next step draws the same masks
    after_cache = torch.rand(3)
    torch.manual_seed(5)
    [torch.cat([enc(c) for c in split_features(g, chunk)]) for g in groups]
    assert torch.equal(torch.rand(3), after_cache)


def test_grad_cache_equals_full_batch_without_dropout():
    enc = tiny_encoder(seed=2).eval()
    groups = [enc.tokenize(Q, "query"), enc.tokenize(P, "passage"), None]
    enc.zero_grad()
    ref = info_nce(enc(groups[0]), enc(groups[1]))
    ref.backward()
    ref_g = _grads(enc)
    enc.zero_grad()
    loss = grad_cache_backward(enc, groups, lambda q, p, h: info_nce(q, p, h), 2)
    assert torch.allclose(loss, ref.detach(), atol=1e-6)
    for n, g in _grads(enc).items():
        assert torch.allclose(g, ref_g[n], atol=1e-6, rtol=1e-4), n


def test_grad_cache_without_replay_would_differ(monkeypatch):
    "The check above can fail: with the RNG replay disabled the second forward draws new masks and the gradients differ."
    import hybrid_replication.gradcache as G

    class NoReplay:
        def __init__(self, *a):
            pass

        def __enter__(self):
            pass

        def __exit__(self, *a):
            pass

    enc = tiny_encoder(seed=1).train()
    groups = [enc.tokenize(Q, "query"), enc.tokenize(P, "passage"), None]
    torch.manual_seed(5)
    enc.zero_grad()
    grad_cache_backward(enc, groups, lambda q, p, h: info_nce(q, p), 2)
    good = _grads(enc)
    monkeypatch.setattr(G, "RandContext", NoReplay)
    torch.manual_seed(5)
    enc.zero_grad()
    grad_cache_backward(enc, groups, lambda q, p, h: info_nce(q, p), 2)
    bad = _grads(enc)
    assert any(not torch.allclose(good[n], bad[n], atol=1e-6) for n in good)
