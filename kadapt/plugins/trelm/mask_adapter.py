"""The TRELM mask adapter: a trainable delta on the selected FFN neurons only.

For layer ``l`` with selected intermediate neurons ``idx`` (k of them) the adapter holds
``in_weight`` (k, H), ``in_bias`` (k) and ``out_weight`` (H, k): the rows of the FFN input matrix,
the entries of its bias and the columns of the FFN output matrix that belong to those neurons. The
backbone's stored weights are never written: forward hooks add the delta to the FFN outputs,

    intermediate_pre[..., idx] += x @ in_weight.T + in_bias      (= W_in[idx] + ΔW_in, b_in[idx] + Δb)
    ffn_out += a[..., idx] @ out_weight.T                        (= W_out[:, idx] + ΔW_out)

which equals running the backbone with the scattered weights. Gradients and optimizer state exist
only for these compact tensors. ``merge`` adds the deltas to a (copy of a) model's weights and
remembers the original slices; ``unmerge`` writes those slices back, so the round trip is bit-exact.

Re-selection (dynamic routing) keeps the number of neurons per layer, so parameter shapes and the
optimizer's parameter list stay valid: a neuron that stays selected keeps its learned delta and its
optimizer moments (moved to its new slot); a newly selected neuron starts at zero with zero moments.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kadapt.core.errors import KadaptError
from kadapt.plugins.trelm.ffn import FFNBlock, ffn_blocks


class SparseFFNDelta(nn.Module):
    """Per-layer compact deltas + the neuron indices they belong to."""

    def __init__(self, hidden_size: int, intermediate_size: int, counts: Sequence[int]):
        super().__init__()
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.counts = [int(c) for c in counts]
        bad = [c for c in self.counts if not 0 <= c <= intermediate_size]
        if bad:
            raise KadaptError(f"neurons per layer {bad} outside 0..{intermediate_size}")
        self.in_weight = nn.ParameterList(nn.Parameter(torch.zeros(c, hidden_size)) for c in self.counts)
        self.in_bias = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in self.counts)
        self.out_weight = nn.ParameterList(nn.Parameter(torch.zeros(hidden_size, c)) for c in self.counts)
        for layer, count in enumerate(self.counts):
            # placeholder selection (first neurons) until attribution picks the knowledge path
            self.register_buffer(f"neurons_{layer}", torch.arange(count, dtype=torch.long))

    def neurons(self, layer: int) -> torch.Tensor:
        return getattr(self, f"neurons_{layer}")

    @property
    def num_layers(self) -> int:
        return len(self.counts)

    # ------------------------------------------------------------------ applying the delta
    @contextlib.contextmanager
    def installed(self, model: nn.Module) -> Iterator[None]:
        """Within the block, ``model``'s FFNs run with the deltas added (hooks; weights untouched)."""
        blocks = ffn_blocks(model)
        self._check_blocks(blocks)
        handles = []
        try:
            for layer, block in enumerate(blocks):
                if self.counts[layer] == 0:  # no neuron selected in this layer: nothing to add
                    continue
                handles.append(block.input_linear.register_forward_hook(self._input_hook(layer)))
                handles.append(block.output_linear.register_forward_hook(self._output_hook(layer)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _input_hook(self, layer: int):
        def hook(module, args, output):
            idx = self.neurons(layer)
            extra = F.linear(args[0], self.in_weight[layer].to(output.dtype), self.in_bias[layer].to(output.dtype))
            return torch.index_add(output, -1, idx, extra)
        return hook

    def _output_hook(self, layer: int):
        def hook(module, args, output):
            idx = self.neurons(layer)
            picked = args[0].index_select(-1, idx)
            return output + F.linear(picked, self.out_weight[layer].to(output.dtype))
        return hook

    def _check_blocks(self, blocks: list[FFNBlock]) -> None:
        if len(blocks) != self.num_layers:
            raise KadaptError(f"mask adapter has {self.num_layers} layers, the backbone {len(blocks)}")
        block = blocks[0]
        if block.input_linear.out_features != self.intermediate_size or block.input_linear.in_features != self.hidden_size:
            raise KadaptError(
                f"mask adapter built for hidden {self.hidden_size} / intermediate {self.intermediate_size}, "
                f"backbone FFN is {block.input_linear.in_features} -> {block.input_linear.out_features}"
            )

    # ------------------------------------------------------------------ merge / unmerge
    @torch.no_grad()
    def merge(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Add the deltas to ``model``'s FFN weights IN PLACE (pass a copy); returns the original slices
        that :meth:`unmerge` needs to restore the weights bit-exactly."""
        blocks = ffn_blocks(model)
        self._check_blocks(blocks)
        saved = {}
        for layer, block in enumerate(blocks):
            idx = self.neurons(layer)
            w_in, b_in, w_out = block.input_linear.weight, block.input_linear.bias, block.output_linear.weight
            saved[f"{layer}.in_weight"] = w_in[idx].clone()
            saved[f"{layer}.in_bias"] = b_in[idx].clone()
            saved[f"{layer}.out_weight"] = w_out[:, idx].clone()
            w_in[idx] = w_in[idx] + self.in_weight[layer].to(w_in.dtype)
            b_in[idx] = b_in[idx] + self.in_bias[layer].to(b_in.dtype)
            w_out[:, idx] = w_out[:, idx] + self.out_weight[layer].to(w_out.dtype)
        return saved

    @torch.no_grad()
    def unmerge(self, model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
        """Write back the slices :meth:`merge` returned: the weights are bit-identical again."""
        for layer, block in enumerate(ffn_blocks(model)):
            idx = self.neurons(layer)
            block.input_linear.weight[idx] = saved[f"{layer}.in_weight"]
            block.input_linear.bias[idx] = saved[f"{layer}.in_bias"]
            block.output_linear.weight[:, idx] = saved[f"{layer}.out_weight"]

    # ------------------------------------------------------------------ re-selection
    @torch.no_grad()
    def reselect(self, new_neurons: Sequence[torch.Tensor], optimizer_state: dict | None = None) -> dict:
        """Move to a new selection with the same count per layer; returns per-layer statistics.

        A neuron selected before and after keeps its delta values (and, when ``optimizer_state``
        — the ``torch.optim`` ``state`` dict — is given, its moment estimates); new neurons start at
        zero. Optimizer entries are remapped in place row/column-wise for every tensor of the
        parameter's shape (``exp_avg``, ``exp_avg_sq``, ...); scalar entries (``step``) are kept.
        """
        stats = {"kept": [], "new": []}
        for layer, new in enumerate(new_neurons):
            new = new.to(dtype=torch.long, device=self.neurons(layer).device)
            if new.numel() != self.counts[layer]:
                raise KadaptError(f"layer {layer}: re-selection has {new.numel()} neurons, the adapter {self.counts[layer]}")
            old = self.neurons(layer)
            position = {int(n): i for i, n in enumerate(old.tolist())}
            src = torch.tensor([position.get(int(n), -1) for n in new.tolist()], dtype=torch.long, device=old.device)
            keep = src >= 0
            stats["kept"].append(int(keep.sum()))
            stats["new"].append(int((~keep).sum()))
            for params, dim in ((self.in_weight, 0), (self.in_bias, 0), (self.out_weight, 1)):
                param = params[layer]
                tensors = [param.data]
                if optimizer_state is not None and param in optimizer_state:
                    tensors += [v for v in optimizer_state[param].values()
                                if torch.is_tensor(v) and v.shape == param.shape]
                for tensor in tensors:
                    tensor.copy_(_gather_keep(tensor, src, keep, dim))
            old.copy_(new)
        return stats


def _gather_keep(tensor: torch.Tensor, src: torch.Tensor, keep: torch.Tensor, dim: int) -> torch.Tensor:
    picked = tensor.index_select(dim, src.clamp_min(0))
    shape = [1] * tensor.ndim
    shape[dim] = -1
    return picked * keep.view(shape).to(tensor.dtype)
