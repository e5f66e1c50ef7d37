"""LAMA probe head: MLM layer over frozen features trained on text, P@1 on cloze queries, single-token
objects enforced and counted, macro P@1 per relation, a probe run reloads."""
from __future__ import annotations

import json

import pytest
import torch
from task_kit import batch_of, fit

from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError, KadaptError
from kadapt.runs.finetune import evaluate_run, finetune
from kadapt.runs.recipe import recipe_from_dict
from kadapt.runs.context import encode_records


def test_cloze_queries_mask_the_single_token_object(head_model, fixtures):
    model = head_model("lama_probe")
    tok = model.backbone.tokenizer
    records = read_records("lama_cloze", fixtures / "lama")
    feats = model.head.encode(records[0], tok, 32)  # "Barack Obama was born in [MASK] ." / Hawaii
    (pos,) = [i for i, label in enumerate(feats["labels"]) if label != -100]
    assert feats["input_ids"][pos] == tok.mask_token_id
    assert tok.convert_ids_to_tokens(feats["labels"][pos]) == "hawaii" and feats["relation_id"] == 19
    assert model.head.decoder.out_features == len(tok)  # created from the tokenizer at first encode
    policy = ErrorPolicy("skip")
    encoded, _ = encode_records(model.head, records, tok, 32, policy, "test")
    assert len(encoded) == 4 and policy.summary() == {"multi-token object": 1}  # "Unbelievablyville Township"
    with pytest.raises(DataError, match=r"P19.jsonl:3: multi-token object: 'Unbelievablyville Township' is \d+ tokens"):
        model.head.encode(records[2], tok, 32)


def test_precision_at_1_by_hand(head_model, fixtures):
    model = head_model("lama_probe")
    records = [r for r in read_records("lama_cloze", fixtures / "lama") if "Township" not in r.answer]
    batch = batch_of(model, records, 32)
    gold = batch["labels"][batch["labels"] != -100]
    logits = torch.zeros(len(records), model.head.vocab_size)
    logits[torch.arange(len(records)), gold] = 1.0
    logits[1, gold[1]] = 0.0  # P19 "Paris" for Marie Curie wrong; P19 1/2 right, P36 2/2 right
    metrics = model.head.summarize(model.head.count(logits, batch))
    assert metrics["precision_at_1"] == pytest.approx(3 / 4) and metrics["queries"] == 4
    assert metrics["precision_at_1_macro"] == pytest.approx((1 / 2 + 1) / 2)
    assert model.head.predict(logits, batch)[0][0] == "hawaii"


def test_mlm_layer_learns_on_text(head_model, fixtures):
    model = head_model("lama_probe", {"mask_probability": 0.3})
    sentences = read_records("conllu", fixtures / "sample.conllu")
    batch = batch_of(model, sentences, 48)
    again = batch_of(model, sentences, 48)
    assert torch.equal(batch["input_ids"], again["input_ids"])  # masking is seeded per record
    assert int((batch["labels"] != -100).sum()) >= len(sentences)
    losses = fit(model, batch, steps=30)
    assert losses[-1] < 0.5 * losses[0]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        p.numel() for p in model.head.parameters())  # only the MLM layer trains


def test_probe_run_trains_on_text_and_tests_on_cloze(fixtures, backbone_dir, tmp_path):
    recipe = recipe_from_dict({
        "kind": "finetune", "name": "probe-tiny", "backbone": {"name_or_path": str(backbone_dir)},
        "objective": {"name": "lama_probe"},
        "data": {"format": "conllu", "train": str(fixtures / "sample.conllu"), "test_format": "lama_cloze",
                 "test": str(fixtures / "lama"), "max_length": 32, "on_error": "skip"},
        "training": {"epochs": 2, "batch_size": 4, "lr": 1e-2, "cpu": True, "mixed_precision": "no"},
        "output": {"dir": str(tmp_path / "run")}})
    result = finetune(recipe)
    assert result.metrics["skipped_records"] == {"multi-token object": 1}
    assert result.metrics["test"]["queries"] == 4
    predictions = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 and len(predictions[0]["prediction"]) == 5  # top-5 tokens
    again = evaluate_run(tmp_path / "run", fixtures / "lama", on_error="skip")
    assert again["precision_at_1"] == result.metrics["test"]["precision_at_1"]
    assert again["skipped_records"] == {"multi-token object": 1}


def test_decoder_can_start_from_the_word_embeddings(head_model):
    model = head_model("lama_probe", {"decoder_init": "embeddings"})
    model.head.bind_backbone(model.backbone)
    words = model.backbone.model.get_input_embeddings().weight
    assert torch.equal(model.head.decoder.weight[:, : words.shape[1]], words)
    assert not model.head.decoder.bias.any()
    with pytest.raises(KadaptError, match="^objective: bad config for objective 'lama_probe': decoder_init must be "
                                          "'random' or 'embeddings', got 'tied'$"):
        head_model("lama_probe", {"decoder_init": "tied"})
