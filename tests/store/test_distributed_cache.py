"""Distributed hidden-state cache build: 2 gloo processes encode half of the batches each, and the
finished entry is byte-identical to a one-process build; ranks with different cache folders for the
same entry get one clear line before anything is written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CORPUS
from ddp_kit import spawn_gloo
from run_kit import tree_digest

KW = {"num_layers": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}
LAYERS = [0, 2]


def _entry_inputs(backbone_dir: Path, data_file: Path):
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.store.hidden_cache import CacheKey

    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    examples = [{"input_ids": backbone.tokenizer(text)["input_ids"]} for text in CORPUS]
    key = CacheKey.for_data(backbone, examples, [data_file], 64, "float32")
    return backbone, examples, key


def _build_two_ranks(rank: int, world: int, backbone_dir: str, data_file: str, out: str) -> None:
    from kadapt.store.distributed_cache import CacheDisagreementError, open_or_build_distributed

    backbone, examples, key = _entry_inputs(Path(backbone_dir), Path(data_file))
    cache = open_or_build_distributed(backbone, examples, LAYERS, key, Path(out) / "shared", batch_size=4, what="train")
    # a second call finds the finished entry (no rebuild, no error)
    again = open_or_build_distributed(backbone, examples, LAYERS, key, Path(out) / "shared", batch_size=4, what="train")
    assert again.folder == cache.folder
    try:  # every rank configured with its own folder for the same entry
        open_or_build_distributed(backbone, examples, LAYERS, key, Path(out) / f"rank-{rank}", batch_size=4, what="train")
        message = None
    except CacheDisagreementError as err:
        message = str(err)
    Path(out, f"result-{rank}.json").write_text(json.dumps({"folder": str(cache.folder), "error": message}))


@pytest.mark.slow  # 2 spawned processes (25-40 s on the shared 2-core machine)
def test_two_rank_build_is_byte_identical_to_one_process(tiny_backbone_dir, tmp_path):
    from kadapt.store.hidden_cache import open_or_build

    backbone_dir = tiny_backbone_dir("bert", **KW)
    data_file = tmp_path / "train.txt"
    data_file.write_text("\n".join(CORPUS), encoding="utf-8")
    spawn_gloo(_build_two_ranks, 2, str(backbone_dir), str(data_file), str(tmp_path))
    backbone, examples, key = _entry_inputs(backbone_dir, data_file)
    single = open_or_build(backbone, examples, LAYERS, key, tmp_path / "single", batch_size=4)
    results = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in (0, 1)]
    two = Path(results[0]["folder"])
    assert results[1]["folder"] == str(two) and two.name == single.folder.name
    digests = tree_digest(two)
    assert sorted(digests) == ["layer_000.bin", "layer_002.bin", "lengths.i32", "manifest.json"]
    assert digests == tree_digest(single.folder)
    assert not list((tmp_path / "shared").glob("*.partial-*")) and not list((tmp_path / "shared").glob(".kadapt-probe-*"))
    for rank, result in enumerate(results):
        assert result["error"] == (
            f"train: ranks disagree about the hidden-state cache entry: rank 0 uses training.cache_dir "
            f"{tmp_path / 'rank-0'}, rank 1 uses {tmp_path / 'rank-1'}; give every rank the same path "
            "(one shared folder, or the same node-local path on every node)")
    assert not (tmp_path / "rank-0").exists() and not (tmp_path / "rank-1").exists()
