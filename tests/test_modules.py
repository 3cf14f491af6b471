"""Elastic primitives: the active slice equals a plain module built by `to_static()` and the manual slice; the full
size equals the vanilla module; gradients reach only the active slice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import ViTConfig
from transformers.models.bert.modeling_bert import BertSelfAttention
from transformers.models.vit.modeling_vit import ViTAttention

from hf_nas.modules import (
    ELASTIC_PRIMITIVES,
    ElasticConv2d,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticPrimitive,
    ElasticSelfAttention,
    SelfAttention,
)
from hf_nas.modules.attention import VISION_PROJECTION_NAMES, head_permutation_index

from .conftest import ATTN_IMPLEMENTATIONS, randomize_parameters, tiny_bert_config


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


def additive_mask(batch_size: int, seq_len: int) -> torch.Tensor:
    """A (B, 1, T, T) additive mask whose later rows ignore their last keys (padding)."""
    mask = torch.zeros(batch_size, 1, seq_len, seq_len)
    for row in range(1, batch_size):
        mask[row, :, :, seq_len - row :] = torch.finfo(torch.float32).min
    return mask


# ------------------------------------------------------------------------------------------------------------------
# ElasticLinear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("in_features", "out_features"), [(7, 5), (12, 3), (4, 10), (12, 10)])
def test_linear_active_slice(bias, in_features, out_features):
    torch.manual_seed(0)
    layer = randomize_parameters(ElasticLinear(12, 10, bias=bias))
    layer.set_active(in_features=in_features, out_features=out_features)
    assert (layer.active_in_features, layer.active_out_features) == (in_features, out_features)
    x = torch.randn(3, 2, in_features)  # (B, T, in)
    y = layer(x)  # (B, T, out)
    assert y.shape == (3, 2, out_features)

    expected = F.linear(x, layer.weight[:out_features, :in_features], layer.bias[:out_features] if bias else None)
    close(y, expected)

    static = layer.to_static()
    assert type(static) is nn.Linear
    assert (static.in_features, static.out_features) == (in_features, out_features)
    assert (static.bias is not None) == bias
    close(static(x), y)
    assert static.weight.data_ptr() != layer.weight.data_ptr(), "to_static copies"
    assert layer.active_num_parameters() == sum(p.numel() for p in static.parameters())


def test_linear_full_size_is_nn_linear():
    torch.manual_seed(0)
    layer = randomize_parameters(ElasticLinear(12, 10))
    x = torch.randn(3, 12)
    layer.set_active(in_features=5, out_features=4)
    layer.reset_active()
    assert torch.equal(layer(x), nn.Linear.forward(layer, x))
    layer.set_active(in_features=12, out_features=10)
    assert torch.equal(layer(x), nn.Linear.forward(layer, x))
    static = layer.to_static()
    assert torch.equal(static.weight, layer.weight) and torch.equal(static.bias, layer.bias)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"in_features": 13}, ValueError, r"`in_features`=13 is out of range; allowed: 1 to 12"),
        ({"in_features": 0}, ValueError, r"`in_features`=0 is out of range; allowed: 1 to 12"),
        ({"out_features": 11}, ValueError, r"`out_features`=11 is out of range; allowed: 1 to 10"),
        ({"out_features": 2.0}, TypeError, r"`out_features` must be an int, got 2\.0"),
        ({"in_features": True}, TypeError, r"`in_features` must be an int, got True"),
    ],
)
def test_linear_set_active_out_of_range(kwargs, error, pattern):
    layer = ElasticLinear(12, 10)
    layer.set_active(in_features=6, out_features=5)
    with pytest.raises(error, match=pattern):
        layer.set_active(**kwargs)
    assert (layer.active_in_features, layer.active_out_features) == (6, 5), "a failed set_active changes nothing"


def test_linear_gradients_reach_only_the_active_slice():
    torch.manual_seed(0)
    layer = randomize_parameters(ElasticLinear(12, 10))
    layer.set_active(in_features=7, out_features=4)
    layer(torch.randn(5, 7)).pow(2).sum().backward()
    grad = layer.weight.grad
    assert grad[:4, :7].abs().min() > 0
    assert not grad[4:].any() and not grad[:, 7:].any()
    assert layer.bias.grad[:4].abs().min() > 0 and not layer.bias.grad[4:].any()


def test_linear_permutations():
    torch.manual_seed(0)
    layer = randomize_parameters(ElasticLinear(6, 4))
    x = torch.randn(3, 6)
    y = layer(x)
    out_order, in_order = torch.tensor([2, 0, 3, 1]), torch.randperm(6)
    layer.permute_out_features(out_order)
    close(layer(x), y[:, out_order])
    layer.permute_in_features(in_order)
    close(layer(x[:, in_order]), y[:, out_order])


# ------------------------------------------------------------------------------------------------------------------
# ElasticLayerNorm
@pytest.mark.parametrize("active", [1, 6, 10])
def test_layernorm_active_slice(active):
    torch.manual_seed(0)
    norm = randomize_parameters(ElasticLayerNorm(10, eps=1e-12))
    norm.set_active(active)
    x = torch.randn(3, 2, active) * 3 + 1
    y = norm(x)
    close(y, F.layer_norm(x, (active,), norm.weight[:active], norm.bias[:active], 1e-12))
    static = norm.to_static()
    assert type(static) is nn.LayerNorm
    assert static.normalized_shape == (active,) and static.eps == 1e-12
    close(static(x), y)
    assert norm.active_num_parameters() == sum(p.numel() for p in static.parameters())


def test_layernorm_full_size_is_nn_layernorm():
    torch.manual_seed(0)
    norm = randomize_parameters(ElasticLayerNorm(10))
    x = torch.randn(4, 10)
    norm.set_active(3)
    norm.reset_active()
    assert torch.equal(norm(x), nn.LayerNorm.forward(norm, x))


def test_layernorm_set_active_out_of_range_and_shapes():
    norm = ElasticLayerNorm(10)
    with pytest.raises(ValueError, match=r"`features`=11 is out of range; allowed: 1 to 10"):
        norm.set_active(11)
    with pytest.raises(ValueError, match=r"`features`=0 is out of range"):
        norm.set_active(0)
    assert norm.active_features == 10
    with pytest.raises(ValueError, match=r"1-D normalized_shape"):
        ElasticLayerNorm((4, 5))


def test_layernorm_gradients_reach_only_the_active_slice():
    torch.manual_seed(0)
    norm = randomize_parameters(ElasticLayerNorm(10))
    norm.set_active(6)
    (norm(torch.randn(5, 6)) * torch.randn(6)).sum().backward()
    assert norm.weight.grad[:6].abs().min() > 0 and not norm.weight.grad[6:].any()
    assert norm.bias.grad[:6].abs().min() > 0 and not norm.bias.grad[6:].any()


# ------------------------------------------------------------------------------------------------------------------
# ElasticEmbedding
@pytest.mark.parametrize("active", [1, 4, 10])
def test_embedding_active_slice(active):
    torch.manual_seed(0)
    emb = ElasticEmbedding(20, 10, padding_idx=0)
    emb.set_active(active)
    ids = torch.tensor([[0, 3, 19], [5, 5, 1]])
    y = emb(ids)
    assert y.shape == (2, 3, active)
    close(y, emb.weight[ids][..., :active])
    static = emb.to_static()
    assert type(static) is nn.Embedding
    assert (static.num_embeddings, static.embedding_dim, static.padding_idx) == (20, active, 0)
    close(static(ids), y)
    assert emb.active_num_parameters() == static.weight.numel()


def test_embedding_full_size_is_nn_embedding():
    torch.manual_seed(0)
    emb = ElasticEmbedding(20, 10)
    ids = torch.randint(0, 20, (3, 4))
    emb.set_active(2)
    emb.reset_active()
    assert torch.equal(emb(ids), nn.Embedding.forward(emb, ids))


def test_embedding_set_active_out_of_range():
    emb = ElasticEmbedding(20, 10)
    with pytest.raises(ValueError, match=r"`embedding_dim`=11 is out of range; allowed: 1 to 10"):
        emb.set_active(11)
    with pytest.raises(TypeError, match=r"`embedding_dim` must be an int"):
        emb.set_active(None)
    assert emb.active_embedding_dim == 10


def test_embedding_gradients_reach_only_the_active_slice():
    torch.manual_seed(0)
    emb = ElasticEmbedding(20, 10, padding_idx=0)
    emb.set_active(4)
    emb(torch.tensor([[0, 3, 7]])).pow(2).sum().backward()
    grad = emb.weight.grad
    assert grad[[3, 7], :4].abs().min() > 0
    assert not grad[:, 4:].any()
    assert not grad[0].any(), "the padding row gets no gradient"


# ------------------------------------------------------------------------------------------------------------------
# ElasticSelfAttention
def make_attention(attn_implementation: str, bias: bool = True) -> ElasticSelfAttention:
    config = tiny_bert_config()
    config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    attn = ElasticSelfAttention(config, hidden_size=32, num_attention_heads=4, attention_head_size=8, bias=bias)
    return randomize_parameters(attn).eval()


def manual_attention(attn: ElasticSelfAttention, x: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax attention over the first `heads` heads and the first `x.shape[-1]` input channels, written out."""
    B, T, h = x.shape
    hs = attn.attention_head_size
    n = heads * hs

    def project(linear):
        bias = linear.bias[:n] if linear.bias is not None else None
        return F.linear(x, linear.weight[:n, :h], bias).view(B, T, heads, hs).transpose(1, 2)  # (B, nh, T, hs)

    q, k, v = (project(linear) for linear in attn.qkv_projections())
    probs = torch.softmax(q @ k.transpose(-1, -2) / hs**0.5 + mask, dim=-1)  # (B, nh, T, T)
    return (probs @ v).transpose(1, 2).reshape(B, T, n)  # (B, T, nh * hs)


@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
@pytest.mark.parametrize(("hidden_size", "heads"), [(32, 4), (16, 2), (16, 3), (32, 1), (8, 4)])
def test_attention_active_slice(attn_implementation, hidden_size, heads):
    attn = make_attention(attn_implementation)
    attn.set_active(hidden_size=hidden_size, num_attention_heads=heads)
    assert attn.active_num_attention_heads == heads
    x = torch.randn(3, 6, hidden_size)  # (B, T, h)
    mask = additive_mask(3, 6)
    out, weights = attn(x, attention_mask=mask)
    assert out.shape == (3, 6, heads * 8)
    close(out, manual_attention(attn, x, mask, heads), atol=1e-5)

    static = attn.to_static()
    assert type(static) is SelfAttention
    assert all(type(p) is nn.Linear for p in (static.query, static.key, static.value))
    assert static.num_attention_heads == heads and static.query.in_features == hidden_size
    assert not static.training
    static_out, static_weights = static(x, attention_mask=mask)
    close(static_out, out, atol=1e-6)
    if attn_implementation == "eager":
        assert weights.shape == (3, heads, 6, 6)
        close(static_weights, weights)
        assert not weights[1, :, :, -1].any(), "padded keys get no attention"


@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
def test_attention_full_size_equals_bert_self_attention(attn_implementation):
    attn = make_attention(attn_implementation)
    config = tiny_bert_config()
    config._attn_implementation = attn_implementation
    vanilla = BertSelfAttention(config).eval()
    vanilla.load_state_dict(attn.state_dict(), strict=True)
    x = torch.randn(3, 6, 32)
    mask = additive_mask(3, 6)
    attn.set_active(hidden_size=16, num_attention_heads=1)
    attn.reset_active()
    close(attn(x, attention_mask=mask)[0], vanilla(x, attention_mask=mask)[0], atol=1e-6)


def test_attention_set_active_out_of_range():
    attn = make_attention("eager")
    attn.set_active(hidden_size=16, num_attention_heads=2)
    with pytest.raises(ValueError, match=r"`num_attention_heads`=5 is out of range; allowed: 1 to 4"):
        attn.set_active(num_attention_heads=5)
    with pytest.raises(ValueError, match=r"`hidden_size`=40 is out of range; allowed: 1 to 32"):
        attn.set_active(hidden_size=40)
    assert attn.active_num_attention_heads == 2 and attn.query.active_in_features == 16


def test_attention_gradients_reach_only_the_active_heads():
    attn = make_attention("eager").train()
    attn.set_active(hidden_size=16, num_attention_heads=2)
    out, _ = attn(torch.randn(2, 5, 16))
    (out * torch.randn_like(out)).sum().backward()
    for proj in (attn.query, attn.key, attn.value):
        assert proj.weight.grad[:16, :16].abs().sum(dim=1).min() > 0, "every active row gets a gradient"
        assert not proj.weight.grad[16:].any() and not proj.weight.grad[:, 16:].any()
        assert not proj.bias.grad[16:].any()


def test_attention_permute_heads_permutes_the_output():
    attn = make_attention("eager")
    x = torch.randn(2, 5, 32)
    out, weights = attn(x)
    order = torch.tensor([2, 0, 3, 1])
    attn.permute_heads(order)
    permuted_out, permuted_weights = attn(x)
    close(permuted_out, out[..., head_permutation_index(order, 8)])
    close(permuted_weights, weights[:, order])


def make_vision_attention(attn_implementation: str = "eager", key_bias: bool = True) -> ElasticSelfAttention:
    """ViT-named attention (`q_proj`, `k_proj`, `v_proj`, output projection `o_proj`)."""
    config = ViTConfig(hidden_size=32, num_attention_heads=4, attention_probs_dropout_prob=0.0, qkv_bias=key_bias)
    config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    attn = ElasticSelfAttention(
        config,
        32,
        4,
        8,
        key_bias=key_bias,
        projection_names=VISION_PROJECTION_NAMES,
        output_projection="o_proj",
    )
    return randomize_parameters(attn).eval()


@pytest.mark.parametrize("attn_implementation", ATTN_IMPLEMENTATIONS)
def test_vision_named_attention_full_size_equals_vit_attention(attn_implementation):
    attn = make_vision_attention(attn_implementation)
    assert [name for name, _ in attn.named_parameters()] == [
        f"{proj}.{kind}" for proj in ("q_proj", "k_proj", "v_proj", "o_proj") for kind in ("weight", "bias")
    ]
    vanilla = ViTAttention(attn.config).eval()
    vanilla.load_state_dict(attn.state_dict(), strict=True)
    x = torch.randn(3, 6, 32)
    mask = additive_mask(3, 6)
    close(attn(x, attention_mask=mask)[0], vanilla(x, attention_mask=mask)[0], atol=1e-6)


@pytest.mark.parametrize("key_bias", [True, False])
@pytest.mark.parametrize(("hidden_size", "heads"), [(32, 4), (16, 3), (8, 4)])
def test_vision_named_attention_active_slice_and_to_static(key_bias, hidden_size, heads):
    attn = make_vision_attention(key_bias=key_bias)
    attn.set_active(hidden_size, heads)
    assert attn.active_sizes() == {"hidden_size": hidden_size, "num_attention_heads": heads}
    assert attn.o_proj.active_in_features == heads * 8 and attn.o_proj.active_out_features == hidden_size
    x = torch.randn(3, 6, hidden_size)  # (B, T, h)
    mask = additive_mask(3, 6)
    out, _ = attn(x, attention_mask=mask)
    assert out.shape == (3, 6, hidden_size)
    merged = manual_attention(attn, x, mask, heads)  # (B, T, nh * hs)
    close(out, F.linear(merged, attn.o_proj.weight[:hidden_size, : heads * 8], attn.o_proj.bias[:hidden_size]), 1e-5)

    static = attn.to_static()
    assert [name for name, _ in static.named_children()] == ["q_proj", "k_proj", "v_proj", "o_proj", "dropout"]
    assert (static.k_proj.bias is not None) == key_bias
    assert static.o_proj.in_features == heads * 8 and static.o_proj.out_features == hidden_size
    close(static(x, attention_mask=mask)[0], out)
    assert attn.active_num_parameters() == sum(p.numel() for p in static.parameters())


def test_vision_named_attention_permute_heads_keeps_the_output():
    attn = make_vision_attention()
    x = torch.randn(2, 5, 32)
    out, weights = attn(x)
    order = torch.tensor([2, 0, 3, 1])
    attn.permute_heads(order)
    permuted_out, permuted_weights = attn(x)
    close(permuted_out, out, atol=1e-6)
    close(permuted_weights, weights[:, order])


# ------------------------------------------------------------------------------------------------------------------
# The primitive protocol
PRIMITIVES = {
    "linear": lambda: ElasticLinear(12, 10),
    "linear-no-bias": lambda: ElasticLinear(12, 10, bias=False),
    "layernorm": lambda: ElasticLayerNorm(10),
    "embedding": lambda: ElasticEmbedding(20, 10),
    "conv2d": lambda: ElasticConv2d(3, 8, kernel_size=4, stride=4),
    "attention": lambda: make_attention("eager"),
    "attention-no-bias": lambda: make_attention("eager", bias=False),
    "vision-attention": lambda: make_vision_attention(key_bias=False),
}


def test_every_primitive_follows_the_protocol():
    for cls in (*ELASTIC_PRIMITIVES, ElasticSelfAttention):
        assert issubclass(cls, ElasticPrimitive) and issubclass(cls, nn.Module), cls
        assert not cls.__abstractmethods__, cls
        assert cls.elastic_dims, cls
    covered = {type(factory()) for factory in PRIMITIVES.values()}
    assert covered == {*ELASTIC_PRIMITIVES, ElasticSelfAttention}


@pytest.mark.parametrize("name", list(PRIMITIVES))
def test_primitive_protocol(name):
    module = PRIMITIVES[name]()
    full = module.max_sizes()
    assert set(full) == set(module.elastic_dims) and module.active_sizes() == full
    for dim in module.elastic_dims:
        module.set_active(**{dim: 1})
        assert module.active_sizes() == {**full, dim: 1}, dim
        with pytest.raises(ValueError, match=rf"`{dim}`={full[dim] + 1} is out of range; allowed: 1 to {full[dim]}"):
            module.set_active(**{dim: full[dim] + 1})
        assert module.active_sizes() == {**full, dim: 1}, "a failed set_active changes nothing"
        assert module.active_num_parameters() == sum(p.numel() for p in module.to_static().parameters()), dim
        module.reset_active()
        assert module.active_sizes() == full
    static = module.to_static()
    assert not any(isinstance(m, ElasticPrimitive) for m in static.modules())
    assert module.active_num_parameters() == sum(p.numel() for p in module.parameters())
