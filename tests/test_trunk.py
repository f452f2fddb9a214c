"""The frozen-trunk fast path: the cached path gives the plain path's embeddings, loss and gradients; resume
stays bit-identical on it; a changed model or prefix never reuses a cache entry."""

from pathlib import Path

import numpy as np
import pytest
import torch

import hybrid_replication.train as T
from hybrid_replication.encoder import tiny_encoder
from hybrid_replication.loss import info_nce
from hybrid_replication.train import TrainConfig, load_checkpoint, train
from hybrid_replication.trunk import FrozenTrunk

torch.set_num_threads(2)
TINY = dict(
    model="tiny", sources=[{"name": "demo"}], batch_size=8, lr=1e-3, warmup_steps=1, threads=2, save_model=False
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    "Every test caches trunk outputs in its own temporary folder, never in the user's cache."
    monkeypatch.setenv("HYBRID_REPLICATION_CACHE", str(tmp_path / "cache"))


def _texts():
    pairs = T.training_data(TrainConfig(**TINY))[0]
    return [p.query for p in pairs[:40]], [p.passage for p in pairs[:40]]


def test_cached_embeddings_equal_the_plain_forward():
    enc = tiny_encoder(seed=1, num_layers=4, hidden_size=64, num_heads=4, intermediate_size=128)
    queries, passages = _texts()
    for n_frozen in (1, 3):
        trunk = FrozenTrunk(enc, n_frozen)
        for kind, texts in (("query", queries), ("passage", passages)):
            cached = trunk.encode(texts, kind, show_progress=False)
            plain = enc.encode(texts, kind, show_progress=False)
            # half precision of the trunk's output: about 3 significant digits per hidden value
            assert np.abs(cached - plain).max() < 3e-3, (n_frozen, kind)


def test_one_step_gives_the_plain_paths_loss_and_gradients():
    "Same frozen layers, dropout off: the trunk path (top block over the cache) and the plain path agree."
    batch = T.training_data(TrainConfig(**TINY))[0][:8]
    results = []
    for extra in (dict(trainable_layers=1), dict(freeze_layers=1)):
        cfg = TrainConfig(**TINY, dropout=0.0, **extra)
        enc = T.build_encoder(cfg).train()
        trunk = T.frozen_trunk(enc, cfg, batch, progress=False)
        T.freeze(enc, layers=1)
        q, p, _ = T.pair_texts(batch)
        featurize = trunk.features if trunk is not None else enc.tokenize
        loss = info_nce(enc(featurize(q, "query")), enc(featurize(p, "passage")), None)
        loss.backward()
        grads = {k: v.grad.clone() for k, v in enc.named_parameters() if v.requires_grad}
        results.append((float(loss.detach()), grads))
    (loss_trunk, grad_trunk), (loss_plain, grad_plain) = results
    assert sorted(grad_trunk) == sorted(grad_plain) and grad_trunk
    assert abs(loss_trunk - loss_plain) < 1e-3
    for k in grad_plain:
        scale = grad_plain[k].abs().max().item() + 1e-8
        assert (grad_trunk[k] - grad_plain[k]).abs().max().item() / scale < 1e-2, k


def test_resume_is_bit_identical_on_the_trunk_path(tmp_path):
    cfg = dict(TINY, max_steps=4, trainable_layers=1, val_fraction=0.2, eval_every=2, temperature=0.05)
    a = train(TrainConfig(**cfg, output_dir=str(tmp_path / "a")), progress=False)
    assert a["frozen_trunk"]["n_frozen"] == 1
    train(TrainConfig(**cfg, output_dir=str(tmp_path / "b")), progress=False, stop_at_step=2)
    b = train(TrainConfig(**cfg, output_dir=str(tmp_path / "b")), resume=True, progress=False)
    assert b["frozen_trunk"]["texts_computed"] == 0  # the resumed run found every text cached
    wa = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert sorted(wa) == sorted(wb) and wa and all(".layer.1." in k for k in wa)  # only the top block trains
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert (tmp_path / "a" / "best_trainable.pt").exists()


def test_a_changed_model_or_prefix_never_reuses_an_entry():
    texts = ["Who won Super Bowl 50?", "Wer gewann den Super Bowl 50?"]
    enc = tiny_encoder(seed=0, num_layers=3)
    first = FrozenTrunk(enc, 2)
    assert first.ensure(texts, "query", show_progress=False) == 2
    assert FrozenTrunk(enc, 2).ensure(texts, "query", show_progress=False) == 0
    assert FrozenTrunk(tiny_encoder(seed=1, num_layers=3), 2).folder != first.folder  # other weights
    assert FrozenTrunk(enc, 1).folder != first.folder  # other layer
    enc.query_prefix = "question: "
    assert FrozenTrunk(enc, 2).ensure(texts, "query", show_progress=False) == 2  # other prefix
    enc.max_query_length = 5
    assert FrozenTrunk(enc, 2).ensure(texts, "query", show_progress=False) == 2  # other truncation


def test_config_refuses_bad_trainable_layers():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="trainable_layers"):
            TrainConfig(trainable_layers=bad)
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(trainable_layers=1, freeze_layers=2)
