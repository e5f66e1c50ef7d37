"""FewRel N-way K-shot with PAIR: seeded episodes, joint pair encoding, class score = mean over K."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.data.formats import read_records
from kadapt.core.errors import KadaptError
from kadapt.core.objective import build_objective
from kadapt.tasks.fewshot_pair import encode_pair, sample_episodes

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fewrel_4rel.json"


@pytest.fixture(scope="module")
def records():
    return read_records("fewrel", FIXTURE)


def test_episodes_are_seeded_and_never_reuse_the_query_as_support(records):
    a = sample_episodes(records, 3, 2, 20, seed=5)
    assert a == sample_episodes(records, 3, 2, 20, seed=5)
    assert a != sample_episodes(records, 3, 2, 20, seed=6)
    for ep in a:
        assert len(ep.classes) == len(set(ep.classes)) == 3 and all(len(s) == 2 for s in ep.support)
        assert ep.query.label == ep.classes[ep.label]
        assert all(s.label == c for c, sup in zip(ep.classes, ep.support) for s in sup)
        assert ep.query not in [s for sup in ep.support for s in sup]
    with pytest.raises(KadaptError, match="need 5 relations"):
        sample_episodes(records, 5, 1, 1, seed=0)


def test_holdout_relations_make_train_and_test_relation_disjoint(records):
    head = build_objective("fewshot_pair", 4, {"n_way": 2, "k_shot": 1, "train_episodes": 10,
                                               "eval_episodes": 6, "dev_episodes": 3, "holdout_relations": 2})
    train = head.prepare_records(records, "train", 42)
    test = head.prepare_records(records, "test", 42)
    assert len(train) == 10 and len(test) == 6 and len(head.prepare_records(records, "dev", 42)) == 3
    train_rel = {c for e in train for c in e.classes}
    test_rel = {c for e in test for c in e.classes}
    assert len(train_rel) == len(test_rel) == 2 and not train_rel & test_rel


def test_pair_encoding_marks_both_sentences(records, tiny_backbone):
    tok = tiny_backbone.tokenizer
    pair = encode_pair(records[0], records[4], tok, 96)
    tokens = tok.convert_ids_to_tokens(pair["input_ids"])
    q_subj, q_obj, s_subj, s_obj = pair["positions"]
    sep = tokens.index(tok.sep_token)
    assert [tokens[i] for i in pair["positions"]] == ["@", "#", "@", "#"]
    assert max(q_subj, q_obj) < sep < min(s_subj, s_obj)


def test_forward_averages_pair_scores_per_class():
    head = build_objective("fewshot_pair", 2, {"n_way": 2, "k_shot": 2, "pooling": "cls", "dropout": 0.0})
    with torch.no_grad():
        head.scorer.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.scorer.bias.zero_()
    feats = torch.zeros(1, 4, 3, 2)
    feats[0, :, 0, 0] = torch.tensor([1.0, 3.0, 5.0, -1.0])  # pair scores: class 0 -> 1, 3; class 1 -> 5, -1
    out = head(feats, {"labels": torch.tensor([1])})
    torch.testing.assert_close(out.logits, torch.tensor([[2.0, 2.0]]))
    assert out.loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_pair_head_learns_on_grouped_batches(records, tiny_backbone):
    tok = tiny_backbone.tokenizer
    model = KnowledgeModel(tiny_backbone, [])
    torch.manual_seed(0)
    model.head = build_objective("fewshot_pair", model.feature_size,
                                 {"n_way": 2, "k_shot": 1, "train_episodes": 16, "hidden_size": 32, "dropout": 0.0})
    episodes = model.head.prepare_records(records, "train", 0)
    batch = collate([model.head.encode(e, tok, 96) for e in episodes], tok.pad_token_id)
    assert batch["input_ids"].shape[:2] == (16, 2) and batch["q_subj_pos"].shape == (16, 2)
    assert batch["attention_mask"].shape == batch["input_ids"].shape
    opt = torch.optim.AdamW(model.head.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        out = model(batch)
        assert out.logits.shape == (16, 2)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_collate_pads_ragged_groups_with_masked_rows():
    batch = collate([{"input_ids": [[1, 2], [3]]}, {"input_ids": [[1]]}], 0)
    assert batch["input_ids"].tolist() == [[[1, 2], [3, 0]], [[1, 0], [0, 0]]]
    # the missing second row of example 2 is all padding with an all-zero mask
    assert batch["attention_mask"].tolist() == [[[1, 1], [1, 0]], [[1, 0], [0, 0]]]
