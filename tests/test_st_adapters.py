"""Hybrid batches inside sentence-transformers: the tiny encoder trained a few steps with SentenceTransformerTrainer,
our hybrid sampler and MultipleNegativesRankingLoss; every batch pure X-X or X-Y, the right mono share, and the
sampler's metadata columns never tokenised."""

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from hybrid_replication.data import load_lareqa
from hybrid_replication.encoder import tiny_encoder
from hybrid_replication.pairs import lareqa_pairs
from hybrid_replication.st_adapters import DropColumns, LanguageBatchSampler, batch_sampler

torch.set_num_threads(2)


def _dataset():
    pairs = lareqa_pairs(load_lareqa("demo"))
    return Dataset.from_dict(
        {
            "anchor": [p.query for p in pairs],
            "positive": [p.passage for p in pairs],
            "qid": [p.qid for p in pairs],
            "query_lang": [p.query_lang for p in pairs],
            "passage_lang": [p.passage_lang for p in pairs],
        }
    )


def test_trainer_with_the_hybrid_sampler(tmp_path):
    data = _dataset()
    seen_batches, seen_columns = [], set()

    class Recording(LanguageBatchSampler):
        def __iter__(self):
            for b in super().__iter__():
                seen_batches.append(list(b))
                yield b

    tiny_encoder(seed=0, query_prefix="query: ", passage_prefix="passage: ").save(tmp_path / "model")
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=12,
        learning_rate=1e-3,
        batch_sampler=Recording,
        report_to="none",
        save_strategy="no",
        logging_steps=100,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    loss = MultipleNegativesRankingLoss(model)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss)

    class RecordingDrop(DropColumns):
        def __call__(self, features):
            seen_columns.update(k for f in features for k in f)
            return super().__call__(features)

    original, tokenised_columns = trainer.data_collator, set()

    class Spy:  # what reaches sentence-transformers' own collator, which tokenises every column it gets
        def __call__(self, features):
            tokenised_columns.update(k for f in features for k in f)
            return original(features)

        def __getattr__(self, name):
            return getattr(original, name)

    trainer.data_collator = RecordingDrop(Spy())
    trainer.train()

    assert len(seen_batches) >= 12
    kinds = [{data["query_lang"][i] == data["passage_lang"][i] for i in b} for b in seen_batches]
    assert all(len(k) == 1 for k in kinds), "a batch mixed X-X and X-Y pairs"
    assert all(len({data["qid"][i] for i in b}) == len(b) for b in seen_batches), "a question id twice in a batch"
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters())), (
        "the model did not train"
    )
    assert {"anchor", "positive", "qid"} <= seen_columns  # the trainer hands the metadata over ...
    assert tokenised_columns == {"anchor", "positive"}  # ... and DropColumns keeps it from the tokeniser

    # the share of X-X-mono batches over many planned batches: alpha = 0.5 within 4 standard errors
    sampler = batch_sampler("hybrid", alpha=0.5)(data, batch_size=8, seed=0)
    plan = [b for e in range(40) for b in sampler.sampler.plan(e)]
    mono = np.mean([data["query_lang"][b.indices[0]] == data["passage_lang"][b.indices[0]] for b in plan])
    assert abs(mono - 0.5) < 4 * np.sqrt(0.25 / len(plan)), (mono, len(plan))


def test_the_sampler_is_deterministic_per_seed_and_epoch():
    data = _dataset()
    a, b = (batch_sampler("hybrid")(data, batch_size=8, seed=3) for _ in range(2))
    for s in (a, b):
        s.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
