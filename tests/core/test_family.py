"""A fifth plug-in family is one folder + one ``register_family`` call: a toy family defined HERE (no
kadapt file touched) runs end to end through the functions a user calls.

The toy family brings everything a family can bring:

* plug-in ``toyscale`` (outside, reads ONE shared hidden state): ``states[layer] * scale + shift`` with
  trainable per-dimension ``scale`` / ``shift``; counts its ``on_step`` calls in a tensor kept OUTSIDE
  ``state_dict`` (``extra_tensors`` / ``load_extra_tensors``) and says so in ``card_notes``;
* objective ``toy_sentence_label``: a linear head on the mean token feature, labels configured from
  the training records of the family's own format;
* data format ``toy_tsv``: ``label<TAB>text`` lines;
* CLI command ``toyscale-labels`` (label counts of a ``toy_tsv`` file).

Then: ``infuse`` → plug-in folder (weights, memory, card) → ``load_plugin`` (bit for bit) → resume from a
checkpoint (the extra tensor travels in checkpoints) → ``finetune`` → ``load_finetuned`` /
``evaluate_run`` (same predictions); and the registry refuses clashes and forgets the family again.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from run_kit import train_losses, training

import kadapt  # noqa: F401  (built-in families, shared formats and task heads registered)
from kadapt.cli.app import build_parser, main
from kadapt.core.backbone import BackboneSpec
from kadapt.core.errors import DataError, KadaptError, PluginFormatError
from kadapt.core.family import (
    Family,
    build_plugin,
    format_names,
    plugin_class,
    register_family,
    registered_commands,
    registered_kinds,
    unregister_family,
)
from kadapt.core.fileio import load_tensors
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import (
    Objective,
    ObjectiveOutput,
    objective_class,
    registered_objectives,
    safe_div,
    unregister_objective,
)
from kadapt.core.plugin import Pass, Plugin, PluginConfig, StepInfo
from kadapt.data.encoding import LabelVocab
from kadapt.data.formats import read_records
from kadapt.data.policy import ErrorPolicy
from kadapt.runs.recipe import check_recipe, recipe_from_dict
from kadapt.tasks.sentence_classification import SentenceClassification

KIND = "toyscale"
OBJECTIVE = "toy_sentence_label"
FORMAT = "toy_tsv"
COMMAND = "toyscale-labels"


# ===================================================================== the toy family ("the folder")
@dataclass(frozen=True)
class ToyRecord:
    """One ``toy_tsv`` line."""

    label: str
    text: str
    source: str = ""


def read_toy_tsv(path, policy=None):
    """``label<TAB>text`` per line; blank lines ignored; a line without both parts is a DataError."""
    policy = ErrorPolicy.resolve(policy)
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            label, sep, text = line.partition("\t")
            if not sep or not label.strip() or not text.strip():
                policy.handle(DataError(path, lineno, "expected 'label<TAB>text'"), "not label<TAB>text")
                continue
            yield ToyRecord(label.strip(), text.strip(), f"{path}:{lineno}")


@dataclass
class ToyScaleConfig(PluginConfig):
    name: str = field(default="toyscale", metadata={"help": "Plug-in name."})
    layer: int = field(default=1, metadata={"help": "Backbone hidden-state index read (0 = embeddings)."})
    init_scale: float = field(default=1.0, metadata={"help": "Initial value of every per-dimension scale."})


class ToyScale(Plugin):
    """``states[layer] * scale + shift``; an on_step counter kept outside ``state_dict``."""

    kind = KIND
    placement = "outside"
    reads_shared_states_only = True
    config_class = ToyScaleConfig
    #: every instance built (the test reaches the trained one through this)
    built: ClassVar[list] = []

    def __init__(self, config: ToyScaleConfig, spec: BackboneSpec):
        super().__init__(config, spec)
        if not 0 <= config.layer <= spec.num_layers:
            raise PluginFormatError(f"toyscale layer {config.layer} outside 0..{spec.num_layers}")
        self.scale = nn.Parameter(torch.full((spec.hidden_size,), float(config.init_scale)))
        self.shift = nn.Parameter(torch.zeros(spec.hidden_size))
        self.steps_seen = torch.zeros((), dtype=torch.long)  # plain attribute: NOT in state_dict
        self.step_log: list[tuple[int, int]] = []
        ToyScale.built.append(self)

    def required_layers(self) -> tuple[int, ...]:
        return (self.config.layer,)

    @property
    def output_size(self) -> int:
        return self.spec.hidden_size

    def forward(self, pass_: Pass) -> torch.Tensor:
        return pass_.states[self.config.layer].to(self.scale.dtype) * self.scale + self.shift

    def on_step(self, info: StepInfo) -> None:
        assert isinstance(info.model.head, ToySentenceLabel) and "input_ids" in info.batch
        self.steps_seen += 1
        self.step_log.append((info.step, info.epoch))

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"steps_seen": self.steps_seen.clone()}

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if set(tensors) != {"steps_seen"}:
            raise PluginFormatError(f"toyscale keeps exactly 'steps_seen', got {sorted(tensors)}")
        self.steps_seen = tensors["steps_seen"].detach().clone().to(torch.long)

    def card_notes(self) -> list[str]:
        return [f"toyscale reads hidden state {self.config.layer}; on_step ran {int(self.steps_seen)} time(s)"]


class ToySentenceLabel(Objective):
    """A linear layer on the mean feature of the real tokens; labels from the training records."""

    name = OBJECTIVE
    main_metric = "accuracy"

    def __init__(self, feature_size: int, labels: list[str]):
        super().__init__(feature_size)
        self.vocab = LabelVocab.from_list(list(labels))
        self.classifier = nn.Linear(feature_size, len(labels))
        self.bound_feature_size = None

    @staticmethod
    def label_set(records: list) -> list[str]:
        return sorted({r.label for r in records})

    def bind(self, model) -> None:
        self.bound_feature_size = model.feature_size

    def encode(self, record: ToyRecord, tokenizer, max_length: int) -> dict:
        if not isinstance(record, ToyRecord):
            raise DataError(getattr(record, "source", "<record>"), None, "toy_sentence_label reads toy_tsv records")
        enc = tokenizer(record.text, truncation=True, max_length=max_length)
        return {"input_ids": list(enc["input_ids"]), "labels": self.vocab.id(record.label, record.source)}

    def forward(self, features: torch.Tensor, batch: dict) -> ObjectiveOutput:
        # mean over the real tokens: on the random tiny backbone the first token's state barely
        # depends on the sentence (std ~0.002 across sentences), the mean does (~0.2)
        mask = batch["attention_mask"].to(features.dtype)[..., None]
        logits = self.classifier((features * mask).sum(1) / mask.sum(1).clamp_min(1.0))
        loss = F.cross_entropy(logits.float(), batch["labels"]) if "labels" in batch else None
        return ObjectiveOutput(loss, logits)

    def count(self, logits: torch.Tensor, batch: dict) -> dict[str, float]:
        right = logits.argmax(-1) == batch["labels"]
        return {"n": float(right.numel()), "correct": float(right.sum())}

    @staticmethod
    def summarize(counts: dict[str, float]) -> dict[str, float]:
        return {"accuracy": safe_div(counts["correct"], counts["n"])}

    def predict(self, logits: torch.Tensor, batch: dict) -> list:
        labels = self.vocab.to_list()
        return [labels[i] for i in logits.argmax(-1).tolist()]

    def config_dict(self) -> dict:
        return {"labels": self.vocab.to_list()}


def cmd_toy_labels(args) -> int:
    counts = Counter(r.label for r in read_records(FORMAT, args.path))
    print(json.dumps(dict(sorted(counts.items()))))
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(COMMAND, help="Label counts of a toy_tsv file (toy family).")
    p.add_argument("path")
    p.set_defaults(func=cmd_toy_labels)


#: what ``kadapt/plugins/toyscale/__init__.py`` would hold
TOY_FAMILY = Family(kind=KIND, plugin=ToyScale, objectives=(ToySentenceLabel,), formats={FORMAT: read_toy_tsv},
                    commands=(add_commands,), pipeline=None, description="toy: scale and shift one hidden state")


# ===================================================================== fixtures and data
@pytest.fixture
def toy_family():
    """Register the toy family for one test; the registry is clean afterwards, also on failure."""
    assert KIND not in registered_kinds(), "a previous test left the toy family registered"
    ToyScale.built.clear()
    registered = register_family(TOY_FAMILY)
    try:
        yield registered
    finally:
        if KIND in registered_kinds():
            unregister_family(KIND)
        ToyScale.built.clear()


PLACES = ["paris is the capital of france .", "berlin is the capital of germany .",
          "the city and the country .", "paris and berlin .", "france and germany .", "the capital city ."]
PEOPLE = ["marie curie worked with pierre curie .", "barack obama was born in hawaii .",
          "obama studied at columbia university .", "she reads books .", "pierre curie reads .",
          "marie curie and barack obama ."]


def write_tsv(path, n_per_label: int, offset: int = 0):
    lines = []
    for i in range(n_per_label):
        lines.append(f"place\t{PLACES[(i + offset) % len(PLACES)]}")
        lines.append(f"person\t{PEOPLE[(i + offset) % len(PEOPLE)]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def toy_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    return {"train": write_tsv(data / "train.tsv", 12), "dev": write_tsv(data / "dev.tsv", 4, offset=1),
            "test": write_tsv(data / "test.tsv", 4, offset=2)}


def infuse_recipe(backbone_dir, toy_data, out) -> dict:
    return {
        "kind": "infuse", "name": "toy",
        "backbone": {"name_or_path": str(backbone_dir)},
        "plugin": {"kind": KIND, "config": {"layer": 1}},
        "objective": {"name": OBJECTIVE},
        "data": {"format": FORMAT, "train": str(toy_data["train"]), "dev": str(toy_data["dev"]), "max_length": 32},
        # 24 records, 4 per batch, 2 batches per optimizer step: 3 optimizer steps per epoch, 6 in all
        "training": training(epochs=2, batch_size=4, grad_accum=2, lr=1e-1),
        "output": {"dir": str(out)},
    }


def finetune_recipe(backbone_dir, toy_data, plugin_dir, out) -> dict:
    return {
        "kind": "finetune", "name": "toy-ft",
        "backbone": {"name_or_path": str(backbone_dir)},
        "plugins": [str(plugin_dir)],
        "objective": {"name": OBJECTIVE},
        "data": {"format": FORMAT, "max_length": 32, **{k: str(v) for k, v in toy_data.items()}},
        "training": training(epochs=4, batch_size=8, lr=1e-1),  # 12 optimizer steps
        "output": {"dir": str(out)},
    }


def encoded_test_set(model, path):
    records = read_records(FORMAT, path)
    return [model.head.encode(r, model.backbone.tokenizer, 32) for r in records], records


# ===================================================================== tests
def test_registry_knows_the_family_and_forgets_it(capsys):
    from kadapt.runs.infuse import STANDARD_PIPELINE, pipeline_for

    before = (registered_kinds(), registered_objectives(), format_names(), registered_commands())
    assert KIND not in before[0] and OBJECTIVE not in before[1] and FORMAT not in before[2]
    try:
        register_family(TOY_FAMILY)
        register_family(TOY_FAMILY)  # the same family again: accepted, nothing doubled
        assert KIND in registered_kinds() and plugin_class(KIND) is ToyScale
        assert objective_class(OBJECTIVE) is ToySentenceLabel
        assert FORMAT in format_names() and registered_commands().count(add_commands) == 1
        assert pipeline_for(KIND) is STANDARD_PIPELINE  # pipeline=None: the standard infusion
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])
        assert exit_.value.code == 0 and COMMAND in capsys.readouterr().out
    finally:
        unregister_family(KIND)
    assert (registered_kinds(), registered_objectives(), format_names(), registered_commands()) == before
    with pytest.raises(KadaptError, match=FORMAT):
        read_records(FORMAT, __file__)
    with pytest.raises(PluginFormatError, match=KIND):
        plugin_class(KIND)
    assert COMMAND not in build_parser().format_help()


def test_clashes_are_refused(toy_family):
    class OtherScale(ToyScale):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_family(Family(kind=KIND, plugin=OtherScale))
    assert plugin_class(KIND) is ToyScale  # the first registration stands

    class ClashPlugin(Plugin):
        kind = "toyclash"

    class ClashHead(ToySentenceLabel):
        name = "sentence_classification"  # taken by kadapt.tasks

    with pytest.raises(ValueError, match="sentence_classification"):
        register_family(Family(kind="toyclash", plugin=ClashPlugin, objectives=(ClashHead,)))
    assert "toyclash" not in registered_kinds()
    assert objective_class("sentence_classification") is SentenceClassification

    class SecondToyHead(ToySentenceLabel):
        pass  # same name as the toy family's objective, another class

    with pytest.raises(ValueError, match=OBJECTIVE):
        register_family(Family(kind="toyclash", plugin=ClashPlugin, objectives=(SecondToyHead,)))
    assert objective_class(OBJECTIVE) is ToySentenceLabel

    with pytest.raises(KadaptError, match="trex_rc"):
        register_family(Family(kind="toyclash", plugin=ClashPlugin, formats={"trex_rc": read_toy_tsv}))
    assert "toyclash" not in registered_kinds()

    class Unnamed(Plugin):
        kind = "other"

    with pytest.raises(ValueError, match="must be non-empty and equal"):
        register_family(Family(kind="toyclash", plugin=Unnamed))


def test_a_refused_family_leaves_nothing_behind():
    class LeakPlugin(Plugin):
        kind = "toyleak"

    class FreshHead(ToySentenceLabel):
        name = "toyleak_head"

    class ClashHead(ToySentenceLabel):
        name = "sentence_classification"

    try:
        with pytest.raises(ValueError):
            register_family(Family(kind="toyleak", plugin=LeakPlugin, objectives=(FreshHead, ClashHead)))
        with pytest.raises(KadaptError):
            register_family(Family(kind="toyleak", plugin=LeakPlugin,
                                   formats={"toyleak_tsv": read_toy_tsv, "trex_rc": read_toy_tsv}))
        assert "toyleak" not in registered_kinds()
        assert "toyleak_head" not in registered_objectives()
        assert "toyleak_tsv" not in format_names()
    finally:  # what a leak left (there is no public unregister_format)
        from kadapt.core import family as family_module

        unregister_objective("toyleak_head")
        family_module._FORMATS.pop("toyleak_tsv", None)


def test_format_config_and_command(toy_family, toy_data, tmp_path, capsys):
    records = read_records(FORMAT, toy_data["train"])
    assert len(records) == 24 and records[0] == ToyRecord("place", PLACES[0], f"{toy_data['train']}:1")
    assert Counter(r.label for r in records) == {"place": 12, "person": 12}
    bad = tmp_path / "bad.tsv"
    bad.write_text("place\tparis .\nno tab here\n\nperson\tobama .\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected"):
        read_records(FORMAT, bad)
    policy = ErrorPolicy("skip")
    assert [r.label for r in read_records(FORMAT, bad, policy)] == ["place", "person"]
    assert policy.summary() == {"not label<TAB>text": 1}

    assert all(ToyScaleConfig.help().values()) and set(ToyScaleConfig.help()) == {"name", "layer", "init_scale"}
    spec = BackboneSpec(model_type="bert", hidden_size=8, num_layers=2, num_attention_heads=2,
                        intermediate_size=16, vocab_size=10)
    plugin = build_plugin(KIND, {"layer": 2, "init_scale": 0.5}, spec)
    assert plugin.required_layers() == (2,) and plugin.output_size == 8 and plugin.num_parameters() == 16
    assert torch.equal(plugin.scale.detach(), torch.full((8,), 0.5))
    with pytest.raises(PluginFormatError, match="layer"):
        build_plugin(KIND, {"layer": "one"}, spec)
    with pytest.raises(PluginFormatError, match="unknown"):
        build_plugin(KIND, {"layers": 1}, spec)
    with pytest.raises(PluginFormatError, match="outside"):
        build_plugin(KIND, {"layer": 3}, spec)

    with pytest.raises(SystemExit):
        main(["--help"])
    assert COMMAND in capsys.readouterr().out
    assert main([COMMAND, str(toy_data["train"])]) == 0
    assert json.loads(capsys.readouterr().out) == {"person": 12, "place": 12}


def test_infuse_save_load_resume_finetune(toy_family, toy_data, backbone_dir, backbone, tmp_path):
    from kadapt.runs.finetune import evaluate_run, finetune, load_finetuned
    from kadapt.runs.infuse import infuse
    from kadapt.runs.loop import evaluate_model
    from kadapt.store.plugin_dir import describe_plugin, load_plugin

    hidden = backbone.spec.hidden_size
    recipe = recipe_from_dict(infuse_recipe(backbone_dir, toy_data, tmp_path / "infuse"), "toy-infuse")
    assert check_recipe(recipe) == []  # kind, objective and format are all known to recipe validation

    # ---------------------------------------------------------------- infuse
    result = infuse(recipe, backbone=backbone)
    assert len(ToyScale.built) == 1
    trained = ToyScale.built[0]
    assert result.train.global_step == 6
    assert trained.step_log == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]  # once per optimizer step
    assert int(trained.steps_seen) == 6
    assert not torch.equal(trained.scale.detach(), torch.ones(hidden))  # the plug-in itself trained
    assert not torch.equal(trained.shift.detach(), torch.zeros(hidden))
    dev = result.train.final_dev
    assert dev["step"] == 6 and dev["accuracy"] > 0.5  # learnt something (2 balanced labels)
    assert len(train_losses(result.run_dir)) == 6

    # ---------------------------------------------------------------- the plug-in folder
    plugin_dir = result.plugin_dir
    assert plugin_dir == tmp_path / "infuse" / "plugin"
    assert {p.name for p in plugin_dir.iterdir()} == {"kadapt_config.json", "manifest.json", "model.safetensors", "README.md",
                                                      "objective_heads.safetensors", "memory.safetensors"}
    weights, meta = load_tensors(plugin_dir / "model.safetensors")
    assert set(weights) == {"scale", "shift"} and meta["kind"] == KIND  # steps_seen is not a weight
    assert torch.equal(weights["scale"], trained.scale.detach()) and torch.equal(weights["shift"], trained.shift.detach())
    memory, _ = load_tensors(plugin_dir / "memory.safetensors")
    assert set(memory) == {"steps_seen"} and int(memory["steps_seen"]) == 6
    card = (plugin_dir / "README.md").read_text(encoding="utf-8")
    assert "# toy (toyscale plug-in)" in card
    assert "- toyscale reads hidden state 1; on_step ran 6 time(s)" in card
    assert f"- objective: {OBJECTIVE}" in card and f"- data: {FORMAT}: train=" in card
    record = json.loads((plugin_dir / "kadapt_config.json").read_text(encoding="utf-8"))
    assert record["kind"] == KIND and record["config"] == {"name": "toy", "layer": 1, "init_scale": 1.0}
    assert record["parameters"] == 2 * hidden
    assert [o["name"] for o in record["objectives"]] == [OBJECTIVE]
    assert record["objectives"][0]["config"] == {"labels": ["person", "place"]}
    assert record["objectives"][0]["dev_metrics"]["accuracy"] == round(dev["accuracy"], 4)
    info = describe_plugin(plugin_dir)
    assert info["kind"] == KIND and info["parameters"] == 2 * hidden

    # ---------------------------------------------------------------- load_plugin: bit for bit
    loaded = load_plugin(plugin_dir, backbone, expected_kind=KIND)
    assert type(loaded.plugin) is ToyScale and loaded.kind == KIND and loaded.name == "toy"
    trained_state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    assert loaded.plugin.state_dict().keys() == trained_state.keys()
    assert all(torch.equal(loaded.plugin.state_dict()[k], v) for k, v in trained_state.items())
    head_weights = {k[len(OBJECTIVE) + 1:]: v for k, v in loaded.heads.items()}
    assert set(head_weights) == {"classifier.weight", "classifier.bias"}
    assert head_weights["classifier.weight"].shape == (2, 2 * hidden)  # [backbone_last ; toyscale]
    assert set(loaded.memory) == {"steps_seen"}
    loaded.plugin.load_extra_tensors(loaded.memory)  # load_plugin hands memory over; the plug-in restores it
    assert int(loaded.plugin.steps_seen) == 6
    with pytest.raises(PluginFormatError, match="steps_seen"):
        loaded.plugin.load_extra_tensors({"other": torch.zeros(())})
    # the features are [backbone_last ; states[1] * scale + shift] of one shared pass
    enc = backbone.tokenizer(["paris is the capital of france ."], return_tensors="pt")
    model = KnowledgeModel(backbone, [loaded.plugin])
    assert model.required_layers() == [1, backbone.spec.num_layers] and model.feature_size == 2 * hidden
    with torch.no_grad():
        feats = model.features(enc["input_ids"], enc["attention_mask"])
        states = backbone.encode(enc["input_ids"], enc["attention_mask"], [1, backbone.spec.num_layers])
    assert torch.equal(feats[..., :hidden], states[backbone.spec.num_layers])
    assert torch.allclose(feats[..., hidden:], states[1] * trained_state["scale"] + trained_state["shift"])

    # ---------------------------------------------------------------- resume: the extra tensor travels in checkpoints
    ckpts = result.run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000003", "step-0000006"]
    for name, count in (("step-0000003", 3), ("step-0000006", 6)):
        ckpt, _ = load_tensors(ckpts / name / "trainable.safetensors")
        assert int(ckpt["plugins.0::steps_seen"]) == count
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(result.run_dir, resumed_dir)
    shutil.rmtree(resumed_dir / "checkpoints" / "step-0000006")
    shutil.rmtree(resumed_dir / "plugin")
    resumed = infuse(recipe, out=resumed_dir, resume=True, backbone=backbone)
    again = ToyScale.built[-1]
    assert again.step_log == [(3, 1), (4, 1), (5, 1)] and int(again.steps_seen) == 6  # 3 restored + 3 new
    assert resumed.train.global_step == 6
    for key, value in trained_state.items():
        assert torch.equal(again.state_dict()[key], value), f"resumed {key} differs from the uninterrupted run"
    resumed_memory, _ = load_tensors(resumed.plugin_dir / "memory.safetensors")
    assert int(resumed_memory["steps_seen"]) == 6

    # ---------------------------------------------------------------- finetune over the saved plug-in
    n_built = len(ToyScale.built)
    ft_recipe = recipe_from_dict(finetune_recipe(backbone_dir, toy_data, plugin_dir, tmp_path / "ft"), "toy-ft")
    assert check_recipe(ft_recipe) == []
    ft = finetune(ft_recipe, backbone=backbone)
    ft_plugin = ToyScale.built[n_built]
    assert len(ToyScale.built) == n_built + 1
    assert ft_plugin.step_log == [] and int(ft_plugin.steps_seen) == 0  # frozen plug-in: no on_step
    metrics = json.loads((ft.run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["steps"] == 12 and metrics["plugins"] == [str(plugin_dir)]
    assert metrics["trainable_parameters"] == {"head": 2 * 2 * hidden + 2, "fusion": 0, "plugins": 0, "backbone": 0}
    assert metrics["dev"]["accuracy"] >= 0.75 and metrics["test"]["accuracy"] >= 0.75
    predictions = [json.loads(line) for line in (ft.run_dir / "predictions.jsonl").read_text().splitlines()]
    test_records = read_records(FORMAT, toy_data["test"])
    assert [p["gold"] for p in predictions] == [r.label for r in test_records]
    assert {p["prediction"] for p in predictions} == {"person", "place"}  # both labels: a real comparison below
    assert metrics["test"]["accuracy"] == sum(p["gold"] == p["prediction"] for p in predictions) / len(predictions)
    assert all(torch.equal(ft_plugin.state_dict()[k], v) for k, v in trained_state.items())  # plug-in untouched

    # ---------------------------------------------------------------- reload the fine-tuned run
    reloaded = load_finetuned(ft.run_dir, backbone=backbone)
    assert isinstance(reloaded.head, ToySentenceLabel) and reloaded.head.bound_feature_size == 2 * hidden
    assert all(torch.equal(reloaded.plugins[0].state_dict()[k], v) for k, v in trained_state.items())
    head_file, _ = load_tensors(ft.run_dir / "head.safetensors")
    assert all(torch.equal(reloaded.head.state_dict()[k], v) for k, v in head_file.items())
    examples, _ = encoded_test_set(reloaded, toy_data["test"])
    again_metrics, again_predictions = evaluate_model(reloaded, examples, 8, backbone.tokenizer.pad_token_id,
                                                      "cpu", with_predictions=True)
    assert again_predictions == [p["prediction"] for p in predictions]
    assert again_metrics == metrics["test"]
    evaluated = evaluate_run(ft.run_dir, toy_data["test"])  # the `kadapt evaluate` path (loads its own backbone)
    assert evaluated["accuracy"] == metrics["test"]["accuracy"] and evaluated["examples"] == 8
    assert (ft.run_dir / "eval" / "predictions.jsonl").read_text() == (ft.run_dir / "predictions.jsonl").read_text()


def test_families_share_a_command_group():
    """K-Adapter and TRELM both add to `kadapt export`; K-Adapter adds `kadapt import kadapter`."""
    from kadapt.cli.app import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    export, imports = sub.choices["export"], sub.choices["import"]
    assert sorted(export.kadapt_group.choices) == ["kadapter", "merged"]
    assert sorted(imports.kadapt_group.choices) == ["kadapter"]
