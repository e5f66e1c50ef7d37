"""``training.report_to``: accelerate's trackers get what the JSONL run log gets (tensorboard through
tensorboardX: the event file's scalars equal ``metrics.jsonl``); a tracker that is not installed, or
unknown, is one line before anything runs; the JSONL + PNG run log stays the default."""
from __future__ import annotations

import importlib.util
import json
import struct

import pytest
import torch
from run_kit import BACKBONE_KW

from kadapt import KnowledgeModel
from kadapt.core.errors import RecipeError

TEXTS = ["@ Obama @ was born in # Hawaii # .", "@ Paris @ is the capital of # France # .",
         "@ Marie Curie @ worked in # Paris # .", "@ Berlin @ is the capital of # Germany # ."]
LABELS = ["born_in", "capital", "works_in", "capital"]


@pytest.fixture
def model(tiny_backbone_dir):
    torch.manual_seed(0)
    return KnowledgeModel.from_pretrained(tiny_backbone_dir("bert", **BACKBONE_KW), head="relation_classification",
                                          labels=sorted(set(LABELS)))


def _events(path) -> list:
    """The Event records of a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
        offset += 12 + length + 4
    return events


def test_tensorboard_gets_every_logged_value(model, tmp_path):
    pytest.importorskip("tensorboardX")
    train = model.encode_texts(TEXTS, LABELS)
    model.fit(train, train, out=tmp_path / "run", epochs=2, batch_size=2, lr=1e-2, cpu=True, mixed_precision="no",
              log_every=1, report_to=["tensorboard"])
    (events_file,) = (tmp_path / "run" / "trackers" / "run").glob("events.out.tfevents.*")
    scalars = {(v.tag, e.step): v.simple_value for e in _events(events_file) if e.HasField("summary")
               for v in e.summary.value if v.HasField("simple_value")}
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    expected = {(f"{r['split']}/{k}", r["step"]): v for r in records for k, v in r.items()
                if k not in ("step", "epoch", "split") and isinstance(v, float)}
    assert {k for k in expected if k[0] == "train/loss"} == {("train/loss", s) for s in (1, 2, 3, 4)}
    assert ("dev/accuracy", 4) in expected
    assert scalars.keys() >= expected.keys()
    assert all(scalars[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())  # float32 in the file
    assert (tmp_path / "run" / "curves.png").is_file()  # the default run log is still written


def test_a_tracker_that_is_not_installed_is_one_line(model, tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    train = model.encode_texts(TEXTS, LABELS)
    with pytest.raises(RecipeError) as err:
        model.fit(train, out=tmp_path / "run", epochs=1, cpu=True, report_to=["tensorboard", "wandb"])
    assert str(err.value) == ("training.report_to: tracker 'wandb' is not installed (pip install wandb); "
                              "the JSONL + PNG run log needs nothing")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before anything ran
    with pytest.raises(RecipeError, match=r"^training.report_to: unknown tracker 'tensorbord'; known: \['aim', "):
        model.fit(train, out=tmp_path / "run", epochs=1, cpu=True, report_to="tensorbord")


def test_recipe_check_refuses_a_missing_tracker_in_one_line(capsys):
    from pathlib import Path

    from kadapt.cli.app import main

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    recipe = str(Path(__file__).resolve().parents[2] / "recipes/finetune/relation_classification_small.yaml")
    assert main(["recipe", "check", recipe, "training.report_to=[wandb]"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{recipe}: training.report_to: tracker 'wandb' is not installed (pip install wandb); the JSONL + PNG " \
        "run log needs nothing" in err
