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
from hybrid_replication.st_adapters import (
    DropColumns,
    HybridTrainer,
    LanguageBatchSampler,
    batch_sampler,
    pairs_to_dataset,
)

torch.set_num_threads(2)


def _dataset():
    data = pairs_to_dataset(lareqa_pairs(load_lareqa("demo")))
    assert isinstance(data, Dataset)
    return data


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
    trainer = HybridTrainer(model=model, args=args, train_dataset=data, loss=loss)
    assert isinstance(trainer.data_collator, DropColumns)  # no line to forget: the trainer wraps its collator
    original, tokenised_columns = trainer.data_collator.collator, set()

    class Spy:  # what reaches sentence-transformers' own collator, which tokenises every column it gets
        def __call__(self, features):
            tokenised_columns.update(k for f in features for k in f)
            return original(features)

        def __getattr__(self, name):
            return getattr(original, name)

    class RecordingDrop(DropColumns):
        def __call__(self, features):
            seen_columns.update(k for f in features for k in f)
            return super().__call__(features)

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
    assert len(sampler) == len({q for q in data["qid"]}) // 8  # an epoch: n_qids // batch_size batches
    mono = np.mean([data["query_lang"][b.indices[0]] == data["passage_lang"][b.indices[0]] for b in plan])
    assert abs(mono - 0.5) < 4 * np.sqrt(0.25 / len(plan)), (mono, len(plan))


def test_the_sampler_is_deterministic_per_seed_and_epoch():
    data = _dataset()
    a, b = (batch_sampler("hybrid")(data, batch_size=8, seed=3) for _ in range(2))
    assert a.batches(2) == b.batches(2)
    import pickle  # the trainer pickles its arguments (the factory among them) at every checkpoint

    assert pickle.loads(pickle.dumps(batch_sampler("hybrid")))(data, batch_size=8, seed=3).batches(2) == a.batches(
        2
    )
    assert a.batches(2) != b.batches(3)


def test_the_stock_trainer_is_refused_before_a_step(tmp_path):
    "The mistake of the issue (metadata columns fed to the loss as texts) cannot happen: no step is taken."
    data = _dataset()
    tiny_encoder(seed=0).save(tmp_path / "model")
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=2,
        batch_sampler=batch_sampler("hybrid", alpha=0.5),
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
    )
    with pytest.raises(RuntimeError, match="HybridTrainer"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_renamed_metadata_columns_are_dropped_too(tmp_path):
    data = _dataset().rename_column("qid", "question_id")
    tiny_encoder(seed=0).save(tmp_path / "model")
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=1,
        batch_sampler=batch_sampler("hybrid", columns={"qid_column": "question_id"}),
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = HybridTrainer(model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    assert "question_id" in trainer.data_collator.columns


def test_import_without_sentence_transformers_gives_the_install_line(tmp_path):
    import subprocess, sys, os

    fake = tmp_path / "sentence_transformers"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'sentence_transformers'\", name='sentence_transformers')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(
        [sys.executable, "-c", "import hybrid_replication.st_adapters"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .endswith('pip install "hybrid_replication[st]" (brings sentence-transformers and accelerate)')
    )
