"""Distributed evaluation: 2 gloo processes each evaluate their share of the batches and both get
exactly the single-process metrics and predictions (odd batch count: one rank runs a padding batch
that does not count)."""
from __future__ import annotations

import json
from pathlib import Path

from ddp_kit import spawn_gloo
from run_kit import BACKBONE_KW, factual_recipe

BATCH = 3


def _evaluate(recipe_data: dict, distributed: bool) -> dict:
    import torch

    from kadapt.data.policy import ErrorPolicy
    from kadapt.runs.context import encode_records, load_backbone, read_splits
    from kadapt.runs.infuse import StandardPipeline
    from kadapt.runs.loop import evaluate_model
    from kadapt.runs.recipe import recipe_from_dict

    recipe = recipe_from_dict(recipe_data)
    backbone, policy = load_backbone(recipe.backbone), ErrorPolicy("raise")
    splits = read_splits(recipe.data, recipe.training.seed, policy)
    model = StandardPipeline().build(recipe, backbone, splits)
    torch.manual_seed(5)  # a trained-looking head: random but seeded, so predictions vary
    with torch.no_grad():
        for param in model.head.parameters():
            param.normal_(0, 0.5)
    dev, _ = encode_records(model.head, splits.dev, backbone.tokenizer, recipe.data.max_length, policy, "dev")
    metrics, predictions = evaluate_model(model, dev, BATCH, backbone.tokenizer.pad_token_id, torch.device("cpu"),
                                          with_predictions=True, distributed=distributed)
    return {"metrics": metrics, "predictions": predictions, "examples": len(dev)}


def _two_ranks(rank: int, world: int, recipe_data: dict, out: str) -> None:
    Path(out, f"rank-{rank}.json").write_text(json.dumps(_evaluate(recipe_data, distributed=True)))


def test_two_process_evaluation_equals_one_process(world, backbone_dir, tmp_path):
    recipe_data = factual_recipe(world, backbone_dir, tmp_path / "run", limit=None)
    single = _evaluate(recipe_data, distributed=False)
    assert single["examples"] % BATCH and (single["examples"] // BATCH) % 2 == 0  # odd batch count
    assert 0 < single["metrics"]["accuracy"] < 1 and len(set(single["predictions"])) > 1
    spawn_gloo(_two_ranks, 2, recipe_data, str(tmp_path))
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank-{rank}.json").read_text()) == single
