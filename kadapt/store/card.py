"""Model-card metadata headers (``huggingface_hub.ModelCardData``) for plug-in folders and saved models.

The header is the YAML block the Hub reads: ``library_name: kadapt``, ``base_model`` (the backbone's
Hub name; omitted for a local folder, which is no repo id), ``license``, ``datasets``, ``tags`` and
``metrics``; measured metric values go into ``model-index`` (``eval_results``) when the card names the
dataset they were measured on.
"""
from __future__ import annotations

from pathlib import Path

from kadapt.store.repo_ids import is_repo_id


def base_model_name(name_or_path: str | None) -> str | None:
    """The backbone's Hub name, or None for a local folder (``base_model`` must be a repo id)."""
    if not name_or_path or Path(name_or_path).is_absolute() or Path(name_or_path).exists():
        return None
    return name_or_path if is_repo_id(name_or_path) or "/" not in name_or_path else None


def card_header(*, name: str, backbone: dict, tags: list[str], card: dict) -> str:
    """The ``---`` YAML block of a model card; ``card`` may carry ``license``, ``datasets``,
    ``metrics`` ({name: value}), ``task`` and ``dataset`` (where the metrics were measured)."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = {k: v for k, v in (card.get("metrics") or {}).items() if isinstance(v, (int, float))}
    datasets = card.get("datasets") or ([card["dataset"]] if card.get("dataset") else None)
    results = None
    if metrics and card.get("dataset"):
        results = [EvalResult(task_type=card.get("task") or "text-classification", dataset_type=card["dataset"],
                              dataset_name=card["dataset"], metric_type=key, metric_value=float(value))
                   for key, value in metrics.items()]
    data = ModelCardData(
        library_name="kadapt",
        base_model=base_model_name(backbone.get("name_or_path")),
        license=card.get("license"),
        datasets=list(datasets) if datasets else None,
        tags=["kadapt", *tags],
        metrics=sorted(metrics) or None,
        model_name=name if results else None,
        eval_results=results,
    )
    return f"---\n{data.to_yaml()}\n---\n"
