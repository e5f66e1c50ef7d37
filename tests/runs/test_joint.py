"""Several plug-ins in one run (one backbone pass per batch) equal separate runs with the same seeds."""
from __future__ import annotations

import pytest
import torch
from run_kit import factual_recipe, linguistic_recipe, train_losses

from kadapt.core.errors import KadaptError
from kadapt.core.fileio import load_tensors
from kadapt.runs.infuse import infuse
from kadapt.runs.joint import infuse_many
from kadapt.runs.recipe import recipe_from_dict


def _two_factual(world, backbone_dir, root, **train):
    first = factual_recipe(world, backbone_dir, root / "a", name="fact_a", epochs=2, **train)
    second = factual_recipe(world, backbone_dir, root / "b", name="fact_b", epochs=2,
                            adapter={"adapter_size": 16, "num_attention_heads": 2, "dropout": 0.2}, **train)
    second["training"].update(lr=1e-3, warmup_ratio=0.2, max_grad_norm=0.5)
    second["objective"]["config"] = {"pooling": "mean"}
    return first, second


def _weights(plugin_dir):
    model, _ = load_tensors(plugin_dir / "model.safetensors")
    heads, _ = load_tensors(plugin_dir / "objective_heads.safetensors")
    return {**model, **{f"head.{k}": v for k, v in heads.items()}}


def _assert_equal(joint, separate):
    """Bit-identical: the joint run performs the same float operations as a separate run."""
    a, b = _weights(joint), _weights(separate)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key}: max diff {(a[key] - b[key]).abs().max().item()}"


@pytest.mark.parametrize("cache", [False, True])
def test_joint_run_equals_separate_runs(cache, world, backbone_dir, backbone, tmp_path):
    extra = {"cache": True, "cache_dir": str(tmp_path / "cache"), "cache_dtype": "float32",
             "length_bucketing": True} if cache else {}
    recipes = _two_factual(world, backbone_dir, tmp_path / "joint", **extra)
    joint = infuse_many([recipe_from_dict(r, f"r{i}.yaml") for i, r in enumerate(recipes)], backbone=backbone)
    assert [r.run_dir.name for r in joint] == ["a", "b"]
    separate = []
    for data in _two_factual(world, backbone_dir, tmp_path / "alone", **extra):
        separate.append(infuse(recipe_from_dict(data), backbone=backbone))
    for j, s in zip(joint, separate):
        _assert_equal(j.plugin_dir, s.plugin_dir)
        assert train_losses(j.run_dir) == train_losses(s.run_dir)
        assert j.train.final_dev["accuracy"] == s.train.final_dev["accuracy"]
        assert j.train.global_step == s.train.global_step
        assert (j.run_dir / "recipe.yaml").exists() and (j.run_dir / "curves.png").exists()
    # the two plug-ins really differ (own config, optimizer and init): nothing was shared but the pass
    key = "adapter_layers.0.down.weight"
    assert _weights(joint[0].plugin_dir)[key].shape == (32, 32) and _weights(joint[1].plugin_dir)[key].shape == (16, 32)
    assert train_losses(joint[0].run_dir) != train_losses(joint[1].run_dir)


def test_recipes_on_different_data_are_refused_naming_both(world, backbone_dir, tmp_path):
    fact = recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "f"), "factual.yaml")
    ling = recipe_from_dict(linguistic_recipe(world, backbone_dir, tmp_path / "l"), "linguistic.yaml")
    with pytest.raises(KadaptError, match=r"factual.yaml and linguistic.yaml .*data.format is 'trex_rc' vs 'conllu'"):
        infuse_many([fact, ling])
    other_seed = recipe_from_dict(factual_recipe(world, backbone_dir, tmp_path / "g", name="g", seed=8), "seed8.yaml")
    with pytest.raises(KadaptError, match=r"training.seed is 7 vs 8"):
        infuse_many([fact, other_seed])
    with pytest.raises(KadaptError, match="distinct recipe names"):
        infuse_many([fact, fact])
    with pytest.raises(KadaptError, match="--resume"):
        infuse_many([fact], resume=True)


def test_cli_infuses_several_recipes_in_one_run(world, backbone_dir, tmp_path, capsys):
    from run_kit import write_yaml

    from kadapt.cli.app import main

    first, second = _two_factual(world, backbone_dir, tmp_path / "unused")
    paths = [write_yaml(tmp_path / "a.yaml", first), write_yaml(tmp_path / "b.yaml", second)]
    assert main(["infuse", *map(str, paths), "training.epochs=1", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.count("plug-in written to") == 2
    for name in ("fact_a", "fact_b"):
        assert (tmp_path / "runs" / name / "plugin" / "model.safetensors").exists()
    linguistic = write_yaml(tmp_path / "l.yaml", linguistic_recipe(world, backbone_dir, tmp_path / "l"))
    assert main(["infuse", str(paths[0]), str(linguistic)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.yaml and" in err and "l.yaml" in err and "data.format" in err


# ---------------------------------------------------------------------------------------- XLM-K
@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory):
    from xlmk_kit import build_backbone

    return build_backbone(tmp_path_factory.mktemp("xlmr"))


def _two_xlmk(xlmr_dir, root):
    """Two XLM-K recipes on the same data and stream; they differ in adapter size, heads and lr."""
    from xlmk_kit import xlmk_recipe

    recipes = []
    for name, size, heads, lr in (("xlmk_a", 16, 2, 3e-3), ("xlmk_b", 32, 4, 1e-3)):
        data = xlmk_recipe(xlmr_dir, root / name, lr=lr, max_grad_norm=1.0)
        data["name"] = name
        data["plugin"]["config"].update(adapter_size=size, num_attention_heads=heads, dropout=0.1)
        data["data"]["dev_fraction"] = 0.25  # 6 of the 24 records: final dev metrics to compare
        recipes.append(data)
    return recipes


class _CountEncode:
    """Counting wrapper around ``FrozenBackbone._encode`` (the real backbone passes)."""

    def __init__(self, monkeypatch):
        from kadapt.core.backbone import FrozenBackbone

        real, self.calls = FrozenBackbone._encode, 0

        def counted(backbone, *args, **kwargs):
            self.calls += 1
            return real(backbone, *args, **kwargs)

        monkeypatch.setattr(FrozenBackbone, "_encode", counted)

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def test_two_xlmk_recipes_jointly_equal_separate_runs(xlmr_dir, tmp_path, monkeypatch):
    from kadapt.core.backbone import FrozenBackbone

    backbone = FrozenBackbone.from_pretrained(xlmr_dir)
    counter = _CountEncode(monkeypatch)
    joint = infuse_many([recipe_from_dict(r, f"{r['name']}.yaml") for r in _two_xlmk(xlmr_dir, tmp_path / "joint")],
                        backbone=backbone)
    joint_passes = counter.take()
    separate, separate_passes = [], []
    for data in _two_xlmk(xlmr_dir, tmp_path / "alone"):
        separate.append(infuse(recipe_from_dict(data), backbone=backbone))
        separate_passes.append(counter.take())
    for j, s in zip(joint, separate):
        _assert_equal(j.plugin_dir, s.plugin_dir)
        memory_j, _ = load_tensors(j.plugin_dir / "memory.safetensors")
        memory_s, _ = load_tensors(s.plugin_dir / "memory.safetensors")
        assert memory_j.keys() == memory_s.keys() and any("_queue.keys" in k for k in memory_j)
        for key in memory_j:
            assert torch.equal(memory_j[key], memory_s[key]), key
        assert int(memory_j["xlmk_contrastive.entity_queue.filled"]) > 0  # the queues were really filled
        assert train_losses(j.run_dir) == train_losses(s.run_dir)
        assert j.train.final_dev and j.train.final_dev == s.train.final_dev
        assert j.train.global_step == s.train.global_step == 6  # 18 train records / batch 8 = 3 steps × 2 epochs
    # the two plug-ins differ (own size, heads, lr): only the backbone pass was shared
    key = "adapter_layers.0.down.weight"
    assert _weights(joint[0].plugin_dir)[key].shape == (16, 32) and _weights(joint[1].plugin_dir)[key].shape == (32, 32)
    assert train_losses(joint[0].run_dir) != train_losses(joint[1].run_dir)
    # one pass per distinct input: the sentence batch and the description batch of each train step
    # (6 steps × 2) and of each dev batch (1 batch × 2 epochs × 2): the joint run computes exactly the
    # passes of ONE separate run, the two separate runs twice that
    assert separate_passes[0] == separate_passes[1] == 6 * 2 + 2 * 2
    assert joint_passes == separate_passes[0]
    assert sum(separate_passes) == 2 * joint_passes


# ------------------------------------------------------------------------ families that cannot join
def _trelm_like(world, backbone_dir, out):
    """A TRELM recipe on exactly the data and stream of :func:`factual_recipe` (only the family differs)."""
    data = factual_recipe(world, backbone_dir, out, name="trelm_t")
    data["plugin"] = {"kind": "trelm", "config": {"neurons_per_layer": [8], "ig_steps": 4, "reselect_every": 3,
                                                  "attribution_rows": 4, "memory_slots": 64, "memory_window": 4}}
    data["objective"] = {"name": "trelm_knowledge", "config": {"num_negatives": 5}}
    return data


def test_family_that_cannot_join_is_refused_in_one_line(world, backbone_dir, tmp_path, capsys):
    from run_kit import write_yaml

    from kadapt.cli.app import main

    fact = factual_recipe(world, backbone_dir, tmp_path / "a", name="fact_a")
    trelm = _trelm_like(world, backbone_dir, tmp_path / "t")
    recipes = [recipe_from_dict(fact, "fact.yaml"), recipe_from_dict(trelm, "trelm.yaml")]
    with pytest.raises(KadaptError) as caught:
        infuse_many(recipes)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("trelm.yaml: ") and "'trelm'" in message and "cannot join" in message
    assert "fact.yaml" not in message  # names the recipe that cannot join, not its partner
    with pytest.raises(KadaptError, match=r"^trelm\.yaml: a 'trelm' plug-in cannot join"):
        infuse_many(recipes[::-1])  # whichever position it has
    # refused before any work: no run folder, no metrics
    assert not (tmp_path / "a").exists() and not (tmp_path / "t").exists()
    assert not list(tmp_path.rglob("metrics.jsonl"))

    paths = [write_yaml(tmp_path / "fact.yaml", fact), write_yaml(tmp_path / "trelm.yaml", trelm)]
    capsys.readouterr()
    assert main(["infuse", *map(str, paths)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kadapt: error: ") and captured.err.count("kadapt: error:") == 1
    assert "trelm.yaml" in lines[0] and "'trelm'" in lines[0] and "cannot join" in lines[0]
    assert "plug-in written to" not in captured.out
    assert not (tmp_path / "a").exists() and not (tmp_path / "t").exists()
    assert not list(tmp_path.rglob("metrics.jsonl"))
