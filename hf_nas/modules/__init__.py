"""Elastic primitives: each is-a torch module with the vanilla parameter names, computes with the active slice of
its weights, and copies that slice into a plain module with `to_static()`."""

from .attention import ElasticSelfAttention, SelfAttention
from .conv import ElasticConv2d
from .embedding import ElasticEmbedding
from .layernorm import ElasticLayerNorm
from .linear import ElasticLinear

ELASTIC_PRIMITIVES = (ElasticConv2d, ElasticEmbedding, ElasticLayerNorm, ElasticLinear)

__all__ = [
    "ELASTIC_PRIMITIVES",
    "ElasticConv2d",
    "ElasticEmbedding",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticSelfAttention",
    "SelfAttention",
]
