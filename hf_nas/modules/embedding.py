"""Elastic embedding: looks up the first `active_embedding_dim` channels of each vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["ElasticEmbedding"]


class ElasticEmbedding(ElasticPrimitive, nn.Embedding):
    """`nn.Embedding` whose active embedding width is a prefix of the full width (the vocabulary is never cut)."""

    elastic_dims = ("embedding_dim",)

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, **kwargs):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx, **kwargs)
        self.active_embedding_dim = embedding_dim

    @property
    def max_embedding_dim(self) -> int:
        return self.embedding_dim

    def set_active(self, embedding_dim: int) -> None:
        self.active_embedding_dim = check_size("embedding_dim", embedding_dim, self.embedding_dim)

    def reset_active(self) -> None:
        self.active_embedding_dim = self.embedding_dim

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.active_embedding_dim != self.embedding_dim:
            weight = weight[:, : self.active_embedding_dim]  # (V, d) strided view: the gather reads only d columns
        return F.embedding(
            input_ids, weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse
        )

    def active_num_parameters(self) -> int:
        return self.num_embeddings * self.active_embedding_dim

    @torch.no_grad()
    def to_static(self) -> nn.Embedding:
        static = nn.Embedding(
            self.num_embeddings,
            self.active_embedding_dim,
            padding_idx=self.padding_idx,
            max_norm=self.max_norm,
            norm_type=self.norm_type,
            scale_grad_by_freq=self.scale_grad_by_freq,
            sparse=self.sparse,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        static.weight.copy_(self.weight[:, : self.active_embedding_dim])
        return static

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, active_embedding_dim={self.active_embedding_dim}"
