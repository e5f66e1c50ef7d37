"""``transformers.Trainer`` trains a ``KnowledgeModel`` with no wrapper (``forward(**batch)`` returns loss and
logits; ``PaddingCollator`` collates), and its loss curve equals kadapt's own loop on the same seed and
batches: same init, same batches in the same order, AdamW with the same linear schedule and clipping."""
from __future__ import annotations

import json

import pytest
import torch
from run_kit import ADAPTER, BACKBONE_KW

from kadapt import FrozenBackbone, KnowledgeModel, PaddingCollator, build_plugin
from kadapt.runs.loop import EpochSampler

TEXTS = ["@ Obama @ was born in # Hawaii # .", "@ Paris @ is the capital of # France # .",
         "@ Marie Curie @ worked in # Paris # .", "@ Berlin @ is the capital of # Germany # .",
         "@ Obama @ studied at # Columbia University # .", "@ Pierre Curie @ worked in # Paris # .",
         "@ France @ has the capital # Paris # .", "@ Obama @ lived in # New York # ."] * 2
LABELS = ["born_in", "capital", "works_in", "capital", "studied_at", "works_in", "capital", "lived_in"] * 2
SEED, EPOCHS, BATCH, LR = 3, 2, 4, 5e-3


@pytest.fixture(scope="module")
def setup(tiny_backbone_dir, tmp_path_factory):
    backbone_dir = tiny_backbone_dir("bert", **BACKBONE_KW)
    root = tmp_path_factory.mktemp("trainer")
    torch.manual_seed(0)
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    build_plugin("kadapter", {"name": "factual", **ADAPTER}, backbone.spec).save_pretrained(root / "factual", backbone)
    return backbone_dir, root


def _model(setup) -> KnowledgeModel:
    backbone_dir, root = setup
    torch.manual_seed(11)  # the head's init
    return KnowledgeModel.from_pretrained(backbone_dir, plugins=[root / "factual"], head="relation_classification",
                                          labels=sorted(set(LABELS)), dropout=0.0)


def test_trainer_loss_curve_equals_kadapts_loop(setup, tmp_path):
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainingArguments

    ours = _model(setup)
    examples = ours.encode_texts(TEXTS, LABELS)
    ours.fit(examples, out=tmp_path / "loop", epochs=EPOCHS, batch_size=BATCH, lr=LR, seed=SEED, cpu=True,
             mixed_precision="no", log_every=1, max_grad_norm=1.0, keep_checkpoints=1)
    loop_losses = [r["loss"] for r in map(json.loads, (tmp_path / "loop" / "metrics.jsonl").read_text().splitlines())
                   if r.get("split") == "train"]

    # the loop's batches in the loop's order: its seeded permutation of each epoch, one after the other
    sampler = EpochSampler(len(examples), SEED)
    ordered = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        ordered += [examples[i] for i in sampler]

    class InLoopOrder(Trainer):  # Trainer would shuffle with a sampler of its own; the model is not wrapped
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    theirs = _model(setup)
    assert all(torch.equal(a, b) for a, b in zip(theirs.head.state_dict().values(), _model(setup).head.state_dict().values()))
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=BATCH, num_train_epochs=1,
                             learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                             max_grad_norm=1.0, optim="adamw_torch", logging_steps=1, save_strategy="no", report_to=[],
                             use_cpu=True, seed=SEED, disable_tqdm=True, remove_unused_columns=False)
    trainer = InLoopOrder(model=theirs, args=args, train_dataset=ordered,
                          data_collator=PaddingCollator(theirs.backbone.tokenizer))
    trainer.train()
    trainer_losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]

    assert len(loop_losses) == len(trainer_losses) == EPOCHS * len(TEXTS) // BATCH
    assert trainer_losses == pytest.approx(loop_losses, abs=1e-4)  # Trainer logs 4 decimals
    assert loop_losses[-1] < loop_losses[0] - 0.3  # it learned something: the curves are not flat
    for name, value in ours.head.state_dict().items():
        torch.testing.assert_close(theirs.head.state_dict()[name], value, atol=1e-6, rtol=1e-5)


def test_forward_takes_the_batch_as_one_dict_or_as_keywords(setup):
    model = _model(setup).eval()
    batch = PaddingCollator(model.backbone.tokenizer)(model.encode_texts(TEXTS[:3], LABELS[:3]))
    by_dict, by_keywords = model(batch), model(**batch)
    assert torch.equal(by_dict.logits, by_keywords.logits) and torch.equal(by_dict.loss, by_keywords.loss)
    assert by_keywords[0] is by_keywords.loss and by_keywords["logits"] is by_keywords.logits
    assert by_keywords[1:] == (by_keywords.logits,)
