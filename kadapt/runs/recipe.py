"""Recipe schema: a YAML file that fully describes one infusion or fine-tuning run.

```yaml
kind: infuse                 # or finetune
name: factual
backbone: {name_or_path: roberta-large}
plugin: {kind: kadapter, config: {name: factual}}        # infuse only
plugins: [adapters_zoo/factual]                           # finetune only (CLI --plugins overrides)
objective: {name: relation_classification, config: {}}   # the infusion objective or the task head
data: {format: trex_rc, train: PATH, dev: PATH, test: PATH, max_length: 64, on_error: raise}
training: {epochs: 5, batch_size: 128, lr: 2.0e-5}       # kadapt.runs.loop.TrainConfig
output: {dir: runs/factual, zoo: adapters_zoo}
```

Unknown keys are errors (with the recipe path); ``key.sub=value`` overrides apply on top; paths may
use ``${KADAPT_DATA_DIR}`` (default: the ``shared/data`` folder next to the checkout).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kadapt.core.errors import KadaptError, RecipeError
from kadapt.core.folders import check_name
from kadapt.core.paths import default_data_dir, minilm_path, resolve_path  # noqa: F401  (part of the schema's API)
from kadapt.core.plugin import PluginConfig

RUN_KINDS = ("infuse", "finetune")


class RecipeValueError(RecipeError):
    """Values outside their ranges: one line per bad value, each naming the recipe file and the key."""


@dataclass
class TrainConfig:
    """Optimisation settings of one run (recipe section ``training``)."""

    epochs: int = field(default=1, metadata={"min": 0, "help": "Passes over the training data."})
    batch_size: int = field(default=32, metadata={"min": 1, "help": "Global batch per forward (split across processes)."})
    grad_accum: int = field(default=1, metadata={"min": 1, "help": "Batches per optimizer step (effective batch = batch_size × grad_accum)."})
    lr: float = field(default=2e-5, metadata={"gt": 0, "help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.0, metadata={"min": 0, "help": "AdamW weight decay (not applied to biases and LayerNorm)."})
    warmup_ratio: float = field(default=0.0, metadata={"min": 0, "lt": 1, "help": "Fraction of optimizer steps with linear warm-up."})
    lr_schedule: str = field(default="linear", metadata={"help": "After warm-up: 'linear' decay to 0 (the papers' setting) or 'constant'."})
    max_grad_norm: float = field(default=1.0, metadata={"min": 0, "help": "Gradient clipping norm (0 = off)."})
    mixed_precision: str = field(default="auto", metadata={"help": "'no', 'bf16', 'fp16' or 'auto' (bf16 on a GPU that has it, else no)."})
    seed: int = field(default=42, metadata={"min": 0, "help": "Seed of data order, dropout and init."})
    seeds: list[int] = field(default_factory=list, metadata={"help": "Fine-tuning: one run per seed (run folder seed-N each), then mean ± std of every dev/test metric in seeds.json. Empty = one run with `seed`."})
    max_steps: int = field(default=0, metadata={"min": 0, "help": "Stop after this many optimizer steps (0 = run all epochs)."})
    log_every: int = field(default=10, metadata={"min": 1, "help": "Log the training loss every N optimizer steps."})
    eval_every: int = field(default=0, metadata={"min": 0, "help": "Evaluate on dev every N optimizer steps (0 = at epoch ends)."})
    save_every: int = field(default=0, metadata={"min": 0, "help": "Checkpoint every N optimizer steps (0 = at epoch ends only)."})
    keep_checkpoints: int = field(default=2, metadata={"min": 1, "help": "Checkpoints kept on disk (oldest deleted)."})
    num_workers: int = field(default=0, metadata={"min": 0, "help": "DataLoader worker processes."})
    cpu: bool = field(default=False, metadata={"help": "Force CPU even when a GPU is present."})
    length_bucketing: bool = field(default=False, metadata={"help": "Batch examples of similar length together (seeded), so dynamic padding pads little."})
    cache: bool = field(default=False, metadata={"help": "Infusion: compute the backbone's hidden states once, store them memory-mapped and train/evaluate from them (outside plug-ins)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hidden-state cache folder (default: $KADAPT_CACHE_DIR or ~/.cache/kadapt/hidden_states)."})
    cache_dtype: str = field(default="float16", metadata={"help": "Storage dtype of cached states: float16, bfloat16 or float32 (computation stays in the backbone's dtype)."})
    report_to: list[str] = field(default_factory=list, metadata={"help": "Experiment trackers besides the JSONL + PNG run log (always written), through accelerate: tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio (each an optional install)."})
    allow_degenerate: bool = field(default=False, metadata={"help": "Allow a training split with a single label, or a run of zero optimizer steps (otherwise an error: such a run writes an untrained plug-in)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in the backward pass instead of storing them (trainable backbone, JAKET's LM2 re-entry, TRELM's attribution pass): less memory, more time; results unchanged."})
    sharding: str = field(default="none", metadata={"choices": ("none", "fsdp", "deepspeed"), "help": "Under several processes: 'none' (DDP: every process holds all trainable weights) or 'fsdp' (FSDP2: weights, gradients and optimizer state sharded across processes). 'deepspeed' is refused (not supported; use fsdp)."})
    checkpoint_format: str = field(default="consolidated", metadata={"choices": ("consolidated", "sharded"), "help": "With sharding: fsdp, 'consolidated' checkpoints (full tensors, written by the main process; resume on any number of processes) or 'sharded' (one file per process; resume on the same number, or consolidate first)."})


BACKBONE_MODES = ("frozen", "full", "lora", "bottleneck")
PLUGIN_MODES = ("frozen", "trainable")
FUSIONS = ("concat", "kadapter")


@dataclass
class FinetuneSection:
    """How a downstream run trains (recipe section ``finetune``)."""

    backbone: str = field(default="frozen", metadata={"help": "frozen | full (all backbone weights train) | lora | bottleneck (an `adapters` task adapter trains; base weights untouched)."})
    plugins: str = field(default="frozen", metadata={"help": "frozen | trainable (the tuned plug-in weights are saved in the run folder)."})
    fusion: str = field(default="concat", metadata={"help": "concat: [backbone; plug-ins]; kadapter: per plug-in Linear([backbone; plug-in]) -> hidden, then concat."})
    lora_r: int = field(default=8, metadata={"min": 1, "help": "LoRA rank (backbone: lora)."})
    lora_alpha: int = field(default=16, metadata={"gt": 0, "help": "LoRA scaling alpha (backbone: lora)."})
    lora_dropout: float = field(default=0.0, metadata={"min": 0, "lt": 1, "help": "Dropout on the LoRA branch (backbone: lora)."})
    lora_matrices: list[str] = field(default_factory=lambda: ["q", "v"], metadata={"help": "Attention matrices that get LoRA: any of q, k, v."})
    reduction_factor: int = field(default=16, metadata={"min": 1, "help": "Bottleneck size = hidden / reduction_factor (backbone: bottleneck, Pfeiffer-style sequential adapter after each FFN)."})

    def validate(self, source: str = "finetune") -> FinetuneSection:
        for name, allowed in (("backbone", BACKBONE_MODES), ("plugins", PLUGIN_MODES), ("fusion", FUSIONS)):
            if getattr(self, name) not in allowed:
                raise RecipeError(f"{source}.{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        bad = sorted(set(self.lora_matrices) - {"q", "k", "v"})
        if bad or not self.lora_matrices:
            raise RecipeError(f"{source}.lora_matrices: {self.lora_matrices!r}; use a non-empty subset of q, k, v")
        if self.lora_r < 1 or self.reduction_factor < 1:
            raise RecipeError(f"{source}: lora_r and reduction_factor must be >= 1")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "finetune") -> FinetuneSection:
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise RecipeError(f"{source}: unknown key(s) {unknown}")
        return cls(**data).validate(source)


@dataclass
class BackboneSection:
    name_or_path: str = field(default="roberta-large", metadata={"help": "Hub name or local folder of the encoder."})
    dtype: str | None = field(default=None, metadata={"help": "Load dtype: float32, bfloat16, float16 (default: the checkpoint's)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the hub (off unless asked)."})


@dataclass
class PluginSection:
    kind: str = field(default="kadapter", metadata={"help": "A registered plug-in kind (family)."})
    config: dict = field(default_factory=dict, metadata={"help": "The kind's config (e.g. KAdapterConfig fields)."})


@dataclass
class ObjectiveSection:
    name: str = field(default="relation_classification", metadata={"help": "Registered objective / task head."})
    config: dict = field(default_factory=dict, metadata={"help": "Objective arguments (labels are read from the training data when absent)."})


@dataclass
class DataSection:
    format: str = field(default="trex_rc", metadata={"help": "Reader of the data files: a registered data format (listed by `kadapt recipe keys`)."})
    train: str | None = field(default=None, metadata={"help": "Training file (or folder for lama_trex)."})
    dev: str | list[str] | None = field(default=None, metadata={"help": "Dev file; metrics each epoch. A list of files (e.g. one per language): each is evaluated and reported (`per_dev`), and the dev metrics are their average (fine-tuning)."})
    test: str | None = field(default=None, metadata={"help": "Test file (fine-tuning: final metrics + predictions)."})
    dev_format: str | None = field(default=None, metadata={"help": "Reader of the dev file(s) when it differs from `format` (e.g. gold CoNLL-U trees for a plug-in infused from raw text)."})
    test_format: str | None = field(default=None, metadata={"help": "Reader of the test file when it differs from `format` (e.g. LAMA cloze queries after MLM-head training on text)."})
    max_length: int = field(default=128, metadata={"min": 2, "help": "Maximum tokens per example."})
    on_error: str = field(default="raise", metadata={"help": "'raise' on a bad record, or 'skip' (counted and logged)."})
    limit: int | None = field(default=None, metadata={"min": 1, "help": "Use N records of each split: a seeded (training.seed), label-stratified subset in file order (not a file prefix; formats without labels keep the first N)."})
    dev_fraction: float = field(default=0.0, metadata={"min": 0, "lt": 1, "help": "Carve this fraction of train as dev when no dev file is given (seeded)."})
    test_fraction: float = field(default=0.0, metadata={"min": 0, "lt": 1, "help": "Carve this fraction of train as test when no test file is given (seeded; carved before dev)."})
    seed: int | None = field(default=None, metadata={"min": 0, "help": "Seed of the data selection (data.limit subset, dev/test carving); default: training.seed. Fix it to vary training seeds over the same data."})


@dataclass
class OutputSection:
    dir: str = field(default="runs/run", metadata={"help": "Run folder (recipe copy, metrics.jsonl, curves.png, checkpoints, result)."})
    zoo: str | None = field(default=None, metadata={"help": "Also register the infused plug-in in this zoo folder."})


@dataclass
class Recipe:
    kind: str = "infuse"
    name: str = "run"
    backbone: BackboneSection = field(default_factory=BackboneSection)
    plugin: PluginSection | None = None
    plugins: list[str] = field(default_factory=list)
    plugin_options: dict[str, dict] = field(default_factory=dict, metadata={"help": "finetune only: run-time options per plug-in kind, handed to each loaded plug-in's prepare_run (e.g. jaket: {kg: DIR, memory: FILE, linker: {...}})."})
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneSection | None = field(default=None, metadata={"help": "Fine-tuning mode (finetune only; kadapt.runs.tuned_model): backbone frozen|full|lora|bottleneck, plugins frozen|trainable, fusion concat|kadapter."})
    output: OutputSection = field(default_factory=OutputSection)
    source: str = field(default="<recipe>", metadata={"help": "Where the recipe came from (not serialised)."})

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        if self.plugin is None:
            data.pop("plugin")
        if self.finetune is None:
            data.pop("finetune")
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {
    "backbone": BackboneSection, "plugin": PluginSection, "objective": ObjectiveSection,
    "data": DataSection, "training": TrainConfig, "output": OutputSection,
}


def _build_section(cls, value, where: str):
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(value).__name__}")
    if cls in (PluginSection, ObjectiveSection):  # free-form inner `config` dicts
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        if not isinstance(value.get("config", {}), dict):
            raise RecipeError(f"{where}.config: expected a mapping")
        return cls(**value)
    if cls is TrainConfig and value.get("mixed_precision") is False:
        value = {**value, "mixed_precision": "no"}  # YAML 1.1 reads the documented `no` as false
    if cls is TrainConfig and isinstance(value.get("report_to"), str):
        value = {**value, "report_to": [value["report_to"]]}  # one tracker may be named without a list
    try:
        return _as_config(cls).from_dict(value, source=where)
    except Exception as err:  # PluginFormatError from the strict dataclass parser
        raise RecipeError(str(err)) from None


def _as_config(cls):
    """Reuse PluginConfig's strict from_dict for any dataclass section."""
    return type(f"_{cls.__name__}", (cls,), {"from_dict": classmethod(PluginConfig.from_dict.__func__)})


def recipe_help() -> dict[str, dict[str, str]]:
    """Help of every recipe key, by section. Keys whose values come from the registry (data formats,
    plug-in kinds, objectives) list what is registered now, shared and families' alike."""
    from kadapt.core.family import format_names, registered_kinds
    from kadapt.core.objective import registered_objectives

    sections = {"backbone": BackboneSection, "plugin": PluginSection, "objective": ObjectiveSection,
                "data": DataSection, "training": TrainConfig, "finetune": FinetuneSection, "output": OutputSection}
    result = {name: {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)} for name, cls in sections.items()}
    registered = {("data", "format"): format_names(), ("data", "test_format"): format_names(),
                  ("data", "dev_format"): format_names(),
                  ("plugin", "kind"): registered_kinds(), ("objective", "name"): registered_objectives()}
    for (section, key), names in registered.items():
        result[section][key] += f" Registered: {', '.join(names)}."
    return result


def settings_help(recipe: Recipe) -> dict[str, str]:
    """Help of every key :func:`effective_settings` gives, by dotted key (``training.lr``,
    ``plugin.config.adapter_size``): the recipe's sections and the plug-in family's config fields."""
    from kadapt.core.family import plugin_class, registered_kinds

    helps = {f"{section}.{key}": text for section, fields in recipe_help().items() for key, text in fields.items()}
    if recipe.plugin is not None and recipe.plugin.kind in registered_kinds():
        config_class = plugin_class(recipe.plugin.kind).config_class
        helps.update({f"plugin.config.{key}": text for key, text in config_class.help().items()})
    helps["data.resolved"] = "The data files after ${VAR} expansion, by split."
    return helps


def recipe_from_dict(data: dict, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(Recipe)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"{source}: unknown top-level key(s) {unknown}; known: {sorted(known)}")
    kind = data.get("kind", "infuse")
    if kind not in RUN_KINDS:
        raise RecipeError(f"{source}: key 'kind' must be one of {list(RUN_KINDS)}, got {kind!r}")
    values: dict = {"kind": kind, "name": str(data.get("name", "run")), "source": source}
    for key, cls in _SECTIONS.items():
        if key in data and data[key] is not None:
            values[key] = _plain(_build_section(cls, data[key], f"{source}: {key}"), cls)
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise RecipeError(f"{source}: 'plugins' must be a list of plug-in folders")
    values["plugins"] = plugins
    options = data.get("plugin_options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in options.items()):
        raise RecipeError(f"{source}: 'plugin_options' must map a plug-in kind to a mapping of options")
    values["plugin_options"] = options
    if data.get("finetune") is not None:
        if not isinstance(data["finetune"], dict):
            raise RecipeError(f"{source}: finetune: expected a mapping")
        values["finetune"] = FinetuneSection.from_dict(data["finetune"], f"{source}: finetune")
    recipe = Recipe(**values)
    if recipe.kind == "infuse" and recipe.plugin is None:
        raise RecipeError(f"{source}: an infuse recipe needs a 'plugin' section")
    if recipe.finetune is not None and recipe.kind != "finetune":
        raise RecipeError(f"{source}: a 'finetune' section belongs to a finetune recipe, not {recipe.kind!r}")
    if recipe.data.on_error not in ("raise", "skip"):
        raise RecipeError(f"{source}: data.on_error must be 'raise' or 'skip', got {recipe.data.on_error!r}")
    problems = range_problems(recipe)
    if problems:
        raise RecipeValueError("\n".join(f"{source}: {p}" for p in problems))
    return recipe


def _bound_problem(value, bounds: dict) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # types are checked by the section parser
    if value != value or value in (float("inf"), float("-inf")):
        return "must be a finite number"
    for key, test, text in (("min", lambda b: value >= b, ">="), ("gt", lambda b: value > b, ">"),
                            ("lt", lambda b: value < b, "<"), ("max", lambda b: value <= b, "<=")):
        if key in bounds and not test(bounds[key]):
            return f"must be {text} {bounds[key]}"
    return None


def range_problems(recipe: Recipe) -> list[str]:
    """One line per numeric value outside the range in its field's metadata (``min``/``gt``/``lt``/``max``),
    plus a run of zero optimizer steps that was not asked for."""
    problems = []
    sections = {"data": recipe.data, "training": recipe.training, "finetune": recipe.finetune}
    for name, section in sections.items():
        if section is None:
            continue
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            problem = _bound_problem(value, f.metadata) if value is not None else None
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                problem = f"use one of {list(f.metadata['choices'])}"
            if problem:
                problems.append(f"key '{name}.{f.name}' is {value!r}; {problem}")
    try:  # a plug-in's name becomes a folder name (joint runs, zoo entries): checked before anything runs
        if recipe.kind == "infuse":
            check_name(recipe.name, "key 'name'")
    except KadaptError as err:
        problems.append(str(err))
    training = recipe.training
    if training.epochs == 0 and not training.max_steps and not training.allow_degenerate:
        problems.append("key 'training.epochs' is 0: zero optimizer steps would write an untrained model; "
                        "set training.allow_degenerate: true to allow it")
    return problems


def backbone_position_limit(name_or_path: str) -> int | None:
    """Longest input the backbone's position embeddings allow (from its config.json; None when unknown).
    RoBERTa-style models reserve ``pad_token_id + 1`` positions."""
    folder = resolve_path(name_or_path)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        limit = int(config["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= int(config.get("pad_token_id", 1)) + 1
    return limit


def max_length_problem(recipe: Recipe) -> str | None:
    limit = backbone_position_limit(recipe.backbone.name_or_path)
    if limit is not None and recipe.data.max_length > limit:
        return (f"key 'data.max_length' is {recipe.data.max_length}; the backbone {recipe.backbone.name_or_path} "
                f"takes at most {limit} tokens (max_position_embeddings)")
    return None


def training_config(values: dict, source: str = "training") -> TrainConfig:
    """A :class:`TrainConfig` from recipe ``training`` keys, checked like a recipe's."""
    return _plain(_build_section(TrainConfig, dict(values), source), TrainConfig)


def _plain(section, cls):
    """Convert a subclass instance made by ``_as_config`` back to ``cls``."""
    if type(section) is cls:
        return section
    return cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})


def parse_override(text: str):
    if "=" not in text:
        raise RecipeError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml_load(raw) if raw != "" else ""


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise RecipeError(f"{source}: override {text!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return data


class RecipeLoader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-5`` / ``3E+2`` (no dot) as floats, as YAML 1.2 and
    every other tool do (plain 1.1 reads them as strings)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str):
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    from kadapt.core.fileio import read_text

    path = Path(path)
    text = read_text(path, "recipe", RecipeError)
    try:
        data = yaml_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecipeError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    return recipe_from_dict(apply_overrides(data or {}, overrides or [], str(path)), str(path))


def split_values(data: DataSection, split: str) -> list[str]:
    """The recipe values of a split's file(s): [] when unset, several for a ``data.dev`` list."""
    value = getattr(data, split)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def missing_data(recipe: Recipe) -> list[str]:
    """Inputs that are not present here yet but are not mistakes in the recipe: data files under
    ``${KADAPT_DATA_DIR}`` (data sets to download) and plug-in folders that do not exist yet (an earlier
    infusion makes them). ``kadapt recipe check`` reports them as notes."""
    data = [f"{recipe.source}: data.{split}: {resolve_path(value)} is not present (data set not installed)"
            for split in ("train", "dev", "test") for value in split_values(recipe.data, split)
            if value.startswith("${KADAPT_DATA_DIR}") and not resolve_path(value).exists()]
    plugins = [f"{recipe.source}: plugins: {resolve_path(d)} is not present (plug-in not infused yet)"
               for d in recipe.plugins if not resolve_path(d).exists()]
    return data + plugins


def check_recipe(recipe: Recipe, require_data: bool = True) -> list[str]:
    """Problems that would stop the run (paths that do not resolve, unknown kinds); [] when valid.

    ``require_data=False``: files under ``${KADAPT_DATA_DIR}`` and plug-in folders that are absent are
    not problems (see :func:`missing_data`); any other path that does not exist still is, and so is a
    plug-in folder without a plug-in config (``kadapt_config.json``)."""
    from kadapt.data.formats import reader_names
    from kadapt.core.objective import registered_objectives
    from kadapt.core.family import registered_kinds

    problems = []
    if recipe.plugin is not None and recipe.plugin.kind not in registered_kinds():
        problems.append(f"plugin.kind {recipe.plugin.kind!r} unknown; known: {registered_kinds()}")
    if recipe.objective.name not in registered_objectives():
        problems.append(f"objective.name {recipe.objective.name!r} unknown; known: {registered_objectives()}")
    if recipe.data.format not in reader_names():
        problems.append(f"data.format {recipe.data.format!r} unknown; known: {reader_names()}")
    for key in ("dev_format", "test_format"):
        if (value := getattr(recipe.data, key)) is not None and value not in reader_names():
            problems.append(f"data.{key} {value!r} unknown; known: {reader_names()}")
    if recipe.data.train is None:
        problems.append("data.train is not set")
    for split in ("train", "dev", "test"):
        for value in split_values(recipe.data, split):
            path = resolve_path(value)
            if not path.exists() and (require_data or not value.startswith("${KADAPT_DATA_DIR}")):
                problems.append(f"data.{split}: {path} does not exist")
    for plugin_dir in recipe.plugins:
        folder = resolve_path(plugin_dir)
        if not folder.exists() and not require_data:
            continue  # not infused yet: a note (missing_data), not a problem
        from kadapt.store.plugin_dir import has_plugin_config

        if not has_plugin_config(folder):
            problems.append(f"plugins: {plugin_dir} has no kadapt_config.json")
    length = max_length_problem(recipe)
    if length:
        problems.append(length)
    backbone = recipe.backbone.name_or_path
    if not resolve_path(backbone).exists() and not _looks_like_hub_id(backbone):
        problems.append(f"backbone.name_or_path: {backbone} is neither a folder nor a hub model id")
    return [f"{recipe.source}: {p}" for p in problems]


def _looks_like_hub_id(name: str) -> bool:
    """``roberta-large`` or ``org/model``: cannot be verified offline, so accepted."""
    return not name.startswith((".", "/", "~", "$")) and name.count("/") <= 1 and bool(name.strip())


def effective_settings(recipe: Recipe) -> dict:
    """Every setting the run will use: the resolved recipe, the fine-tuning mode (its defaults when the
    recipe has no ``finetune`` section), the plug-in config with its family's defaults filled in, and
    the objective's keyword defaults under the recipe's values. ``kadapt recipe show`` prints it."""
    import inspect

    from kadapt.core.family import plugin_class, registered_kinds
    from kadapt.core.objective import objective_class, registered_objectives

    data = recipe.to_dict()
    if recipe.kind == "finetune" and recipe.finetune is None:
        data["finetune"] = FinetuneSection().to_dict()
    if recipe.plugin is not None and recipe.plugin.kind in registered_kinds():
        config_class = plugin_class(recipe.plugin.kind, f"{recipe.source}: plugin.kind").config_class
        data["plugin"]["config"] = config_class.from_dict(recipe.plugin.config, f"{recipe.source}: plugin.config").to_dict()
    if recipe.objective.name in registered_objectives():
        signature = inspect.signature(objective_class(recipe.objective.name).__init__)
        defaults = {name: param.default for name, param in signature.parameters.items()
                    if param.default is not inspect.Parameter.empty}
        data["objective"]["config"] = {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in {**defaults, **recipe.objective.config}.items()}
    data["data"]["resolved"] = {split: [str(resolve_path(v)) for v in split_values(recipe.data, split)]
                                for split in ("train", "dev", "test") if split_values(recipe.data, split)}
    return data
