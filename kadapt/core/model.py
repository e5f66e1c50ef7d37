"""``KnowledgeModel``: a frozen backbone, any set of plug-ins, and one head.

One backbone pass per batch materialises the union of the hidden states the plug-ins read (plus the
last one); every plug-in gets the same :class:`~kadapt.core.plugin.Pass` and returns its feature
block, and features are ``[backbone_last ; plugin_1 ; ... ; plugin_n]`` in the order the plug-ins
were given. A plug-in that changes the pass (TRELM) runs its own inside ``forward(pass_)``; one that
re-enters upper layers (JAKET) calls ``pass_.backbone.run_layers``; the shared states and
``backbone_last`` are always those of the unmodified pass. States read from the hidden-state cache
(batch keys ``hidden_state.<k>``) replace the live pass.

The backbone is kept out of the module tree (not in ``state_dict``, ``parameters()`` or DDP), so only
plug-ins and head are ever saved, optimised or wrapped; :meth:`KnowledgeModel.to` moves it along.
Grouped inputs of shape (batch, n, seq) (multiple choice: a row per choice; QA: a row per document
window) are encoded as batch·n rows and the head gets features of shape (batch, n, seq, size).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.core.objective import Objective, ObjectiveOutput
from kadapt.core.plugin import Pass, Plugin, StepInfo
from kadapt.core.verbs import verb

#: batch keys of cached hidden states: ``hidden_state.<index>``
STATE_PREFIX = "hidden_state."


def states_from_batch(batch: dict) -> dict[int, torch.Tensor] | None:
    """The cached states a batch carries (None for a plain batch)."""
    states = {int(k[len(STATE_PREFIX):]): v for k, v in batch.items() if k.startswith(STATE_PREFIX)}
    return states or None


def grouped_batch(batch: dict) -> dict:
    """The keys of a grouped batch (B, n, ...) that are per row -- tensors whose first two dimensions
    are those of ``input_ids`` (``token_entities``, ``attention_mask``, ...) -- flattened to (B·n, ...)
    like the inputs; per-example keys (``labels``) are left out."""
    lead = batch["input_ids"].shape[:2]
    return {k: v.flatten(0, 1) for k, v in batch.items()
            if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[:2] == lead}


class TrainableModel(nn.Module):
    """What the training loop trains: ``forward(batch) -> ObjectiveOutput`` with a ``head`` (metrics)
    and a ``backbone`` kept outside the module tree. Hooks with no-op defaults: :meth:`on_step` before
    each optimizer step, :meth:`extra_tensors` / :meth:`load_extra_tensors` for state outside
    ``state_dict`` that checkpoints must hold. (No class-level ``head``: ``nn.Module`` keeps a module
    attribute in ``_modules``, which a class attribute would shadow.)"""

    def on_step(self, info: StepInfo) -> None:
        """Called before each optimizer step's first forward."""

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def entity_linking(self):
        """The entity linking the model's encoders should produce ``token_entities`` with (None: none)."""
        return None

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise KadaptError(f"{type(self).__name__} keeps no extra tensors, got {sorted(tensors)[:3]}")


class KnowledgeModel(TrainableModel):
    """A frozen backbone, plug-ins and a head, with the Hugging Face verbs: :meth:`from_pretrained`,
    :meth:`save_pretrained`, :meth:`push_to_hub`, raw-text :meth:`predict`, :meth:`fit` (kadapt's
    loop) and ``forward(**batch)`` for ``transformers.Trainer``."""

    #: ``transformers.Trainer``: the loss is already a mean over the batch (no ``num_items_in_batch``)
    accepts_loss_kwargs = False

    def __init__(self, backbone, plugins: Sequence[Plugin] = (), head: Objective | None = None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # not a submodule
        #: what a fine-tuned run recorded (data format, max length, seed ...); empty for a model built in code
        self.run_info: dict = {}
        self.plugins = nn.ModuleList(plugins)
        for plugin in plugins:
            if plugin.spec != backbone.spec:
                raise KadaptError(
                    f"plug-in {plugin.config.name!r} was built for {plugin.spec}, backbone is {backbone.spec}"
                )
            backbone.require(plugin.backbone_needs, f"{plugin.kind} plug-in {plugin.config.name!r}")
        self.head = head

    def train(self, mode: bool = True) -> KnowledgeModel:
        """Frozen plug-ins (no trainable parameter) stay in eval mode: no dropout noise in features."""
        super().train(mode)
        for plugin in self.plugins:
            if not _trains(plugin):
                plugin.eval()
        return self

    def _apply(self, fn, recurse: bool = True):
        """``.to()`` / ``.cuda()`` / ``.cpu()`` / ``.half()`` / ``.double()`` ... move or cast the
        backbone with the plug-ins and the head (it is outside the module tree, so ``nn.Module``
        alone would leave it behind)."""
        super()._apply(fn, recurse)
        self.backbone.model._apply(fn, recurse)
        return self

    @property
    def feature_size(self) -> int:
        return self.backbone.spec.hidden_size + sum(p.output_size for p in self.plugins)

    def required_layers(self) -> list[int]:
        layers = {self.backbone.spec.num_layers}
        for plugin in self.plugins:
            layers.update(plugin.required_layers())
        return sorted(layers)

    def backbone_pass(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      states: dict[int, torch.Tensor] | None = None, batch: dict | None = None) -> Pass:
        """The shared pass: ``states`` (e.g. from the hidden-state cache) or one backbone pass."""
        if states is None:
            states = self.backbone.encode(input_ids, attention_mask, self.required_layers())
        else:
            states = {k: v.to(self.backbone.dtype) for k, v in states.items()}
        return Pass(self.backbone, input_ids, attention_mask, states, batch)

    def plugin_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       states: dict[int, torch.Tensor] | None = None,
                       batch: dict | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(backbone_last, [plugin_1 output, ...])`` from ONE backbone pass (see :meth:`backbone_pass`)."""
        pass_ = self.backbone_pass(input_ids, attention_mask, states, batch)
        return pass_.last, [plugin(pass_) for plugin in self.plugins]

    def combine(self, last: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        """How plug-in outputs join the backbone's: concatenation (fine-tuning fusions override)."""
        parts = [last, *outputs]
        dtype = parts[-1].dtype
        return torch.cat([p.to(dtype) for p in parts], dim=-1)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 states: dict[int, torch.Tensor] | None = None, batch: dict | None = None) -> torch.Tensor:
        """``[backbone_last ; plugin outputs]``: (B, S, feature_size); arguments as :meth:`plugin_outputs`."""
        return self.combine(*self.plugin_outputs(input_ids, attention_mask, states, batch))

    def batch_features(self, batch: dict) -> torch.Tensor:
        """Features of a collated batch: cached states when it carries them; grouped inputs (B, n, S)
        encoded as B·n rows and returned as (B, n, S, feature_size); the plug-ins then see the batch's
        per-row keys flattened the same way (:func:`grouped_batch`)."""
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        if input_ids.dim() == 3:
            feats = self.features(input_ids.flatten(0, 1), mask.flatten(0, 1), None, grouped_batch(batch))
            return feats.unflatten(0, input_ids.shape[:2])
        return self.features(input_ids, mask, states_from_batch(batch), batch)

    def forward(self, batch: dict | None = None, labels: torch.Tensor | None = None, **inputs) -> ObjectiveOutput:
        """Loss and logits of a collated batch: ``model(batch)`` (kadapt's loop) or ``model(**batch)``
        (``transformers.Trainer``, which passes ``labels`` by name)."""
        if batch is None:
            batch = dict(inputs, **({"labels": labels} if labels is not None else {}))
        elif inputs or labels is not None:
            raise KadaptError("KnowledgeModel: pass the batch as one dict or as keyword arguments, not both")
        if self.head is None:
            raise KadaptError("KnowledgeModel has no head; call .features() for raw features")
        return self.head.step(self, batch)

    # ------------------------------------------------------------------ Hugging Face verbs
    @classmethod
    def from_pretrained(cls, name_or_path, plugins: Sequence = (), head: Objective | str | None = None, *,
                        revision: str | None = None, device=None, dtype=None, **head_config) -> KnowledgeModel:
        """A backbone (hub name, repo id or folder) with ``plugins`` (plug-in folders, Hub repo ids or
        :class:`Plugin` objects) and a ``head`` (an objective, or its registered name with its
        arguments, e.g. ``head="relation_classification", labels=[...]``); or a fine-tuned run (its
        folder or repo id) as one object. ``revision`` is the Hub branch, tag or commit of
        ``name_or_path``; Hub loads honour ``HF_HUB_OFFLINE`` (local cache only)."""
        return verb("model_from_pretrained")(name_or_path, plugins, head, revision=revision, device=device,
                                             dtype=dtype, **head_config)

    def save_pretrained(self, directory, *, overwrite: bool = False, card: dict | None = None):
        """Write the model as a fine-tuned run folder (head, tuned weights, its plug-in folders, a model
        card); :meth:`from_pretrained` reads it back."""
        return verb("model_save_pretrained")(self, directory, overwrite=overwrite, card=card)

    def push_to_hub(self, repo_id: str, **options):
        """Save to a temporary folder and upload it as one commit to ``repo_id`` (``huggingface_hub``)."""
        return verb("model_push_to_hub")(self, repo_id, **options)

    def predict(self, texts, *, batch_size: int = 32, max_length: int | None = None) -> list[dict]:
        """Labels with scores for raw texts in the head's markup (relation heads: ``@ subject @ ... #
        object #``; entity typing: ``@ mention @``), batched by length; one dict per text."""
        return verb("predict_texts")(self, texts, batch_size=batch_size, max_length=max_length)

    def encode_texts(self, texts, labels=None, *, max_length: int | None = None) -> list[dict]:
        """Encoded examples (feature dicts) for raw texts with their gold ``labels`` (training data for
        :meth:`fit` or ``transformers.Trainer``)."""
        return verb("encode_texts")(self, texts, labels, max_length=max_length)

    def fit(self, train: list[dict], dev: list[dict] | None = None, *, out, **training):
        """Train what requires grad with kadapt's loop on encoded examples; ``training``: the recipe's
        ``training`` keys (``epochs``, ``lr``, ``batch_size``, ``seed`` ...)."""
        return verb("model_fit")(self, train, dev, out=out, **training)

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameters, the backbone included (it sits outside the module tree)."""
        params = {id(p): p for p in [*self.parameters(), *self.backbone.model.parameters()]}
        return (sum(p.numel() for p in params.values() if p.requires_grad), sum(p.numel() for p in params.values()))

    def print_trainable_parameters(self) -> None:
        trainable, total = self.trainable_parameters()
        print(f"trainable params: {trainable:,} || all params: {total:,} || "
              f"trainable%: {100 * trainable / max(1, total):.4f}")

    def prepare_run(self, options: dict, source: str = "recipe") -> None:
        """Hand each plug-in its ``options[kind]`` (a fine-tuning recipe's ``plugin_options``); a kind
        no plug-in of the model has is an error."""
        kinds = {p.kind for p in self.plugins}
        unknown = sorted(set(options) - kinds)
        if unknown:
            raise KadaptError(f"{source}: plugin_options names {unknown}; the model's plug-ins are {sorted(kinds)}")
        for plugin in self.plugins:
            plugin.prepare_run(options.get(plugin.kind, {}), self.backbone, source)

    def entity_linking(self):
        """The first plug-in's entity linking (:meth:`Plugin.entity_linking`), or None."""
        return next((e for e in (p.entity_linking() for p in self.plugins) if e is not None), None)

    def on_step(self, info: StepInfo) -> None:
        """Forwarded to every plug-in that trains in this run (TRELM: knowledge-path re-selection)."""
        for plugin in self.plugins:
            if _trains(plugin):
                plugin.on_step(info)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Every plug-in's state outside ``state_dict``, keyed ``plugins.<i>::<name>``."""
        return {f"plugins.{i}::{k}": v for i, p in enumerate(self.plugins) for k, v in p.extra_tensors().items()}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        grouped: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            prefix, name = key.split("::", 1)
            grouped.setdefault(int(prefix.split(".")[1]), {})[name] = value
        for index, plugin_tensors in grouped.items():
            self.plugins[index].load_extra_tensors(plugin_tensors)


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())
