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
