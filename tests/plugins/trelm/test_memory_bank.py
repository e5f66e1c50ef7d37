"""TRELM knowledge-augmented memory bank (eq. 4–8): window mean, moving average, global memory,
input mixing and the exact λ schedule."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kadapt.core.plugin import StepInfo
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.plugins.trelm.memory_bank import (
    KnowledgeMemoryBank,
    memory_lambda,
    window_mean,
)


def test_lambda_schedule_is_exact():
    assert [memory_lambda(0.5, 2.0, q) for q in range(5)] == [0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert memory_lambda(0.5, 1.0, 7) == 0.5  # β = 1: no decay (the paper's worst setting)
    assert memory_lambda(0.6, 3.0, 2) == 0.6 / 9


def test_plugin_lambda_follows_the_epoch(backbone):
    plugin = build_plugin("trelm", {"neurons_per_layer": [2], "memory_slots": 8, "routing": "periodic",
                                    "reselect_every": 0}, backbone.spec)
    plugin.selections.fill_(1)  # selection done: before_step only sets the epoch
    seen = []
    for epoch in range(3):
        plugin.on_step(StepInfo(None, {}, step=epoch, epoch=epoch))
        seen.append(plugin.current_lambda)
    assert seen == [0.5, 0.25, 0.125]


def test_window_mean_clips_to_real_tokens():
    hidden = torch.arange(12, dtype=torch.float).view(1, 6, 2)  # positions 0..5
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])  # position 5 is padding
    start, end = torch.tensor([2]), torch.tensor([3])  # mention = position 2
    torch.testing.assert_close(window_mean(hidden, mask, start, end, 0), hidden[:, 2])
    torch.testing.assert_close(window_mean(hidden, mask, start, end, 1), hidden[0, 1:4].mean(0, keepdim=True))
    # k larger than the sequence: every real token, padding left out
    torch.testing.assert_close(window_mean(hidden, mask, start, end, 100), hidden[0, :5].mean(0, keepdim=True))


def test_bank_moving_average_and_global_memory():
    bank = KnowledgeMemoryBank(slots=4, hidden_size=2, gamma=0.25)
    keys = torch.tensor([5, 9])  # slots 1 and 1: a collision shares the row, updated in order
    init = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    local, glob = bank.lookup(keys, init)
    torch.testing.assert_close(local, init)
    torch.testing.assert_close(glob, init)  # no context yet: global falls back to local
    bank.update(keys[:1], torch.tensor([[3.0, 5.0]]), torch.tensor([[2.0, 4.0]]), init[:1])
    # first occurrence: M = init, then M = 0.75·M + 0.25·ctx
    torch.testing.assert_close(bank.local[1], torch.tensor([1.5, 2.0]))
    # a context different from the stored memory: (1-γ)·M + γ·ctx = 0.75·[1.5, 2] + 0.25·[5, -2]
    bank.update(torch.tensor([1]), torch.tensor([[5.0, -2.0]]), torch.tensor([[4.0, 0.0]]), init[:1])
    torch.testing.assert_close(bank.local[1], torch.tensor([2.375, 1.0]))
    other_gamma = KnowledgeMemoryBank(slots=4, hidden_size=2, gamma=0.5)
    other_gamma.update(torch.tensor([1, 1]), torch.tensor([[3.0, 5.0], [5.0, -2.0]]), torch.zeros(2, 2), init[:2])
    torch.testing.assert_close(other_gamma.local[1], torch.tensor([3.5, 0.5]))  # 0.5·(0.5·[1,1]+0.5·[3,5]) + 0.5·[5,-2]
    local, glob = bank.lookup(torch.tensor([1, 2]), torch.tensor([[9.0, 9.0], [7.0, 7.0]]))
    torch.testing.assert_close(glob[0], torch.tensor([3.0, 2.0]))  # mean of the [CLS] states
    torch.testing.assert_close(local[1], torch.tensor([7.0, 7.0]))  # unseen slot: its initial value
    saved = bank.tensors()
    assert saved["slots"].tolist() == [1]
    other = KnowledgeMemoryBank(slots=4, hidden_size=2, gamma=0.25)
    other.load_tensors(saved)
    for name in ("local", "global_sum", "global_count", "seen"):
        assert torch.equal(getattr(other, name), getattr(bank, name))
    with pytest.raises(KadaptError, match="memory_gamma must lie in"):
        KnowledgeMemoryBank(4, 2, gamma=1.0)


def test_input_mixing_at_important_subject_tokens(backbone):
    """Eq. 7 at the subject tokens of the rows SI marks important; other tokens keep E_p."""
    plugin = build_plugin("trelm", {"neurons_per_layer": [2], "memory_slots": 8, "important_fraction": 0.5},
                          backbone.spec)
    plugin.train()
    enc = backbone.tokenizer(["Barack Obama was born in Hawaii .", "Paris is the capital of France ."],
                             return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    batch = {"subj_start": torch.tensor([1, 1]), "subj_end": torch.tensor([3, 2]), "subj_key": torch.tensor([3, 4])}
    plugin.memory.local[3] = 1.0
    plugin.memory.seen[3] = True
    embedded = backbone.embed(ids)
    mixed, initial = plugin._mix_memory(backbone, ids, mask, embedded, batch)
    subject = plugin._subject_mask(batch, ids.shape[1])
    important = plugin.important_rows(backbone, ids, mask, subject)
    assert int(important.sum()) == 1  # half of the two rows
    row = int(important.nonzero())
    torch.testing.assert_close(initial[1], embedded[1, 1])
    local, glob = plugin.memory.lookup(batch["subj_key"], initial)
    lam = plugin.current_lambda
    expected = (1 - lam) * embedded[row] + lam / 2 * (local[row] + glob[row])
    tokens = subject[row]
    torch.testing.assert_close(mixed[row][tokens], expected[tokens])
    torch.testing.assert_close(mixed[row][~tokens], embedded[row][~tokens])
    torch.testing.assert_close(mixed[1 - row], embedded[1 - row])
    si = plugin.semantic_importance(backbone, ids, mask, subject)
    # eq. 1 by hand: 1 / cos of the mean-pooled last states of the sentence and of the subject-masked one
    with torch.no_grad():
        plain = backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
        rep_ids = ids.masked_fill(subject, backbone.tokenizer.mask_token_id)
        rep = backbone.model(input_ids=rep_ids, attention_mask=mask).last_hidden_state
    for r in range(2):
        n = int(mask[r].sum())
        h_o, h_rep = plain[r, :n].mean(0), rep[r, :n].mean(0)
        assert float(si[r]) == pytest.approx(float(1 / F.cosine_similarity(h_o, h_rep, dim=0)), rel=1e-5)
    assert row == int(si.argmax())


def test_bank_survives_a_training_checkpoint(tmp_path, backbone):
    """The bank is not in ``state_dict`` (it is saved sparse to memory.safetensors), so checkpoints
    carry it through the plug-in's ``extra_tensors``: a resumed run continues with the same bank."""
    from kadapt.core.model import KnowledgeModel
    from kadapt.runs.checkpoint import load_checkpoint, resumable_state, save_checkpoint

    def model() -> KnowledgeModel:
        torch.manual_seed(0)
        plugin = build_plugin("trelm", {"neurons_per_layer": [2], "memory_slots": 4}, backbone.spec)
        return KnowledgeModel(backbone, [plugin])

    def parts(module):
        optimizer = torch.optim.AdamW(module.parameters(), lr=0.1)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    trained = model()
    hidden = backbone.spec.hidden_size
    bank = trained.plugins[0].memory
    bank.update(torch.tensor([1, 2]), torch.rand(2, hidden), torch.rand(2, hidden), torch.rand(2, hidden))
    state = resumable_state(trained)
    assert {"plugins.0::slots", "plugins.0::local", "plugins.0::global_sum", "plugins.0::global_count"} <= set(state)
    optimizer, scheduler = parts(trained)
    save_checkpoint(tmp_path / "step-1", trainable=state, optimizer=optimizer, scheduler=scheduler,
                    trainer_state={"global_step": 1})
    resumed = model()
    optimizer, scheduler = parts(resumed)
    load_checkpoint(tmp_path / "step-1", module=resumed, optimizer=optimizer, scheduler=scheduler)
    for name in ("local", "global_sum", "global_count", "seen"):
        assert torch.equal(getattr(resumed.plugins[0].memory, name), getattr(bank, name))
    assert bool(bank.seen.any())

