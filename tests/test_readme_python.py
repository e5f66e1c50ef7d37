"""The README's Python section runs as written, on tiny models (no download): the hub name and the zoo
folders it names are replaced by a tiny backbone and two tiny plug-ins; every other line is executed as is."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from run_kit import ADAPTER, BACKBONE_KW

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python\n"):text.index("## Command line\n")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_section_runs(tiny_backbone_dir, tmp_path, monkeypatch, capsys):
    from kadapt import FrozenBackbone, build_plugin

    backbone_dir = tiny_backbone_dir("bert", **BACKBONE_KW)
    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    torch.manual_seed(0)
    for name in ("factual", "linguistic"):
        build_plugin("kadapter", {"name": name, **ADAPTER}, backbone.spec).save_pretrained(
            tmp_path / "adapters_zoo" / name, backbone)
    monkeypatch.chdir(tmp_path)  # the README's relative folders (adapters_zoo/, runs/, models/) land here
    verbs, trainer = python_blocks()
    assert '"roberta-large"' in verbs
    namespace: dict = {}
    exec(compile(verbs.replace('"roberta-large"', repr(str(backbone_dir))), "README.md#python", "exec"), namespace)

    model, tuned, predictions = namespace["model"], namespace["tuned"], namespace["predictions"]
    assert capsys.readouterr().out.startswith("trainable params: 579 || all params: ")  # head: 2·(32+32+32)·3 + 3
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "runs/rc/metrics.jsonl").read_text().splitlines())
              if r.get("split") == "train"]
    assert losses[-1] < losses[0] / 2  # fine-tuning fitted the three sentences (1.11 → 0.45)
    assert predictions == model.predict(["@ Obama @ was born in # Hawaii # ."])  # reloaded = saved, exactly
    assert predictions[0]["label"] == "born_in" and predictions[0]["score"] > 0.5
    assert (tmp_path / "models/rc/plugins/1-linguistic/model.safetensors").is_file()

    before = [p.detach().clone() for p in model.head.parameters()]
    exec(compile(trainer, "README.md#trainer", "exec"), namespace)  # transformers.Trainer, no wrapper
    assert namespace["trainer"].state.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.head.parameters()))
