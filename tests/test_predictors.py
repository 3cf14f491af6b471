"""Predictors: the subnet encoding, held-out accuracy on a smooth synthetic objective, and argument checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hf_nas import SearchSpace, SubnetConfig
from hf_nas.search.predictors import PREDICTOR_MODELS, Predictor, encode, encoding_size, register_predictor_model


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace(
        num_hidden_layers=(2, 3, 4),
        num_attention_heads=(1, 2, 3, 4),
        intermediate_size=(32, 64, 96, 128),
        hidden_size=(32, 48, 64),
        attention_head_size=16,
        layer_rule="first",
    )


def smooth(subnet: SubnetConfig, space: SearchSpace) -> float:
    """An accuracy-like objective: saturating in the total width and depth, with a little per-layer structure."""
    x = encode(subnet, space)
    depth, hidden, totals = x[0], x[1], x[-2:]
    return float(0.9 - 0.3 * np.exp(-2.0 * (totals.sum() + 0.5 * hidden)) + 0.05 * depth + 0.02 * x[2])


def test_encode(space):
    assert encoding_size(space) == 4 + 2 * 4
    largest = encode(space.largest(), space)
    assert largest.shape == (12,) and np.all(largest == 1.0)
    subnet = SubnetConfig(num_hidden_layers=2, num_attention_heads=(4, 1), intermediate_size=(32, 128), hidden_size=32)
    features = encode(subnet, space)
    assert features.tolist() == pytest.approx([0.5, 0.5, 1.0, 0.25, 0.0, 0.0, 0.25, 1.0, 0.0, 0.0, 5 / 16, 160 / 512])
    for seed in range(20):
        x = encode(space.sample(seed=seed), space)
        assert x.shape == (12,) and np.all((x >= 0) & (x <= 1))
    with pytest.raises(ValueError, match="hidden_size"):
        encode(SubnetConfig.uniform(2, 2, 32, 16), space)


@pytest.mark.parametrize(
    "rule", [dict(layer_rule="spread", num_supernet_layers=6), dict(layer_rule="importance", layer_order=(3, 0, 2, 1))]
)
def test_encode_under_other_layer_rules(space, rule):
    """The space holds one layer subset per depth, so the features (depth, per-position sizes) need no layer indices:
    a subnet encodes as under `"first"`, and one with layers outside the space is refused."""
    subset_space = dataclasses.replace(space, **rule)
    for seed in range(10):
        subnet = subset_space.sample(seed=seed)
        first = dataclasses.replace(subnet, layers=None)  # the same sizes on the first layers
        np.testing.assert_array_equal(encode(subnet, subset_space), encode(first, space))
    with pytest.raises(ValueError, match="`layers`"):
        encode(SubnetConfig.uniform(2, 2, 32, 32), subset_space)


@pytest.mark.parametrize("model, min_tau", [("gbrt", 0.8), ("rf", 0.8), ("ridge", 0.8)])
def test_held_out_ranking_and_error(space, model, min_tau):
    subnets = [space.sample(seed=seed) for seed in range(200)]
    values = [smooth(s, space) for s in subnets]
    predictor = Predictor(space, model=model, seed=0).fit(subnets[:150], values[:150])
    scores = predictor.score(subnets[150:], values[150:])
    spread = max(values) - min(values)
    assert scores["kendall_tau"] > min_tau, scores
    assert scores["mae"] < 0.05 * spread, (scores, spread)
    assert predictor.predict(subnets[150:152]).shape == (2,)
    assert predictor.num_samples == 150


def test_seeded_predictions_are_reproducible(space):
    subnets = [space.sample(seed=seed) for seed in range(60)]
    values = [smooth(s, space) for s in subnets]
    first = Predictor(space, seed=1).fit(subnets, values).predict(subnets)
    second = Predictor(space, seed=1).fit(subnets, values).predict(subnets)
    np.testing.assert_array_equal(first, second)


def test_argument_checks(space):
    subnets = [space.sample(seed=seed) for seed in range(5)]
    predictor = Predictor(space)
    with pytest.raises(ValueError, match="not fitted"):
        predictor.predict(subnets)
    with pytest.raises(ValueError, match="at least 2"):
        predictor.fit(subnets[:1], [0.5])
    with pytest.raises(ValueError, match="5 subnets and 4 values"):
        predictor.fit(subnets, [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"values\[2\]"):
        predictor.fit(subnets, [0.1, 0.2, math.nan, 0.4, 0.5])
    with pytest.raises(TypeError, match="sequence of SubnetConfig"):
        predictor.fit(subnets[0], [0.5])
    predictor.fit(subnets, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert predictor.predict([]).shape == (0,)
    with pytest.raises(TypeError, match="sequence of SubnetConfig"):
        predictor.predict(subnets[0])
    with pytest.raises(ValueError, match="at least 2"):
        predictor.score(subnets[:1], [0.5])
    with pytest.raises(ValueError, match=r"Unknown predictor model 'mlp'.*'gbrt'"):
        Predictor(space, model="mlp")
    with pytest.raises(TypeError, match="SearchSpace"):
        Predictor({"num_hidden_layers": [1]})


def test_register_predictor_model(space):
    from sklearn.neighbors import KNeighborsRegressor

    register_predictor_model("knn-test", lambda seed: KNeighborsRegressor(n_neighbors=2))
    try:
        subnets = [space.sample(seed=seed) for seed in range(10)]
        values = [smooth(s, space) for s in subnets]
        assert Predictor(space, model="knn-test").fit(subnets, values).predict(subnets[:3]).shape == (3,)
        with pytest.raises(ValueError, match="already registered"):
            register_predictor_model("gbrt", lambda seed: KNeighborsRegressor())
    finally:
        del PREDICTOR_MODELS["knn-test"]
