"""A fresh Adam start for each newly selected knowledge-path neuron.

``torch.optim.Adam``/``AdamW`` keep ONE step count ``t`` per parameter tensor, but after a re-selection
the rows (columns) of a delta tensor belong to neurons of different ages: a neuron selected ``a``
updates ago should see the bias corrections ``1-β^a`` of a fresh start, not ``1-β^t``. With zeroed
moments and the tensor's shared ``t``, its first update is ``(1-β1)/sqrt(1-β2) ≈ 3.16×`` a fresh
start's (β = 0.9, 0.999). :class:`FreshNeuronAdam` fixes that exactly: just before each optimizer
step (a step pre-hook, gradients known) it rewrites the stored moments of the young rows so that the
optimizer's own update equals a per-neuron fresh-start Adam:

    m_f = m·(1-β1^a)/(1-β1^t)            (the row's moment on its own clock; 0 when a = 0)
    m_f' = β1·m_f + (1-β1)·g              (what a fresh Adam would hold after this step)
    stored m ← (m_f'·(1-β1^(t+1))/(1-β1^(a+1)) - (1-β1)·g) / β1

(and the same for ``v`` with β2 and g²), so that after the optimizer's ``m ← β1·m + (1-β1)·g`` its
bias-corrected moment ``m/(1-β1^(t+1))`` is the fresh one ``m_f'/(1-β1^(a+1))``. A step post-hook
ages every neuron by one. Rows with ``a = t`` (selected since the tensor's first step) are left alone.
Decoupled weight decay (AdamW) does not touch the moments and is unaffected; AMSGrad and other
optimizers are not corrected (a warning says so once).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class FreshNeuronAdam:
    """Per-neuron ages of a :class:`SparseFFNDelta` and the optimizer hooks that use them."""

    def __init__(self, delta):
        self.delta = delta
        self.ages = [torch.zeros(c, dtype=torch.long) for c in delta.counts]
        self._hooked = None
        self._handles = []
        self._warned = False

    def remap(self, layer: int, old: torch.Tensor, new: torch.Tensor) -> None:
        """After a re-selection of ``layer``: kept neurons carry their age to their new slot, new ones are 0."""
        position = {int(n): i for i, n in enumerate(old.tolist())}
        ages = self.ages[layer]
        self.ages[layer] = torch.tensor([int(ages[position[n]]) if n in position else 0 for n in new.tolist()],
                                        dtype=torch.long)

    def attach(self, optimizer) -> None:
        """Hook ``optimizer`` (the torch optimizer itself, not a wrapper) once."""
        if optimizer is self._hooked:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]
        self._hooked = optimizer

    def _params(self):
        for layer in range(self.delta.num_layers):
            for param, dim in ((self.delta.in_weight[layer], 0), (self.delta.in_bias[layer], 0),
                               (self.delta.out_weight[layer], 1)):
                yield layer, param, dim

    def _pre(self, optimizer, args, kwargs) -> None:
        groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        for layer, param, dim in self._params():
            group, state = groups.get(id(param)), optimizer.state.get(param)
            if group is None or not state or param.grad is None or param.numel() == 0:
                continue  # not trained by this optimizer, or its first step (every row starts fresh anyway)
            if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) or group.get("amsgrad"):
                if not self._warned:
                    log.warning("TRELM: optimizer %s is not plain Adam/AdamW: new neurons keep the tensor's "
                                "step count (no per-neuron fresh start)", type(optimizer).__name__)
                    self._warned = True
                return
            _rewrite_moments(state, param.grad, self.ages[layer], dim, group["betas"])

    def _post(self, optimizer, args, kwargs) -> None:
        for layer in range(len(self.ages)):
            self.ages[layer] += 1

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"neuron_age.{layer}": ages.clone() for layer, ages in enumerate(self.ages)}

    def load_tensors(self, tensors: dict) -> None:
        for layer in range(len(self.ages)):
            key = f"neuron_age.{layer}"
            if key in tensors:
                self.ages[layer] = tensors[key].long().clone()


@torch.no_grad()
def _rewrite_moments(state: dict, grad: torch.Tensor, ages: torch.Tensor, dim: int, betas) -> None:
    t = float(state["step"])
    shape = [1] * grad.ndim
    shape[dim] = -1
    a = ages.to(torch.float64).view(shape)
    young = a < t
    if not bool(young.any()):
        return
    g = grad.to(torch.float64)
    for key, beta, gg in (("exp_avg", betas[0], g), ("exp_avg_sq", betas[1], g * g)):
        stored = state[key]
        own = torch.where(a > 0, stored.to(torch.float64) * (1 - beta ** a) / (1 - beta ** t), 0.0)
        fresh_next = beta * own + (1 - beta) * gg
        target = fresh_next * (1 - beta ** (t + 1)) / (1 - beta ** (a + 1))
        rewritten = (target - (1 - beta) * gg) / beta
        stored.copy_(torch.where(young, rewritten, stored.to(torch.float64)).to(stored.dtype))
