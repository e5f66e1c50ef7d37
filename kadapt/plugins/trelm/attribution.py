"""Knowledge attribution of FFN neurons by integrated gradients (TRELM eq. 9–12).

For the post-activation intermediate state ``v`` of layer ``l`` at the target positions,

    Attr(v_i) ≈ v_i / m · Σ_{k=1..m} ∂P(k/m · v) / ∂v_i          (eq. 11, Riemann sum, m = 20)

where ``P`` is the probability of the correct answer under the knowledge-assessing objective. The m
scaled copies of the batch run as ONE batch of m·B sequences: a forward hook replaces the layer's
intermediate state at the target positions by the scaled copies (other positions keep their own
values). Scores are summed over target positions and batch rows: one vector per layer. The knowledge
path of a layer (eq. 12) is its selected intermediate neurons: the rows of the FFN input matrix and
the columns of the FFN output matrix that feed and read them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.plugins.trelm.ffn import ffn_blocks

#: ``score(last_hidden, batch) -> (rows,)`` probability of the correct answer per row
ScoreFn = Callable[[torch.Tensor, dict], torch.Tensor]


def repeat_batch(batch: dict, times: int) -> dict:
    """Every tensor repeated ``times`` along dim 0 (copy ``k`` = rows ``k·B .. (k+1)·B-1``)."""
    return {k: v.repeat(times, *([1] * (v.ndim - 1))) if torch.is_tensor(v) and v.ndim else v
            for k, v in batch.items()}


def _last_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def integrated_gradients(
    model,
    batch: dict,
    target_mask: torch.Tensor,
    score: ScoreFn,
    *,
    steps: int = 20,
    layers: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Attribution scores, one ``(intermediate_size,)`` tensor per FFN layer (eq. 11).

    ``model`` is the HF encoder, or a ``FrozenBackbone``: then the scaled passes for layer ``l`` start
    from the cached input of layer ``l`` (the layers below see no scaling), which saves the lower
    layers' work. Hooks installed by the caller (e.g. a mask adapter) stay active.
    ``target_mask`` (B, S) marks the positions whose intermediate states are scaled.
    """
    backbone = model if hasattr(model, "run_layers") else None
    model = backbone.model if backbone is not None else model
    if steps < 1:
        raise KadaptError(f"integrated gradients need steps >= 1, got {steps}")
    blocks = ffn_blocks(model)
    layers = list(range(len(blocks))) if layers is None else list(layers)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    target = target_mask.bool()
    # baseline pass: the intermediate states v (the upper bounds of the integral) of every layer
    captured: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}
    handles = [blocks[layer].activation_module.register_forward_hook(_capture(captured, layer)) for layer in layers]
    try:
        with torch.no_grad():
            if backbone is not None:
                inputs = backbone.encode(ids, mask, [*layers, max(layers) + 1])  # state l = input of layer l (0-based)
            else:
                _last_hidden(model, ids, mask)
    finally:
        for handle in handles:
            handle.remove()

    alphas = torch.arange(1, steps + 1, dtype=torch.float32, device=ids.device) / steps
    big = repeat_batch(batch, steps)
    target_big = target.repeat(steps, 1)[..., None]
    scores = []
    for layer in layers:
        v = captured[layer]
        scaled = (alphas.to(v.dtype)[:, None, None, None] * v[None]).reshape(steps * v.shape[0], *v.shape[1:])
        scaled.requires_grad_(True)

        def replace(module, args, output, scaled=scaled):
            return torch.where(target_big, scaled, output)

        handle = blocks[layer].activation_module.register_forward_hook(replace)
        try:
            with torch.enable_grad():
                if backbone is not None:
                    start = inputs[layer].repeat(steps, 1, 1)
                    hidden = backbone.run_layers(start, layer, len(blocks), big["attention_mask"])
                else:
                    hidden = _last_hidden(model, big["input_ids"], big["attention_mask"])
                (grad,) = torch.autograd.grad(score(hidden, big).sum(), scaled)
        finally:
            handle.remove()
        mean_grad = grad.view(steps, *v.shape).mean(0)
        attr = (v * mean_grad).masked_fill(~target[..., None], 0.0)
        scores.append(attr.sum(dim=(0, 1)).detach())
    return scores


def gradient_x_activation(backbone, batch: dict, target_mask: torch.Tensor, score: ScoreFn) -> list[torch.Tensor]:
    """The first-order proxy of eq. 11: ``v_i · ∂P(v)/∂v_i`` at the target positions, every layer from ONE
    forward and one backward pass (``backbone`` a ``FrozenBackbone``). It is exactly integrated gradients
    with m = 1 (the single Riemann point α = 1 is the unscaled pass), at the cost of one pass instead of
    one m-copy pass per layer. Hooks installed by the caller (e.g. a mask adapter) stay active."""
    blocks = ffn_blocks(backbone.model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    target = target_mask.bool()
    captured: dict[int, torch.Tensor] = {}

    def keep(layer):
        def hook(module, args, output):
            captured[layer] = output
        return hook

    handles = [block.activation_module.register_forward_hook(keep(layer)) for layer, block in enumerate(blocks)]
    try:
        with torch.enable_grad():
            hidden = backbone.embed(ids).detach().requires_grad_(True)  # so every later state is in the graph
            last = backbone.run_layers(hidden, 0, len(blocks), mask)
            states = [captured[layer] for layer in range(len(blocks))]
            grads = torch.autograd.grad(score(last, batch).sum(), states)
    finally:
        for handle in handles:
            handle.remove()
    return [(v.detach() * g).masked_fill(~target[..., None], 0.0).sum(dim=(0, 1)) for v, g in zip(states, grads)]


def top_k_overlap(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> list[float]:
    """Per layer, |A ∩ B| / |A| of two selections of equal size (1.0 for two empty selections)."""
    out = []
    for x, y in zip(a, b):
        if x.numel() != y.numel():
            raise KadaptError(f"selections of {x.numel()} and {y.numel()} neurons cannot be compared")
        out.append(1.0 if x.numel() == 0 else float(torch.isin(x, y).sum()) / x.numel())
    return out


def _capture(store: dict, layer: int):
    def hook(module, args, output):
        store[layer] = output.detach()
    return hook


def select_neurons(
    scores: Sequence[torch.Tensor], *, top_k: int | Sequence[int] | None = None, threshold: float | None = None
) -> list[torch.Tensor]:
    """The knowledge path per layer: sorted neuron indices.

    ``top_k``: the k highest-scoring neurons of each layer (an int, or one count per layer; 0 selects
    none). ``threshold``: every neuron whose score is at least ``threshold × (highest score over all
    layers)`` (the knowledge-neurons convention) — a layer may get zero neurons. Exactly one of the two.
    """
    if (top_k is None) == (threshold is None):
        raise KadaptError("select_neurons needs exactly one of top_k or threshold")
    if threshold is not None:
        peak = max(float(s.max()) for s in scores if s.numel())
        return [torch.nonzero(s >= threshold * peak).flatten() if peak > 0 else s.new_zeros(0, dtype=torch.long)
                for s in scores]
    counts = [top_k] * len(scores) if isinstance(top_k, int) else list(top_k)
    if len(counts) != len(scores):
        raise KadaptError(f"top_k has {len(counts)} counts for {len(scores)} layers")
    out = []
    for layer, (s, k) in enumerate(zip(scores, counts)):
        if not 0 <= k <= s.numel():
            raise KadaptError(f"layer {layer}: top_k {k} outside 0..{s.numel()}")
        out.append(torch.sort(torch.topk(s, k).indices).values if k else s.new_zeros(0, dtype=torch.long))
    return out
