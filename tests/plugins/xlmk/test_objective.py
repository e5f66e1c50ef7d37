"""The XLM-K objective over a tiny XLM-R: encoding, projection shapes, exact loss, queue, frozen backbone."""
from __future__ import annotations

import pytest
import torch
from xlmk_kit import FIXTURE, PLUGIN, build_backbone

from kadapt.core.backbone import FrozenBackbone, hash_state_dict
from kadapt.core.model import KnowledgeModel
from kadapt.data.encoding import collate
from kadapt.plugins.xlmk.data import (
    MentionExample,
    TripleExample,
    read_knowledge,
    stable_hash,
)
from kadapt.core.errors import DataError
from kadapt.core.objective import build_objective
from kadapt.plugins.xlmk.objective import ENTITY_TASK, OBJECT_TASK, XLMKObjective
from kadapt.plugins.xlmk.contrastive import info_nce
from kadapt.core.family import build_plugin


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return FrozenBackbone.from_pretrained(build_backbone(tmp_path_factory.mktemp("xlmr")))


@pytest.fixture(scope="module")
def records():
    return list(read_knowledge(FIXTURE))


def _model(backbone, records, **config):
    torch.manual_seed(0)
    plugin = build_plugin("xlmk", PLUGIN, backbone.spec)
    model = KnowledgeModel(backbone, [plugin])
    cfg = XLMKObjective.configure({"queue_size": 6, **config}, records)
    model.head = build_objective("xlmk_contrastive", model.feature_size, cfg)
    return model


def _batch(model, records, tok):
    return collate([model.head.encode(r, tok, 32) for r in records], tok.pad_token_id)


def test_complete_config_and_projection_shapes(backbone, records):
    model = _model(backbone, records, projection_size=24, output_size=12)
    head = model.head
    assert head.relations == ["P1376", "P17", "P36", "P37", "P551", "P937"]
    f = model.feature_size
    assert f == 2 * backbone.spec.hidden_size  # [backbone_last ; plug-in]
    for proj in (head.mention_proj, head.description_proj, head.subject_proj, head.object_proj):
        assert proj[0].weight.shape == (24, f) and proj[2].weight.shape == (12, 24)
        assert proj[0].bias is None and proj[2].bias is None  # W·ReLU(W·x), no bias (eq. 1-4)
    assert head.relation_embedding.weight.shape == (6, f)
    assert head.entity_queue.keys.shape == (6, 12) and head.object_queue.keys.shape == (6, 12)


def test_encode_masks_the_mention_and_marks_its_position(backbone, records):
    head = _model(backbone, records).head
    tok = backbone.tokenizer
    mention = records[0]
    assert isinstance(mention, MentionExample) and mention.description_lang != mention.lang
    feats = head.encode(mention, tok, 32)
    assert feats["input_ids"][feats["q_pos"]] == tok.mask_token_id
    assert feats["task"] == ENTITY_TASK and feats["key_entity"] == stable_hash(mention.entity)
    assert feats["key_input_ids"] == tok(mention.description)["input_ids"]
    triple = records[1]
    assert isinstance(triple, TripleExample) and triple.subject_lang != triple.object_lang
    feats = head.encode(triple, tok, 32)
    assert feats["task"] == OBJECT_TASK and feats["q_pos"] == 0
    assert feats["relation"] == head.relations.index(triple.relation)


def test_loss_is_eq5_over_in_batch_then_queued_candidates(backbone, records):
    model = _model(backbone, records, normalize=True, temperature=0.5, queue_init="empty")
    tok = backbone.tokenizer
    first, second = records[:6], records[6:12]
    model.train()
    for module in model.modules():  # deterministic forward (no dropout) to recompute by hand
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    head = model.head
    batch = _batch(model, first, tok)
    out = model(batch)  # empty queues at the first step: in-batch candidates only
    with torch.no_grad():
        q, k = head.encode_pair(model, batch)
        want = 0.0
        for task in (ENTITY_TASK, OBJECT_TASK):
            rows = (batch["task"] == task).nonzero().flatten()
            zq = head.project_queries(task, q[rows], batch["relation"][rows])
            zk = head.project_keys(task, k[rows])
            want += info_nce(zq, zk, batch["key_entity"][rows], normalize=True, temperature=0.5).item()
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    assert int(head.entity_queue.filled) == 3 and int(head.object_queue.filled) == 3
    queued = head.entity_queue.candidates()[0].clone()

    batch2 = _batch(model, second, tok)
    out2 = model(batch2)
    with torch.no_grad():
        q, k = head.encode_pair(model, batch2)
        rows = (batch2["task"] == ENTITY_TASK).nonzero().flatten()
        zq, zk = head.project_queries(ENTITY_TASK, q[rows]), head.project_keys(ENTITY_TASK, k[rows])
        ids = batch2["key_entity"][rows]
        queue_ids = batch["key_entity"][(batch["task"] == ENTITY_TASK)]
        entity = info_nce(zq, zk, ids, queued, queue_ids, normalize=True, temperature=0.5).item()
        rows = (batch2["task"] == OBJECT_TASK).nonzero().flatten()
        zq = head.project_queries(OBJECT_TASK, q[rows], batch2["relation"][rows])
        zk = head.project_keys(OBJECT_TASK, k[rows])
        prev = batch["task"] == OBJECT_TASK
        obj = info_nce(zq, zk, batch2["key_entity"][rows], head.object_queue.keys[:3],
                       batch["key_entity"][prev], normalize=True, temperature=0.5).item()
    assert out2.loss.item() == pytest.approx(entity + obj, rel=1e-5)
    # the queue holds the keys of both batches in arrival order (3 + 3 = 6 = full)
    assert torch.equal(head.entity_queue.keys[:3], queued)
    assert int(head.entity_queue.filled) == 6 and int(head.entity_queue.ptr) == 0


def test_backbone_untouched_and_only_plugin_and_heads_get_gradients(backbone, records):
    model = _model(backbone, records)
    before = hash_state_dict(backbone.model.state_dict())
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(_batch(model, records[:8], backbone.tokenizer))
    out.loss.backward()
    opt.step()
    assert all(p.grad is None for p in backbone.model.parameters())
    assert hash_state_dict(backbone.model.state_dict()) == before
    assert all(p.grad is not None for p in model.plugins[0].parameters())
    assert model.head.mention_proj[0].weight.grad is not None and model.head.relation_embedding.weight.grad is not None


def test_eval_uses_in_batch_candidates_and_leaves_queue_alone(backbone, records):
    model = _model(backbone, records)
    head = model.head
    start_keys = head.entity_queue.keys.clone()
    model.eval()
    batch = _batch(model, records[:8], backbone.tokenizer)
    out = model(batch)
    # the randomly initialised queue (default) is neither used nor advanced in evaluation
    assert int(head.entity_queue.filled) == 6 and int(head.entity_queue.ptr) == 0
    assert torch.equal(head.entity_queue.keys, start_keys)
    with torch.no_grad():  # in-batch top-1 by hand: positive key scores highest among its task's keys
        q, k = head.encode_pair(model, batch)
        want = {}
        for task, label in ((ENTITY_TASK, "entity"), (OBJECT_TASK, "object")):
            rows = (batch["task"] == task).nonzero().flatten()
            scores = head.project_queries(task, q[rows], batch["relation"][rows]) @ head.project_keys(task, k[rows]).T
            want[label] = (len(rows), int((scores.argmax(-1) == torch.arange(len(rows))).sum()))
    counts = head.count(out.logits, batch)
    assert counts["entity_n"] + counts["object_n"] == 8
    assert (counts["entity_n"], counts["entity_correct"]) == want["entity"]
    assert (counts["object_n"], counts["object_correct"]) == want["object"]
    metrics = XLMKObjective.summarize(counts)
    assert metrics["accuracy"] == pytest.approx((want["entity"][1] + want["object"][1]) / 8)


def test_default_loss_uses_the_random_queue_and_bidirectional_switch(backbone, records):
    """Paper defaults: the first step already has queue_size random candidates, no same-entity mask;
    bidirectional: true is the anchor code's two-direction loss — both checked against info_nce by hand."""
    for bidirectional in (False, True):
        model = _model(backbone, records, bidirectional=bidirectional)
        head = model.head
        assert head.options["mask_same_entity"] is False and head.options["queue_init"] == "random"
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        batch = _batch(model, records[:6], backbone.tokenizer)
        queued = {t: (head.tasks[t][2].keys.clone(), head.tasks[t][2].ids.clone()) for t in head.tasks}
        out = model(batch)
        with torch.no_grad():
            q, k = head.encode_pair(model, batch)
            want = 0.0
            for task in (ENTITY_TASK, OBJECT_TASK):
                rows = (batch["task"] == task).nonzero().flatten()
                zq = head.project_queries(task, q[rows], batch["relation"][rows])
                zk = head.project_keys(task, k[rows])
                want += info_nce(zq, zk, batch["key_entity"][rows], *queued[task], bidirectional=bidirectional).item()
        assert out.loss.item() == pytest.approx(want, rel=1e-5)
        assert queued[ENTITY_TASK][0].shape == (6, head.entity_queue.keys.shape[1])


def test_bad_records_are_data_errors(backbone, records):
    head = _model(backbone, records).head
    tok = backbone.tokenizer
    triple = next(r for r in records if isinstance(r, TripleExample))
    unseen = TripleExample(triple.subject, "P999", triple.object, "a", "en", "b", "de", "t.jsonl:4")
    with pytest.raises(DataError, match=r"t.jsonl:4: relation 'P999' unseen in training"):
        head.encode(unseen, tok, 32)
    long_text = "word " * 60 + "Paris"
    cut = MentionExample(long_text, (len(long_text) - 5, len(long_text)), "Q90", "en", "Paris", "de", "m.jsonl:2")
    with pytest.raises(DataError, match=r"m.jsonl:2: mention cut off by max_length=16"):
        head.encode(cut, tok, 16)
    only_entities = XLMKObjective.configure({}, [r for r in records if isinstance(r, MentionExample)])
    assert only_entities["object_task"] is False and only_entities["relations"] == []
    head2 = build_objective("xlmk_contrastive", 64, only_entities)
    with pytest.raises(DataError, match="no object task"):
        head2.encode(triple, tok, 32)


def test_batch_norm_projections_accept_single_row_tasks(backbone, records):
    model = _model(backbone, records, batch_norm=True)
    model.train()
    out = model(_batch(model, records[:2], backbone.tokenizer))  # one mention + one triple
    out.loss.backward()
    assert torch.isfinite(out.loss)
    bn = model.head.mention_proj[1]
    assert isinstance(bn, torch.nn.BatchNorm1d) and int(bn.num_batches_tracked) == 0  # running stats used
    out = model(_batch(model, records[:8], backbone.tokenizer))
    assert int(bn.num_batches_tracked) == 1
    assert "mention_proj.1.running_mean" in model.head.state_dict()
    assert not any("running" in k for k in model.head.extra_tensors())


def test_mlm_term_adds_the_tied_head_loss_at_dynamically_masked_tokens(backbone, records):
    from kadapt.core.mlm import choose_masked_positions

    cfg = XLMKObjective.configure_for_backbone({"mlm_weight": 0.5, "mlm_rate": 0.3}, backbone.spec)
    assert (cfg["vocab_size"], cfg["hidden_size"]) == (backbone.spec.vocab_size, backbone.spec.hidden_size)
    model = _model(backbone, records, **cfg)
    plain = _model(backbone, records)  # same seed: same plug-in, projections and queues
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "mlm_head" not in k})
    assert model.head.config_dict()["mlm_weight"] == 0.5 and plain.head.mlm_head is None
    model.train(), plain.train()
    batch = _batch(model, records[:8], backbone.tokenizer)
    tok = backbone.tokenizer
    torch.manual_seed(5)
    out = model(batch)
    # the same draw by hand: which tokens were masked, then the contrastive loss on the masked input
    # (what `plain` computes on those ids) plus 0.5 × CE of the tied head at the masked tokens
    torch.manual_seed(5)
    q_pos = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    q_pos[torch.arange(8), batch["q_pos"]] = True
    chosen = choose_masked_positions(batch["input_ids"], batch["attention_mask"], 0.3, tok.all_special_ids, keep=q_pos)
    assert 0 < int(chosen.sum()) < int(batch["attention_mask"].sum())
    assert not bool((chosen & q_pos).any())
    masked = {**batch, "input_ids": batch["input_ids"].masked_fill(chosen, tok.mask_token_id)}
    contrastive = plain(masked).loss
    feats = model.features(masked["input_ids"], masked["attention_mask"])
    head = model.head.mlm_head
    hidden = torch.nn.functional.layer_norm(torch.nn.functional.gelu(feats[chosen] @ head.transform.weight.T + head.transform.bias),
                                            (backbone.spec.hidden_size,), head.norm.weight, head.norm.bias)
    logits = hidden @ backbone.model.get_input_embeddings().weight.T + head.bias
    mlm = torch.nn.functional.cross_entropy(logits, batch["input_ids"][chosen])
    torch.testing.assert_close(out.loss, contrastive + 0.5 * mlm, rtol=1e-5, atol=1e-6)
    out.loss.backward()
    assert head.transform.weight.grad is not None and all(p.grad is None for p in backbone.model.parameters())
    model.eval()
    assert model.head._mlm_inputs(model, batch)[1] is None  # evaluation: no MLM masking


def test_mlm_term_without_backbone_sizes_is_one_line(backbone):
    from kadapt.core.errors import KadaptError

    with pytest.raises(KadaptError, match="mlm_weight > 0 needs the backbone's vocab_size and hidden_size"):
        build_objective("xlmk_contrastive", 8, {"relations": ["r"], "mlm_weight": 1.0})
    with pytest.raises(KadaptError, match="0 < mlm_rate < 1, got 1.0, 1.5"):
        build_objective("xlmk_contrastive", 8, {"relations": ["r"], "mlm_weight": 1.0, "mlm_rate": 1.5})
