"""JAKET's knowledge module: a graph attention network with relation composition (eq. 1-5).

One layer, for every entity v with sampled neighbours (r, u):

    M_{u,r} = E_u + R_r                                   (eq. 1, f(x, y) = x + y as in TransE)
    S_{u,r} = a_k^T [W_k E_v ; W_k M_{u,r}]               (eq. 3)
    alpha   = softmax over v's neighbours of LeakyReLU(S)  (eq. 4)
    m_v^k   = sigma(sum alpha W_k M_{u,r})                (eq. 2, sigma = ELU as in GAT)
    E_v'    = LayerNorm(concat_k m_v^k + E_v)             (eq. 5)

W_k maps H to H/K so the K heads concatenate back to H. Relation embeddings R are shared across
layers. Because W_k is linear, W_k M_{u,r} = W_k E_u + W_k R_r: both halves are projected once
per node / relation, not once per edge. Built on PyG ``MessagePassing`` with ``utils.softmax``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from kadapt.core.errors import PluginFormatError


class CompositionGATLayer(MessagePassing):
    """One GAT layer with (entity + relation) composed messages; returns LayerNorm(heads + input)."""

    def __init__(self, hidden: int, heads: int, *, negative_slope: float = 0.2, dropout: float = 0.1,
                 eps: float = 1e-5):
        super().__init__(aggr="add", node_dim=0)
        if hidden % heads:
            raise PluginFormatError(f"GAT hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.head_size = heads, hidden // heads
        self.weight = nn.Linear(hidden, hidden, bias=False)  # the K matrices W_k stacked
        self.att_target = nn.Parameter(torch.empty(heads, self.head_size))  # first half of a (W E_v)
        self.att_message = nn.Parameter(torch.empty(heads, self.head_size))  # second half of a (W M_{u,r})
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.negative_slope, self.dropout = negative_slope, dropout
        self.last_attention: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight.weight)
        nn.init.xavier_uniform_(self.att_target)
        nn.init.xavier_uniform_(self.att_message)
        self.norm.reset_parameters()

    def forward(self, x: torch.Tensor, relations: torch.Tensor, edge_index: torch.Tensor,
                edge_type: torch.Tensor) -> torch.Tensor:
        k, d = self.heads, self.head_size
        wx = self.weight(x).view(-1, k, d)
        wr = self.weight(relations).view(-1, k, d)
        target_score = (wx * self.att_target).sum(-1)  # (N, K)
        out = self.propagate(edge_index, wx=wx, target_score=target_score, wr=wr[edge_type], size=(x.shape[0], x.shape[0]))
        return self.norm(F.elu(out).reshape(x.shape[0], k * d) + x)

    def message(self, wx_j: torch.Tensor, wr: torch.Tensor, target_score_i: torch.Tensor, index: torch.Tensor,
                ptr: torch.Tensor | None, size_i: int | None) -> torch.Tensor:
        composed = wx_j + wr  # W_k M_{u,r} = W_k E_u + W_k R_r  (E, K, d)
        score = F.leaky_relu(target_score_i + (composed * self.att_message).sum(-1), self.negative_slope)
        alpha = softmax(score, index, ptr, size_i)  # normalised over each target's sampled neighbours
        self.last_attention = alpha.detach()
        alpha = F.dropout(alpha, self.dropout, self.training)
        return composed * alpha.unsqueeze(-1)


class CompositionGAT(nn.Module):
    """``num_layers`` composition-GAT layers over a sampled subgraph (relation embeddings shared)."""

    def __init__(self, hidden: int, num_layers: int = 2, heads: int = 8, *, negative_slope: float = 0.2,
                 dropout: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.layers = nn.ModuleList(
            CompositionGATLayer(hidden, heads, negative_slope=negative_slope, dropout=dropout, eps=eps)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, relations: torch.Tensor, edge_index: torch.Tensor,
                edge_type: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, relations, edge_index, edge_type)
        return x
