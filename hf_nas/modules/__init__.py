"""Elastic building blocks.

- Primitives ([`ElasticPrimitive`]): each is-a torch module with the vanilla parameter names, computes with the active
  slice of its weights, and copies that slice into a plain module with `to_static()`. `ELASTIC_PRIMITIVES` lists
  those that own their parameters (what extraction copies); [`ElasticSelfAttention`] is built from them.
- Layers ([`ElasticLayer`]): the protocol every family's transformer layer implements.
"""

from .attention import ElasticSelfAttention, SelfAttention
from .conv import ElasticConv2d
from .embedding import ElasticEmbedding
from .layer import ElasticLayer
from .layernorm import ElasticLayerNorm, SwitchableElasticLayerNorm
from .linear import BudgetElasticLinear, ElasticLinear, SwitchableElasticLinear
from .primitive import ElasticPrimitive

ELASTIC_PRIMITIVES = (ElasticConv2d, ElasticEmbedding, ElasticLayerNorm, ElasticLinear)

__all__ = [
    "ELASTIC_PRIMITIVES",
    "BudgetElasticLinear",
    "ElasticConv2d",
    "ElasticEmbedding",
    "ElasticLayer",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticPrimitive",
    "ElasticSelfAttention",
    "SelfAttention",
    "SwitchableElasticLayerNorm",
    "SwitchableElasticLinear",
]
