"""The Hugging Face verbs of ``KnowledgeModel`` and ``Plugin`` (registered in :mod:`kadapt.core.verbs`).

* ``KnowledgeModel.from_pretrained(backbone, plugins=[...], head=...)`` -- a backbone (hub name, repo id
  or folder; ``revision``, ``device``, ``dtype``) with plug-ins (folders, Hub repo ids or objects) and a
  head; or ``KnowledgeModel.from_pretrained(run)`` -- a fine-tuned run (folder or repo id) as one
  object, as :func:`kadapt.runs.finetune.load_finetuned` rebuilds it.
* ``model.save_pretrained(dir)`` -- the run layout of :mod:`kadapt.runs.finetune` (``head_config.json``,
  ``head.safetensors``, the mode's tuned weights), with the plug-in folders inside (``plugins/<i>-<name>``,
  recorded relative to the folder) and a model card with a metadata header; the folder is staged whole
  and switched in with one rename.
* ``push_to_hub`` -- save to a temporary folder, upload it as one commit (:mod:`kadapt.store.hub`).
* ``Plugin.from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` over :mod:`kadapt.store.plugin_dir`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.errors import KadaptError
from kadapt.core.fileio import atomic_write_json, atomic_write_text, read_json
from kadapt.core.folders import FolderExistsError, check_path_length, folder_has_content, publish_folder, staging_path
from kadapt.core.model import KnowledgeModel
from kadapt.core.objective import Objective, build_objective
from kadapt.core.paths import resolve_path
from kadapt.core.plugin import Plugin
from kadapt.core.verbs import register_verbs
from kadapt.runs.finetune import RUN_CONFIG_FILE, load_finetuned, run_config
from kadapt.runs.predict import DEFAULT_MAX_LENGTH, encode_texts, predict_texts
from kadapt.runs.tuned_model import TunableKnowledgeModel, save_tuned
from kadapt.store import hub
from kadapt.store.card import card_header
from kadapt.store.plugin_dir import load_plugin, save_plugin

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PLUGINS_DIR = "plugins"


# ---------------------------------------------------------------------------------- loading
def model_from_pretrained(name_or_path, plugins=(), head=None, *, revision=None, device=None, dtype=None,
                          **head_config) -> KnowledgeModel:
    dtype = torch_dtype(dtype)
    run = run_folder(name_or_path, revision)
    if run is not None:
        if plugins or head is not None or head_config:
            raise KadaptError(f"{name_or_path}: a fine-tuned run brings its own plug-ins and head; "
                              "pass plugins=/head= with a backbone instead")
        info = read_json(run / RUN_CONFIG_FILE, "fine-tuned head config")
        fingerprint = info["backbone_fingerprint"]
        backbone = load_backbone(info["backbone"], fingerprint.get("revision"), device, dtype)
        model = load_finetuned(run, backbone, copy_backbone=False)
        return model.to(backbone.device, dtype=dtype)
    backbone = load_backbone(str(name_or_path), revision, device, dtype)
    loaded = [p if isinstance(p, Plugin) else plugin_from_pretrained(p, backbone) for p in plugins]
    for plugin in loaded:
        plugin.requires_grad_(False)
    model = TunableKnowledgeModel(backbone, loaded)
    if head is not None:
        attach_head(model, head, head_config)
    elif head_config:
        raise KadaptError(f"head arguments {sorted(head_config)} given without head=")
    return model.to(backbone.device, dtype=dtype)  # dtype: the whole model, as transformers' dtype= does


def run_folder(name_or_path, revision: str | None) -> Path | None:
    """The local folder of a fine-tuned run (a folder or Hub repo with ``head_config.json``), else None."""
    path = resolve_path(str(name_or_path))
    if path.is_dir():
        return path if (path / RUN_CONFIG_FILE).is_file() else None
    if not hub.is_repo_id(str(name_or_path)) or hub.hub_file(str(name_or_path), RUN_CONFIG_FILE, revision) is None:
        return None
    return hub.snapshot(str(name_or_path), revision, "fine-tuned model")


def torch_dtype(dtype) -> torch.dtype | None:
    """``dtype`` given as a torch dtype or its name (float32, bfloat16, float16)."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise KadaptError(f"dtype {dtype!r} unknown; use one of {sorted(DTYPES)}")
        return DTYPES[dtype]
    return dtype


def load_backbone(name_or_path: str, revision: str | None, device, dtype) -> FrozenBackbone:
    """A backbone by folder (``${VAR}`` resolved) or Hub name; offline, a name that is not in the Hub
    cache is one line saying how to fetch it."""
    dtype = torch_dtype(dtype)
    path = resolve_path(name_or_path)
    if path.exists():
        if revision is not None:
            raise KadaptError(f"{path}: revision={revision!r} applies to Hub names; this is a local folder")
        return FrozenBackbone.from_pretrained(path, dtype=dtype, device=device or "cpu")
    if not hub.is_hub_name(name_or_path):
        raise KadaptError(f"{path}: no such backbone folder (and not a Hub name such as 'roberta-large' or 'org/model')")
    if hub.hub_offline() and hub.hub_file(name_or_path, "config.json", revision) is None:
        raise hub.HubError(hub.not_cached_message(name_or_path, revision, "backbone", offline=True))
    return FrozenBackbone.from_pretrained(name_or_path, dtype=dtype, device=device or "cpu", revision=revision,
                                          hub_options={"cache_dir": hub.hub_cache_dir(),
                                                       "local_files_only": hub.hub_offline()})


def attach_head(model: KnowledgeModel, head: Objective | str, config: dict) -> None:
    """``head``: an objective built for ``model.feature_size``, or a registered name with its arguments."""
    if isinstance(head, str):
        head = build_objective(head, model.feature_size, config, source="head")
    elif config:
        raise KadaptError(f"head arguments {sorted(config)} given with a built head; pass head='<name>' instead")
    if head.feature_size != model.feature_size:
        raise KadaptError(f"head {head.name!r} was built for features of size {head.feature_size}; the model's "
                          f"are {model.feature_size} (backbone + plug-ins)")
    model.head = head
    head.bind(model)


def plugin_from_pretrained(name_or_path, backbone, *, revision=None, expected_kind=None) -> Plugin:
    folder = hub.local_folder(resolve_path(str(name_or_path)), revision, "plug-in")
    hub.refuse_foreign_folder(folder, str(name_or_path))
    plugin = load_plugin(folder, backbone, expected_kind=expected_kind).plugin
    return plugin.requires_grad_(False)  # frozen, as plug-ins are at fine-tuning (requires_grad_(True) to train)


# ---------------------------------------------------------------------------------- saving
def plugin_save_pretrained(plugin: Plugin, directory, backbone=None, *, overwrite=False, card=None) -> Path:
    fingerprint = backbone.fingerprint if backbone is not None else plugin.recorded_backbone
    if fingerprint is None:
        raise KadaptError(f"plug-in {plugin.config.name!r} was built in code: save_pretrained(dir, backbone) needs "
                          "the backbone it belongs to (its fingerprint is recorded)")
    memory = plugin.extra_tensors()
    return save_plugin(plugin, directory, fingerprint, memory=memory or None, card=card, overwrite=overwrite)


def model_save_pretrained(model: KnowledgeModel, directory, *, overwrite=False, card=None) -> Path:
    if model.head is None:
        raise KadaptError("save_pretrained needs a model with a head (a backbone with plug-ins alone: save each "
                          "plug-in with plugin.save_pretrained)")
    directory = check_path_length(Path(directory), "model folder")
    if folder_has_content(directory) and not overwrite:
        raise FolderExistsError(f"{directory}: a model already exists here; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(directory)
    staging.mkdir()
    try:
        write_run_folder(staging, tunable(model), card or {})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return publish_folder(staging, directory, overwrite=overwrite, what="model")


def tunable(model: KnowledgeModel) -> TunableKnowledgeModel:
    """``model`` as the fine-tuning mode it is in (a plain KnowledgeModel: frozen backbone, concat, its
    plug-ins trainable when any of them trains)."""
    if isinstance(model, TunableKnowledgeModel):
        return model
    from kadapt.runs.recipe import FinetuneSection

    trains = [p.requires_grad for p in model.plugins.parameters()]
    view = TunableKnowledgeModel(model.backbone, list(model.plugins), model.head,
                                 FinetuneSection(plugins="trainable" if any(trains) else "frozen"))
    for param, flag in zip(model.plugins.parameters(), trains):
        param.requires_grad_(flag)  # the view must not change what trains
    view.run_info = model.run_info
    return view


def write_run_folder(folder: Path, model: TunableKnowledgeModel, card: dict) -> None:
    info = model.run_info
    plugin_dirs = []
    for index, plugin in enumerate(model.plugins):
        relative = f"{PLUGINS_DIR}/{index}-{plugin.config.name}"
        if plugin.loaded_from is not None:  # the folder as it was infused (heads, memory, card, manifest)
            shutil.copytree(plugin.loaded_from, folder / relative)
        else:
            save_plugin(plugin, folder / relative, model.backbone.fingerprint, memory=plugin.extra_tensors() or None)
        plugin_dirs.append(relative)
    mode_info = save_tuned(folder, model)
    record = run_config(model, plugin_dirs, info.get("plugin_options") or {}, data_format=info.get("data_format"),
                        test_format=info.get("test_format"),
                        max_length=info.get("max_length", DEFAULT_MAX_LENGTH), seed=info.get("seed", 0))
    atomic_write_json(folder / RUN_CONFIG_FILE, {**record, **mode_info})
    atomic_write_text(folder / "README.md", model_card(model, plugin_dirs, card))


def model_card(model: TunableKnowledgeModel, plugin_dirs: list[str], card: dict) -> str:
    fp = model.backbone.fingerprint
    name = card.get("name") or f"kadapt-{model.head.name}"
    kinds = sorted({p.kind for p in model.plugins})
    lines = [card_header(name=name, backbone=fp.to_dict(), tags=["knowledge-plugin", model.head.name, *kinds],
                         card=card).rstrip("\n"),
             f"# {name}", "", card.get("summary", f"A {model.head.name} head over a frozen encoder with "
                                                   f"{len(plugin_dirs)} kadapt knowledge plug-in(s)."), "",
             f"- backbone: `{fp.name_or_path}`" + (f" (Hub revision `{fp.revision}`)" if fp.revision else ""),
             f"- fine-tuning mode: `{model.section.to_dict()}`"]
    lines += [f"- plug-in: `{d}`" for d in plugin_dirs]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Metrics"] + [f"- {k}: {v}" for k, v in metrics.items()]
    lines += ["", "## How to load", "```python", "from kadapt import KnowledgeModel",
              "model = KnowledgeModel.from_pretrained('<this folder or repo id>')",
              "model.predict(['<a text in the head's markup>'])", "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- Hub push, fit
def _push(save, repo_id: str, commit_message: str, options: dict):
    with tempfile.TemporaryDirectory(prefix="kadapt-push-") as tmp:
        folder = save(Path(tmp) / "folder")
        return hub.push_folder(folder, repo_id, commit_message=commit_message, **options)


def model_push_to_hub(model: KnowledgeModel, repo_id: str, *, card=None, commit_message="Upload kadapt model",
                      **options):
    return _push(lambda d: model_save_pretrained(model, d, card=card), repo_id, commit_message, options)


def plugin_push_to_hub(plugin: Plugin, repo_id: str, backbone=None, *, card=None,
                       commit_message="Upload kadapt plug-in", **options):
    return _push(lambda d: plugin_save_pretrained(plugin, d, backbone, card=card), repo_id, commit_message, options)


def model_fit(model: KnowledgeModel, train: list[dict], dev: list[dict] | None = None, *, out, **training):
    """kadapt's loop (:func:`kadapt.runs.loop.train`) over encoded examples; returns its ``TrainResult``."""
    from kadapt.runs.loop import train as train_loop
    from kadapt.runs.recipe import training_config

    config = training_config(training, "fit")
    result = train_loop(model, train, dev, config, Path(out), pad_id=model.backbone.tokenizer.pad_token_id)
    model.run_info.setdefault("seed", config.seed)
    return result


register_verbs(model_from_pretrained=model_from_pretrained, model_save_pretrained=model_save_pretrained,
               model_push_to_hub=model_push_to_hub, model_fit=model_fit, predict_texts=predict_texts,
               encode_texts=encode_texts, plugin_from_pretrained=plugin_from_pretrained,
               plugin_save_pretrained=plugin_save_pretrained, plugin_push_to_hub=plugin_push_to_hub)
