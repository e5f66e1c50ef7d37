"""Issue 16 "Must show": each bad TRELM input gives one clear line (the CLI: exit 2, one stderr line) or a
counted skip — checked by the exact message. A relation unseen in the KG; an entity without a KG row
(counted); ``ig_steps: 0``; an empty selection with injection on (no neuron to train, no important
entity position possible, a batch where SI marks none)."""
from __future__ import annotations

import pytest
import torch
from run_kit import training, write_yaml

from kadapt.cli.app import main
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.core.objective import build_objective
from kadapt.data.encoding import collate
from kadapt.data.records import RelationExample
from kadapt.plugins.trelm.objective import entity_key

OBAMA = RelationExample("Barack Obama was born in Hawaii .", (0, 12), (25, 31), "P19", "r:1")
CURIE = RelationExample("Marie Curie worked in Paris .", (0, 11), (22, 27), "P937", "r:3")


@pytest.fixture()
def kg_dir(tmp_path):
    root = tmp_path / "kg"
    root.mkdir()
    (root / "entity2text.txt").write_text("e1\tBarack Obama, president\ne2\tHawaii, a state\n")
    (root / "relation2text.txt").write_text("P19\tplace of birth\n")
    (root / "train.tsv").write_text("e1\tP19\te2\n")
    return root


def _batch(backbone, records):
    head = build_objective("trelm_knowledge", 2 * backbone.spec.hidden_size, {"inject_both_directions": False})
    head.bind_backbone(backbone)
    return collate([head.encode(r, backbone.tokenizer, 32) for r in records], backbone.tokenizer.pad_token_id)


def _plugin(backbone, kg_dir, **config):
    return build_plugin("trelm", {"neurons_per_layer": [2], "memory_slots": 8, "important_fraction": 1.0,
                                  "inject_kg": str(kg_dir), **config}, backbone.spec).train()


def _error(backbone, **config) -> str:
    with pytest.raises(KadaptError) as err:
        build_plugin("trelm", config, backbone.spec)
    return str(err.value)


def _cli_error(err: str) -> str:
    """The one error line of the CLI's stderr (a progress bar may share the stream, never the message)."""
    assert err.count("kadapt: error: ") == 1
    return err.split("kadapt: error: ")[1].split("\n")[0]


def test_relation_unseen_in_the_kg_is_one_line(backbone, kg_dir):
    plugin = _plugin(backbone, kg_dir)
    batch = _batch(backbone, [CURIE])  # P937 is not a relation of the KG
    with pytest.raises(KadaptError) as err:
        plugin.inside_features(backbone, batch["input_ids"], batch["attention_mask"], batch)
    assert str(err.value) == (f"trelm inject_relation: a training sentence's relation (key {entity_key('P937')}) is not "
                              f"a relation of the KG {kg_dir} (by id or name); use a KG with the sentences' relations "
                              f"or set inject_relation: false")


def test_entity_without_a_kg_row_is_a_counted_skip(backbone, kg_dir):
    plugin = _plugin(backbone, kg_dir, inject_relation=False)
    for records, skipped in (([OBAMA], 0), ([CURIE], 1), ([CURIE, OBAMA], 2)):
        batch = _batch(backbone, records)
        plugin.inside_features(backbone, batch["input_ids"], batch["attention_mask"], batch)
        assert plugin.injection.skipped_entities == skipped  # Marie Curie has no KG row: counted, never an error
    assert (f"KG injection from {kg_dir} (entity: True, relation: False); important mentions without a KG row: 2; "
            f"batches without an important entity: 0") in plugin.card_notes()[2]


def test_ig_steps_zero_is_one_line(backbone):
    assert _error(backbone, ig_steps=0) == ("config: trelm config: ig_steps must be >= 1 (m Riemann points of eq. 11; for the one-pass "
                                  "proxy set attribution: grad_x_act), got 0")


def test_empty_selection_with_injection_on(backbone, kg_dir):
    assert _error(backbone, neurons_per_layer=[0], inject_kg=str(kg_dir)) == (
        "config: trelm config: neurons_per_layer selects no neuron in any layer ([0]): the knowledge path would be empty and "
        "the plug-in would train nothing (the injected knowledge would reach no trainable weight)")
    assert _error(backbone, neurons_per_layer=[0, 0]) == (
        "config: trelm config: neurons_per_layer selects no neuron in any layer ([0, 0]): the knowledge path would be empty "
        "and the plug-in would train nothing")
    assert _error(backbone, important_fraction=0.0, inject_kg=str(kg_dir)) == (
        "config: trelm config: inject_kg is set but important_fraction is 0: no entity position would receive knowledge "
        "(raise important_fraction or drop inject_kg)")
    # a batch in which SI marks no entity (round(0.4 * 1 row) = 0): counted, the batch trains without injection
    plugin = _plugin(backbone, kg_dir, important_fraction=0.4)
    batch = _batch(backbone, [OBAMA])
    embedded = backbone.embed(batch["input_ids"])
    plugin.inside_features(backbone, batch["input_ids"], batch["attention_mask"], batch)
    plugin.inside_features(backbone, batch["input_ids"], batch["attention_mask"], batch)
    assert plugin.injection_stats == {"batches_without_important_entity": 2}
    assert "batches without an important entity: 2" in plugin.card_notes()[2]
    mixed, _ = plugin._mix_memory(backbone, batch["input_ids"], batch["attention_mask"], embedded, batch)
    assert torch.equal(mixed, embedded)


def _cli_recipe(tmp_path, world, backbone_dir, **config):
    recipe = {
        "kind": "infuse", "name": "trelm-bad",
        "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": "trelm", "config": {"neurons_per_layer": [4], "routing_warmup_steps": 0,
                                               "attribution": "grad_x_act", "memory_slots": 16, **config}},
        "objective": {"name": "trelm_knowledge", "config": {"num_negatives": 3}},
        "data": {"format": "trex_rc", "train": str(world["infuse_factual_train"]),
                 "dev": str(world["infuse_factual_dev"]), "max_length": 48, "limit": 8},
        "training": training(epochs=1, lr=1e-2),
        "output": {"dir": str(tmp_path / "run")},
    }
    return str(write_yaml(tmp_path / "trelm.yaml", recipe))


def test_cli_prints_one_line_and_exits_2(world, backbone_dir, tmp_path, kg_dir, capsys):
    recipe = _cli_recipe(tmp_path, world, backbone_dir)
    assert main(["infuse", recipe, "plugin.config.ig_steps=0"]) == 2
    assert _cli_error(capsys.readouterr().err) == (  # the recipe file and key first
        f"{recipe}: plugin.config: trelm config: ig_steps must be >= 1 (m Riemann points of eq. 11; for the one-pass proxy set attribution: "
        "grad_x_act), got 0")
    # the tiny world's relations are not in this KG: the first training pass stops with one line
    assert main(["infuse", recipe, f"plugin.config.inject_kg={kg_dir}", "--overwrite"]) == 2
    line = _cli_error(capsys.readouterr().err)
    assert line.startswith("trelm inject_relation: a training sentence's relation (key ")
    assert line.endswith(f") is not a relation of the KG {kg_dir} (by id or name); use a KG with the sentences' "
                         f"relations or set inject_relation: false")
