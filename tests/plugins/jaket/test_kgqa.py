"""MetaQA-style KGQA: KB + question reader (official layout), k-hop candidates, Hits@1, training on a fixture."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.data.policy import ErrorPolicy
from kadapt.data.formats import read_records
from kadapt.core.errors import DataError
from kadapt.runs.finetune import evaluate_run, finetune
from kadapt.kg import read_kg
from kadapt.metrics import load_metric
from kadapt.core.objective import build_objective
from kadapt.store.plugin_dir import save_plugin
from kadapt.core.family import build_plugin
from kadapt.plugins.jaket.pretraining import build_memory
from kadapt.runs.recipe import recipe_from_dict
from kadapt.plugins.jaket.kgqa import khop_candidates

METAQA = Path(__file__).resolve().parents[2] / "fixtures" / "metaqa"
QA = METAQA / "1-hop" / "vanilla"


def test_readers_follow_the_official_layout():
    graph = read_kg(METAQA)
    assert (graph.num_entities, graph.num_relations, graph.num_triples) == (19, 5, 19)
    assert graph.entity_names[graph.entity_index("Top Hat")] == "Top Hat"
    records = read_records("metaqa", QA / "qa_train.txt")
    assert len(records) == 12
    first = records[1]
    assert first.question == "what movies did Fred Astaire act in" and first.topic == "Fred Astaire"
    assert first.question[slice(*first.topic_span)] == "Fred Astaire"
    assert first.answer == ("Flying Down to Rio", "Top Hat", "Swing Time")


def test_candidates_are_exactly_the_k_hop_neighbours():
    graph = read_kg(METAQA)
    csr = graph.csr(True)
    names = lambda ids: {graph.entity_names[i] for i in ids}
    fred = graph.entity_index("Fred Astaire")
    assert names(khop_candidates(csr, fred, 1)) == {"Flying Down to Rio", "Top Hat", "Swing Time"}
    assert names(khop_candidates(csr, fred, 2)) == {
        "Flying Down to Rio", "Top Hat", "Swing Time",  # 1 hop
        "Thornton Freeland", "Ginger Rogers", "1933", "Mark Sandrich", "1935", "Musical", "George Stevens"}
    kismet = graph.entity_index("Kismet")
    assert names(khop_candidates(csr, kismet, 1)) == {"William Dieterle", "Edward Knoblock", "Marlene Dietrich", "1944"}
    assert "Destry Rides Again" in names(khop_candidates(csr, kismet, 2))


def test_hits_at_1_by_hand_and_packaged_metric(tiny_backbone):
    head = build_objective("kgqa", 8, {"kg": str(METAQA)})
    batch = {"candidates": torch.tensor([[3, 5, 7], [2, 4, -100], [1, 6, 8]]),
             "candidate_labels": torch.tensor([[0, 1, 0], [1, 0, -100], [0, 0, 0]])}
    logits = torch.tensor([[0.1, 0.9, 0.3], [0.2, 0.8, -1e9], [0.5, 0.1, 0.0]])
    counts = head.count(logits, batch)
    # row 0: top = candidate 5 (an answer); row 1: top = candidate 4 (not); row 2: no answer among candidates
    assert counts == {"n": 3.0, "hits": 1.0, "answerable": 2.0}
    assert head.summarize(counts) == {"hits_at_1": 1 / 3, "answer_coverage": 2 / 3}
    metric = load_metric("hits_at_1")
    out = metric.compute(predictions=["Top Hat", "1933", "Kismet"],
                         references=[["Top Hat", "Swing Time"], ["1935"], ["Musical"]])
    assert out == {"hits_at_1": pytest.approx(1 / 3)}


def test_bad_question_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "qa_dev.txt"
    bad.write_text("who directed [Kismet]\tWilliam Dieterle\nwho directed Kismet\tWilliam Dieterle\nno answers [Kismet]\n")
    with pytest.raises(DataError, match=r"qa_dev.txt:2: no \[topic entity\]"):
        read_records("metaqa", bad)
    policy = ErrorPolicy("skip")
    assert len(read_records("metaqa", bad, policy)) == 1 and policy.skipped == 2
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "kb.txt").write_text("A|rel|B\nA|rel\n")
    with pytest.raises(DataError, match=r"kb.txt:2: expected head\|relation\|tail"):
        read_kg(kb)


@pytest.fixture(scope="module")
def jaket_dir(tiny_backbone_dir, tmp_path_factory):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert"))
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"fanouts": [4, 4]}, backbone.spec)
    out = tmp_path_factory.mktemp("jaket-metaqa")
    save_plugin(plugin, out, backbone.fingerprint, memory=build_memory(backbone, read_kg(METAQA), plugin).to_tensors())
    return out


def test_kgqa_trains_on_the_fixture_and_evaluates(tiny_backbone_dir, jaket_dir, tmp_path):
    recipe = recipe_from_dict({
        "kind": "finetune", "name": "kgqa-tiny", "backbone": {"name_or_path": str(tiny_backbone_dir("bert"))},
        "plugins": [str(jaket_dir)],
        "objective": {"name": "kgqa", "config": {"kg": str(METAQA), "memory": str(jaket_dir / "memory.safetensors"),
                                                  "hops": 1, "dropout": 0.0}},
        "data": {"format": "metaqa", "train": str(QA / "qa_train.txt"), "dev": str(QA / "qa_test.txt"),
                 "test": str(QA / "qa_test.txt"), "max_length": 32},
        "finetune": {"plugins": "trainable"},
        "training": {"epochs": 25, "batch_size": 4, "lr": 0.01, "log_every": 1, "seed": 0},
        "output": {"dir": str(tmp_path / "run")},
    })
    result = finetune(recipe)
    losses = [json.loads(x)["loss"] for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["split"] == "train"]
    assert len(losses) == 75 and sum(losses[-9:]) / 9 < 0.5 * sum(losses[:9]) / 9
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    predictions = [json.loads(x) for x in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4 and metrics["test"]["answer_coverage"] == 1.0
    by_hand = sum(p["prediction"] in p["gold"] for p in predictions) / 4
    assert metrics["test"]["hits_at_1"] == by_hand
    assert load_metric("hits_at_1").compute(predictions=[p["prediction"] for p in predictions],
                                            references=[p["gold"] for p in predictions])["hits_at_1"] == by_hand
    again = evaluate_run(result.run_dir, QA / "qa_test.txt")
    assert again["hits_at_1"] == by_hand and again["examples"] == 4
