"""The predictors' held-out split shares no subnet with their fitting part, by construction; their default features
say what the supernet varies (per supernet layer: kept or not, heads, FFN width)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from hf_nas import SearchSpace
from hf_nas.search.predictors import (
    ENCODINGS,
    Predictor,
    encode,
    encode_layers,
    held_out_split,
    layer_encoding_size,
)

SPACE = SearchSpace(
    num_hidden_layers=(2, 3, 4),
    num_attention_heads=(1, 2, 3, 4),
    intermediate_size=(32, 64, 96, 128),
    hidden_size=(32, 48, 64),
    attention_head_size=16,
    layer_rule="spread",
    num_supernet_layers=6,
)


@pytest.mark.parametrize("seed", range(5))
def test_held_out_split_is_disjoint_by_construction(seed):
    rng = random.Random(seed)
    distinct = list(dict.fromkeys(SPACE.sample(generator=rng) for _ in range(40)))
    # the way the old benchmark leaked: two searches from one seeded start measure the same subnets first
    subnets = distinct[:20] + distinct + [distinct[3]] * 5
    fit, held_out = held_out_split(subnets, test_fraction=0.25, seed=seed)
    assert sorted(fit + held_out) == list(range(len(subnets)))  # every measurement on exactly one side
    assert not {subnets[i] for i in fit} & {subnets[i] for i in held_out}  # no subnet on both sides
    assert len({subnets[i] for i in held_out}) == 10  # a quarter of the 40 distinct subnets
    assert held_out_split(subnets, test_fraction=0.25, seed=seed) == (fit, held_out)  # seeded
    assert fit == sorted(fit) and held_out == sorted(held_out)


def test_held_out_split_checks():
    subnets = [SPACE.sample(seed=i) for i in range(5)]
    with pytest.raises(ValueError, match="test_fraction"):
        held_out_split(subnets, test_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        held_out_split([subnets[0]] * 4)
    with pytest.raises(TypeError, match=r"subnets\[1\]"):
        held_out_split([subnets[0], "x"])


def test_layer_features_follow_the_supernet_layers():
    assert layer_encoding_size(SPACE) == 4 + 3 * 6
    shallow = SPACE.subnet(3, (4, 2, 1), (128, 64, 32), 64)  # spread: layers (1, 3, 5)
    x = encode_layers(shallow, SPACE)
    kept, heads, ffn = x[2:8], x[8:14], x[14:20]
    assert kept.tolist() == [0, 1, 0, 1, 0, 1]
    assert heads.tolist() == [0, 1.0, 0, 0.5, 0, 0.25]
    assert ffn.tolist() == [0, 1.0, 0, 0.5, 0, 0.25]
    assert x[:2].tolist() == [0.75, 1.0] and x[-2:].tolist() == pytest.approx([7 / 16, 224 / 512])
    # the positional encoding cannot tell which supernet layers are kept; the layer encoding can
    deep = SPACE.subnet(4, (4, 2, 1, 1), (128, 64, 32, 32), 64)  # layers (0, 2, 3, 5)
    assert encode(shallow, SPACE)[2:5].tolist() == encode(deep, SPACE)[2:5].tolist()
    assert encode_layers(deep, SPACE)[2:8].tolist() == [1, 0, 1, 1, 0, 1]
    with pytest.raises(ValueError, match="`layers`"):
        encode_layers(dataclasses.replace(shallow, layers=(0, 1, 2)), SPACE)


def test_predictors_fit_on_layer_features_by_default():
    subnets = [SPACE.sample(seed=s) for s in range(80)]

    def accuracy(subnet):  # the last supernet layer's width matters most, as in a mean-pooled checkpoint
        return 0.5 + 0.4 * subnet.num_attention_heads[-1] / 4 + 0.05 * (5 in subnet.layers)

    values = [accuracy(s) for s in subnets]
    predictor = Predictor(SPACE, model="ridge")
    assert predictor.encoding == "layers" and set(ENCODINGS) == {"layers", "positions"}
    predictor.fit(subnets[:60], values[:60])
    assert predictor.score(subnets[60:], values[60:])["kendall_tau"] > 0.8
    positional = Predictor(SPACE, model="ridge", encoding="positions").fit(subnets[:60], values[:60])
    assert positional.predict(subnets[:2]).shape == (2,)
    with pytest.raises(ValueError, match="Unknown `encoding`"):
        Predictor(SPACE, encoding="onehot")
    assert np.isfinite(predictor.predict(subnets[60:])).all()
