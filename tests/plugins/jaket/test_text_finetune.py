"""Relation classification on text through `kadapt finetune` with JAKET features at linked mentions:
the KG comes from the recipe's `plugin_options.jaket`, reader ids first, the linker otherwise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError
from kadapt.core.family import build_plugin
from kadapt.kg import read_kg
from kadapt.plugins.jaket.pretraining import build_memory
from kadapt.data.formats import read_records
from kadapt.runs.finetune import evaluate_run, finetune, load_finetuned
from kadapt.runs.recipe import RecipeError, recipe_from_dict
from kadapt.store.plugin_dir import save_plugin

TINY_KG = Path(__file__).resolve().parents[2] / "fixtures" / "kg_tiny"
SENTENCES = [  # tokens, relation, head (id, positions), tail (id, positions)
    ("paris is the capital of france .", "P1376", ("e01", [0]), ("e02", [5])),
    ("berlin is the capital of germany .", "P1376", ("e03", [0]), ("e04", [5])),
    ("obama was born in hawaii .", "P19", ("e05", [0]), ("e06", [4])),
    ("curie was born in paris .", "P19", ("Q7186", [0]), ("", [4])),  # ids unknown / absent: linker
]


@pytest.fixture(scope="module")
def jaket_dir(tiny_backbone_dir, tmp_path_factory):
    backbone = FrozenBackbone.from_pretrained(tiny_backbone_dir("bert"))
    torch.manual_seed(0)
    plugin = build_plugin("jaket", {"fanouts": [3, 3]}, backbone.spec)
    out = tmp_path_factory.mktemp("jaket-text")
    save_plugin(plugin, out, backbone.fingerprint, memory=build_memory(backbone, read_kg(TINY_KG), plugin).to_tensors())
    return out


def _fewrel(path: Path) -> Path:
    doc: dict = {}
    for text, rel, (h, hp), (t, tp) in SENTENCES:
        doc.setdefault(rel, []).append({"tokens": text.split(), "h": [text.split()[hp[0]], h, [hp]],
                                        "t": [text.split()[tp[0]], t, [tp]]})
    path.write_text(json.dumps(doc))
    return path


def _recipe(backbone_dir, jaket_dir, data, out, options):
    return recipe_from_dict({
        "kind": "finetune", "name": "jaket-rc", "backbone": {"name_or_path": str(backbone_dir)},
        "plugins": [str(jaket_dir)], "plugin_options": {"jaket": options},
        "objective": {"name": "relation_classification", "config": {"pooling": "mean"}},
        "data": {"format": "fewrel", "train": str(data), "dev": str(data), "test": str(data), "max_length": 32},
        "training": {"epochs": 2, "batch_size": 4, "lr": 0.01, "log_every": 1, "seed": 0},
        "output": {"dir": str(out)},
    })


def test_finetune_links_reader_ids_then_the_linker(tiny_backbone_dir, jaket_dir, tmp_path):
    backbone_dir = tiny_backbone_dir("bert")
    data = _fewrel(tmp_path / "rc.json")
    options = {"kg": str(TINY_KG), "memory": str(jaket_dir / "memory.safetensors")}
    result = finetune(_recipe(backbone_dir, jaket_dir, data, tmp_path / "run", options))
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    train = metrics["linking"]["train"]
    # 3 sentences by ids; "curie ... paris": Q7186 unknown, then the linker finds curie and paris
    assert train["instances"] == 4 and train["all_linked"] == 1.0 and train["dropped_unknown_id"] == 1
    model = load_finetuned(result.run_dir)
    linking = model.entity_linking()
    assert linking is not None and linking.rows["e07"] == 6 and linking.linker is not None
    evaluated = evaluate_run(result.run_dir, data)
    assert evaluated["accuracy"] == metrics["test"]["accuracy"]
    # ids only, no linker: the last sentence gets nothing
    ids_only = finetune(_recipe(backbone_dir, jaket_dir, data, tmp_path / "ids", {**options, "linker": False}))
    cov = json.loads((ids_only.run_dir / "metrics.json").read_text())["linking"]["train"]
    assert cov["any_linked"] == 0.75 and cov["all_linked"] == 0.75


def test_bad_plugin_options_fail_in_one_line(tiny_backbone_dir, jaket_dir, tmp_path):
    backbone_dir = tiny_backbone_dir("bert")
    data = _fewrel(tmp_path / "rc.json")
    with pytest.raises(KadaptError, match="plugin_options.jaket: unknown key.*'kg_dir'"):
        finetune(_recipe(backbone_dir, jaket_dir, data, tmp_path / "a", {"kg_dir": "x"}))
    with pytest.raises(KadaptError, match="plugin_options.jaket needs 'kg'"):
        finetune(_recipe(backbone_dir, jaket_dir, data, tmp_path / "b", {"memory": "x"}))
    recipe = _recipe(backbone_dir, jaket_dir, data, tmp_path / "c", {"kg": str(TINY_KG)})
    recipe.plugin_options = {"kadapter": {"x": 1}}
    with pytest.raises(KadaptError, match=r"plugin_options names \['kadapter'\]; the model's plug-ins are \['jaket'\]"):
        finetune(recipe)
    with pytest.raises(RecipeError, match="'plugin_options' must map a plug-in kind to a mapping"):
        recipe_from_dict({"kind": "finetune", "plugin_options": {"jaket": "kg"}}, "r.yaml")


def test_fewshot_pairs_get_token_entities_per_row(tiny_backbone_dir, jaket_dir, tmp_path):
    backbone_dir = tiny_backbone_dir("bert")
    data = _fewrel(tmp_path / "rc.json")
    recipe = _recipe(backbone_dir, jaket_dir, data, tmp_path / "fs",
                     {"kg": str(TINY_KG), "memory": str(jaket_dir / "memory.safetensors")})
    recipe.objective.name = "fewshot_pair"
    recipe.objective.config = {"n_way": 2, "k_shot": 1, "train_episodes": 4, "eval_episodes": 3, "hidden_size": 8}
    result = finetune(recipe)
    train = json.loads((result.run_dir / "metrics.json").read_text())["linking"]["train"]
    assert train["instances"] == 4 * 2 and train["all_linked"] == 1.0  # 2 pair rows per 2-way 1-shot episode
    model = load_finetuned(result.run_dir)
    from kadapt.data.formats import read_records

    records = read_records("fewrel", data)
    episode = model.head.prepare_records(records, "test", 0)[0]
    feats = model.head.encode(episode, model.backbone.tokenizer, 32)
    tokens = model.backbone.tokenizer.convert_ids_to_tokens(feats["input_ids"][0])
    linked = {tokens[t]: r for t, r in enumerate(feats["token_entities"][0]) if r >= 0}
    query_words = episode.query.text.split()
    assert query_words[0] in linked and len(feats["token_entities"]) == 2


def _open_entity(path: Path) -> Path:
    rows = [(["In"], "paris", ["the", "capital", "of", "france", "grew", "."], ["location", "city"]),
            (["Critics", "said"], "obama", ["was", "born", "in", "hawaii", "."], ["person"]),
            (["Yesterday"], "he", ["met", "berlin", "officials", "."], ["person", "male"])]
    path.write_text("".join(json.dumps({"annot_id": f"d:{i}", "left_context_token": left, "mention_span": mention,
                                        "right_context_token": right, "y_str": types}) + "\n"
                            for i, (left, mention, right, types) in enumerate(rows)))
    return path


def test_entity_typing_links_the_typed_mention_through_the_linker(tiny_backbone_dir, jaket_dir, tmp_path):
    """Open Entity records carry a mention span and no id: the dictionary linker links KG names in the
    marked sentence; coverage counts the typed mention (2 of 3 are KG names, "he" is not)."""
    backbone_dir = tiny_backbone_dir("bert")
    data = _open_entity(tmp_path / "oe.json")
    recipe = _recipe(backbone_dir, jaket_dir, data, tmp_path / "et",
                     {"kg": str(TINY_KG), "memory": str(jaket_dir / "memory.safetensors")})
    recipe.objective.name, recipe.objective.config = "entity_typing", {}
    recipe.data.format = "open_entity"
    result = finetune(recipe)
    linking = json.loads((result.run_dir / "metrics.json").read_text())["linking"]
    assert linking["test"] == {"instances": 3, "any_linked": 2 / 3, "all_linked": 2 / 3, "mentions": 5, "linked": 5}
    model = load_finetuned(result.run_dir)
    feats = model.head.encode(read_records("open_entity", data)[2], model.backbone.tokenizer, 32)
    tokens = model.backbone.tokenizer.convert_ids_to_tokens(feats["input_ids"])
    assert [(tokens[t], r) for t, r in enumerate(feats["token_entities"]) if r >= 0] == [("berlin", 2)]
