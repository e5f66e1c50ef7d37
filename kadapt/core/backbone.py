"""The frozen backbone: a Hugging Face encoder whose weights never change.

``FrozenBackbone`` loads an HF encoder by hub name or local path, freezes every parameter, and runs
its layers under ``torch.no_grad()`` (not ``inference_mode``: those tensors could not feed trainable
plug-ins). For a model type in :mod:`kadapt.core.architectures` it runs layers one by one with that
architecture's runner, materialises only the hidden states that the active plug-ins ask for and stops
after the deepest one; the first layered use checks the runner once against the model's own
``output_hidden_states`` (:meth:`Backbone.verify_layers`). Another encoder-only model type gets one full
forward pass (correct, slower; logged once); encoder-decoder and decoder-only models are refused.
``run_layers`` lets a re-entrant plug-in push modified states through the frozen upper layers *with*
autograd (gradients flow through the frozen weights into the plug-in). :meth:`Backbone.require` refuses,
in one line, a family whose ``backbone_needs`` this architecture cannot meet.

Hidden-state indices follow the ``output_hidden_states`` tuple: 0 = embedding output, k = output of
transformer layer k (1-based), ``num_layers`` = last hidden state.
"""
from __future__ import annotations

import contextlib
import logging

import hashlib
import json
import logging
from collections import OrderedDict
from contextlib import contextmanager
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.utils.checkpoint
from torch import nn

from kadapt.core import architectures
from kadapt.core.errors import ArchitectureError, FingerprintMismatchError, KadaptError, LayerRunnerMismatchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    """The sizes a plug-in needs to be built; available without weights (meta device)."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int

    @classmethod
    def from_hf_config(cls, config) -> BackboneSpec:
        check_encoder_config(config)
        arch = architectures.architecture(config.model_type)
        if arch is not None:
            width = arch.ffn_width(config)
        else:
            width = getattr(config, "intermediate_size", 4 * config.hidden_size)
        return cls(
            model_type=config.model_type,
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=width,
            vocab_size=config.vocab_size,
        )


_SPEC_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def check_encoder_config(config) -> None:
    """One-line refusal of what is not an encoder-only model with the sizes kadapt reads."""
    model_type = getattr(config, "model_type", "") or type(config).__name__
    if getattr(config, "is_encoder_decoder", False):
        raise ArchitectureError(f"model_type {model_type!r} is an encoder-decoder model; kadapt needs an "
                                "encoder-only model (BERT-like)")
    if getattr(config, "is_decoder", False) or _decoder_only(model_type):
        raise ArchitectureError(f"model_type {model_type!r} is a decoder-only (causal) model; kadapt needs an "
                                "encoder-only model (BERT-like)")
    missing = [name for name in _SPEC_FIELDS if getattr(config, name, None) is None]
    if missing:
        raise ArchitectureError(f"model_type {model_type!r}: config lacks {', '.join(missing)}; kadapt needs an "
                                f"encoder config with {', '.join(_SPEC_FIELDS)}")


def _decoder_only(model_type: str) -> bool:
    """A causal-LM architecture with no masked-LM form (GPT-2, Llama, ...), by transformers' own tables."""
    if architectures.architecture(model_type) is not None:
        return False
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


@dataclass(frozen=True)
class Fingerprint:
    """Identity of a backbone: architecture sizes plus sha256 of its weights and tokenizer.

    ``weights_sha256`` is ``None`` for a backbone built on the meta device (no weights), and
    ``tokenizer_sha256`` is ``None`` when no tokenizer is attached. ``name_or_path`` (the hub name or
    folder it was loaded from, environment placeholders resolved) and ``revision`` (the Hub commit it
    was loaded at; None for a local folder) say where to get it; they are not part of the identity
    (:data:`IDENTITY_FIELDS`, and ``==``): the same weights loaded from another folder match.
    """

    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    weights_sha256: str | None
    tokenizer_sha256: str | None
    name_or_path: str | None = field(default=None, compare=False)
    revision: str | None = field(default=None, compare=False)

    #: the fields compared by :meth:`check_matches` (the others locate the backbone)
    IDENTITY_FIELDS = ("model_type", "hidden_size", "num_layers", "vocab_size", "weights_sha256", "tokenizer_sha256")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "fingerprint") -> Fingerprint:
        """Strict on the identity fields; the location fields are optional (older folders lack them)."""
        try:
            return cls(**{k: data[k] for k in cls.IDENTITY_FIELDS},
                       name_or_path=data.get("name_or_path"), revision=data.get("revision"))
        except KeyError as err:
            raise KadaptError(f"{source}: backbone fingerprint lacks key {err}") from None

    def differences(self, other: Fingerprint) -> list[str]:
        """Human-readable list of identity fields that differ (``field: self != other``)."""
        out = []
        for name in self.IDENTITY_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}: {mine!r} != {theirs!r}")
        return out

    def check_matches(self, actual: Fingerprint, source: str) -> None:
        """Raise if ``actual`` (the backbone in use) differs from this recorded fingerprint."""
        diffs = self.differences(actual)
        if diffs:
            raise FingerprintMismatchError(
                f"{source}: plug-in was trained on another backbone; recorded vs this backbone: "
                + "; ".join(diffs)
            )


def hash_state_dict(state: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted parameter names, dtypes, shapes and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def hash_tokenizer(tokenizer) -> str | None:
    """sha256 of the tokenizer's full serialisation (fast tokenizers) or vocab + special tokens."""
    if tokenizer is None:
        return None
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        # truncation/padding are runtime call settings that change on first use, not identity
        spec.pop("truncation", None)
        spec.pop("padding", None)
        digest.update(json.dumps(spec, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True).encode())
    return digest.hexdigest()


#: distinct inputs a shared-pass scope keeps (a batch's sentences, and its descriptions for XLM-K)
SHARED_PASSES_KEPT = 4


class Backbone:
    """An HF encoder kept outside every module tree (not an ``nn.Module`` on purpose: it never joins
    an optimizer, ``state_dict`` or DDP): sizes, fingerprint, tokenizer, and layer-selective passes.
    Its weights are frozen when it is built; :class:`FrozenBackbone` keeps them so and
    :class:`~kadapt.core.tuned_backbone.TunedBackbone` (fine-tuning modes) makes them train."""

    def __init__(self, model: nn.Module, tokenizer=None, name: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or model.config.model_type
        self.revision: str | None = None  # the Hub commit it was loaded at (from_pretrained by repo id)
        self.model.eval()
        self.model.requires_grad_(False)
        self.spec = BackboneSpec.from_hf_config(model.config)
        self._fingerprint: Fingerprint | None = None
        self._shared: dict | None = None  # see shared_passes()
        self._arch = architectures.architecture(self.spec.model_type)
        self._layered_refusal = architectures.refusal(model, "layers")
        self._verified = False  # the layered path's self-check runs once, at its first use
        self.gradient_checkpointing = False  # see set_gradient_checkpointing()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        revision: str | None = None,
        hub_options: dict | None = None,
    ) -> FrozenBackbone:
        """Load an encoder and its tokenizer by hub name (at ``revision``: branch, tag or commit) or
        local directory; the fingerprint records the name and the Hub commit it was loaded at.
        ``hub_options``: more Hub arguments of ``from_pretrained`` (``cache_dir``, ``local_files_only``)."""
        from transformers import AutoModel, AutoTokenizer

        hub = {**({"revision": revision} if revision is not None else {}), **(hub_options or {})}
        kwargs = {"trust_remote_code": trust_remote_code, **hub}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            with _quiet_transformers():  # the encoder of a *ForXxx checkpoint: HF's "weights not used" block is noise
                model = AutoModel.from_pretrained(str(name_or_path), add_pooling_layer=False, **kwargs)
        except TypeError:  # architectures without a pooler argument
            with _quiet_transformers():
                model = AutoModel.from_pretrained(str(name_or_path), **kwargs)
        except (OSError, ValueError) as err:  # ValueError: e.g. a missing path that is no valid Hub name either
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise KadaptError(f"cannot load backbone {str(name_or_path)!r}: {first}") from None
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code, **hub)
        backbone = cls(model.to(device), tokenizer, name=str(name_or_path))
        backbone.revision = getattr(model.config, "_commit_hash", None) if not Path(name_or_path).is_dir() else None
        return backbone

    @classmethod
    def from_config(cls, config, tokenizer=None, *, meta: bool = True) -> FrozenBackbone:
        """Build from a config alone; on the meta device no memory is allocated (sizes only)."""
        from transformers import AutoModel

        if meta:
            with torch.device("meta"):
                model = AutoModel.from_config(config)
        else:
            model = AutoModel.from_config(config)
        return cls(model, tokenizer, name=getattr(config, "_name_or_path", "") or config.model_type)

    # ----------------------------------------------------------------- identity
    @property
    def is_meta(self) -> bool:
        return any(p.is_meta for p in self.model.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def fingerprint(self) -> Fingerprint:
        if self._fingerprint is None:
            weights = None if self.is_meta else hash_state_dict(self.model.state_dict())
            self._fingerprint = Fingerprint(
                model_type=self.spec.model_type,
                hidden_size=self.spec.hidden_size,
                num_layers=self.spec.num_layers,
                vocab_size=self.spec.vocab_size,
                weights_sha256=weights,
                tokenizer_sha256=hash_tokenizer(self.tokenizer),
                name_or_path=self.name or None,
                revision=self.revision,
            )
        return self._fingerprint

    def to(self, device: str | torch.device) -> FrozenBackbone:
        self.model.to(device)
        return self

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each layer's activations during the backward pass of :meth:`run_layers` instead
        of keeping them (JAKET's LM2 re-entry, TRELM's attribution pass): activation memory of one
        layer instead of all, one extra forward of the layers in time; values and gradients unchanged
        (the RNG state is replayed). A tuned backbone also switches its whole-model pass."""
        self.gradient_checkpointing = bool(enabled)

    # ----------------------------------------------------------------- forward
    def _check_layers(self, layers: Iterable[int]) -> list[int]:
        wanted = sorted(set(int(i) for i in layers))
        bad = [i for i in wanted if not 0 <= i <= self.spec.num_layers]
        if bad:
            raise KadaptError(
                f"hidden-state indices {bad} outside 0..{self.spec.num_layers} for this "
                f"{self.spec.num_layers}-layer backbone"
            )
        return wanted

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state 0 (embedding output), without autograd, exactly as the model's forward builds it
        (``attention_mask`` matters for DeBERTa, whose embeddings zero the padding)."""
        self.require(("layers",), "embed")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        with torch.no_grad():
            return self._arch.embed(self.model, input_ids, attention_mask, token_type_ids)

    # ----------------------------------------------------------------- architecture support
    def refusal(self, capability: str) -> str | None:
        """``None`` when this backbone offers ``capability`` ("states", "layers", "ffn"), else why not."""
        if capability == "layers":
            return self._layered_refusal
        return architectures.refusal(self.model, capability)

    def require(self, needs: Iterable[str], who: str) -> None:
        """Refuse (one line naming the model type and what is missing) when a capability is lacking."""
        for capability in needs:
            reason = self.refusal(capability)
            if reason is not None:
                what = {"layers": "layers run one by one", "ffn": "per-layer FFN blocks"}.get(capability, capability)
                raise ArchitectureError(f"{who} needs {what}, which model_type {self.spec.model_type!r} "
                                        f"cannot offer exactly: {reason}")
        if "layers" in needs:
            self.verify_layers()

    def verify_layers(self, tolerance: float | None = None) -> float:
        """Self-check of the layered path (once per backbone): a small padded batch through it vs the
        model's own ``output_hidden_states``; returns the largest difference, raises above ``tolerance``."""
        if (self._verified and tolerance is None) or self.is_meta:  # meta: sizes only, nothing to run
            return 0.0
        ids, mask = self._check_batch()
        training = self.model.training
        self.model.eval()  # no dropout: both paths must be deterministic to compare
        try:
            with torch.no_grad():
                reference = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                layered = self._layered_states(ids, mask, list(range(self.spec.num_layers + 1)), None)
        finally:
            self.model.train(training)
        diffs = [float((layered[i].float() - ref.float()).abs().max()) for i, ref in enumerate(reference)]
        worst = max(range(len(diffs)), key=diffs.__getitem__)
        scale = max(1.0, max(float(r.float().pow(2).mean().sqrt()) for r in reference))  # RMS, not outliers
        limit = (tolerance if tolerance is not None else _tolerance(self.dtype)) * scale
        if not diffs[worst] <= limit:
            raise LayerRunnerMismatchError(
                f"model_type {self.spec.model_type!r}: kadapt's layer-by-layer runner differs from the model's "
                f"own forward by {diffs[worst]:.2e} at hidden state {worst} (tolerance {limit:.1e}); refusing "
                "to run it silently wrong")
        self._verified = True
        return max(diffs)

    def _check_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """2 rows x 8 tokens of non-special ids, the second row padded after 5 tokens."""
        pad = self.model.config.pad_token_id if self.model.config.pad_token_id is not None else 0
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(5, max(6, self.spec.vocab_size), (2, 8), generator=generator)
        ids[ids == pad] = 5 if pad != 5 else 6
        mask = torch.ones(2, 8, dtype=torch.long)
        mask[1, 5:] = 0
        return ids.masked_fill(mask == 0, pad).to(self.device), mask.to(self.device)

    @contextmanager
    def shared_passes(self, layers: Iterable[int]):
        """Within this scope, ``encode`` runs each distinct input once: the first call computes the
        states at ``layers`` (plus what it asked for), later calls with the same ids and mask read them.
        A joint run opens it so several plug-ins trained on the same batch share one backbone pass."""
        self._shared = {"layers": self._check_layers(layers), "passes": OrderedDict()}
        try:
            yield self
        finally:
            self._shared = None

    def _shared_encode(self, input_ids, attention_mask, wanted, token_type_ids):
        key = tuple(t.shape for t in (input_ids, attention_mask)) + (
            input_ids.cpu().numpy().tobytes(), attention_mask.cpu().numpy().tobytes(), token_type_ids is None)
        passes = self._shared["passes"]
        if key not in passes or not set(wanted) <= set(passes[key]):
            union = sorted(set(wanted) | set(self._shared["layers"]))
            passes[key] = self._encode(input_ids, attention_mask, union, token_type_ids)
            while len(passes) > SHARED_PASSES_KEPT:  # the inputs of the current batch only
                passes.popitem(last=False)
        return {i: passes[key][i] for i in wanted}

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Iterable[int],
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor]:
        """Hidden states at ``layers`` only; stops after the deepest requested layer. No autograd."""
        wanted = self._check_layers(layers)
        if not wanted:
            return {}
        if self._shared is not None:
            return self._shared_encode(input_ids, attention_mask, wanted, token_type_ids)
        return self._encode(input_ids, attention_mask, wanted, token_type_ids)

    def _encode(self, input_ids, attention_mask, wanted: list[int], token_type_ids=None) -> dict[int, torch.Tensor]:
        with torch.no_grad():
            if self._layered_refusal is not None:  # full forward, then select: correct, slower
                _log_fallback_once(self.spec.model_type, self._layered_refusal)
                out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                                 **({"token_type_ids": token_type_ids} if token_type_ids is not None else {}))
                return {i: out.hidden_states[i] for i in wanted}
            self.verify_layers()
            return self._layered_states(input_ids, attention_mask, wanted, token_type_ids)

    def _layered_states(self, input_ids, attention_mask, wanted: list[int], token_type_ids) -> dict[int, torch.Tensor]:
        """States at ``wanted`` through the architecture's runner; stops after the deepest one."""
        arch, model = self._arch, self.model
        hidden = arch.embed(model, input_ids, attention_mask, token_type_ids)
        states = {0: hidden} if 0 in wanted else {}
        context = arch.context(model, attention_mask, hidden)
        for index in range(1, wanted[-1] + 1):
            hidden = arch.run_layer(model, index - 1, hidden, context)
            if index in wanted:
                states[index] = hidden
        return states

    def run_layers(
        self, hidden: torch.Tensor, start: int, end: int, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Map hidden state ``start`` to hidden state ``end`` through frozen layers start+1..end.

        Runs WITH autograd so gradients reach whatever produced ``hidden`` (the weights stay frozen).
        """
        self.require(("layers",), "run_layers")
        if not 0 <= start <= end <= self.spec.num_layers:
            raise KadaptError(f"run_layers({start}, {end}) outside 0..{self.spec.num_layers}")
        context = self._arch.context(self.model, attention_mask, hidden)
        recompute = self.gradient_checkpointing and torch.is_grad_enabled()
        for index in range(start, end):
            if recompute:
                hidden = torch.utils.checkpoint.checkpoint(self._arch.run_layer, self.model, index, hidden, context,
                                                           use_reentrant=False)
            else:
                hidden = self._arch.run_layer(self.model, index, hidden, context)
        return hidden


_FALLBACK_LOGGED: set[str] = set()


def _log_fallback_once(model_type: str, reason: str) -> None:
    if model_type not in _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.add(model_type)
        log.info("backbone model_type %r: hidden states come from one full forward pass (correct, slower): %s",
                 model_type, reason)


def _tolerance(dtype: torch.dtype) -> float:
    """Largest accepted self-check difference, relative to the states' RMS (at least 1)."""
    return 1e-4 if dtype in (torch.float32, torch.float64) else 3e-2


class FrozenBackbone(Backbone):
    """The frozen encoder of infusion and of fine-tuning with ``backbone: frozen``: weights never
    change, ``encode`` runs without autograd, ``run_layers`` with it (gradients reach the plug-in)."""


@contextlib.contextmanager
def _quiet_transformers():
    """transformers at ERROR level while loading (unless kadapt runs at INFO/DEBUG: ``-v``)."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    if not logging.getLogger("kadapt").isEnabledFor(logging.INFO):
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
