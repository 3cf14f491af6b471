"""Predictors: cheap estimates of expensive objectives (accuracy, latency) from a subnet's architecture.

LINAS and InstaTune fit a light regressor per expensive objective on the subnets measured so far and let the
evolutionary search explore on its predictions, spending real evaluations only on the most promising subnets.
A [`Predictor`] wraps a scikit-learn regressor over a fixed-length encoding of the subnet, found by name in
[`ENCODINGS`]: `"layers"` ([`encode_layers`], the default: what the supernet varies, per supernet layer: kept or
not, its heads, its FFN width) or `"positions"` ([`encode`]: sizes by position among the kept layers). The
regressors are found by name in [`PREDICTOR_MODELS`] (add one with [`register_predictor_model`]).

[`held_out_split`] splits measured subnets into a fitting and a held-out part that share no subnet, whatever
repeats the measurements hold, so a predictor's held-out error never scores a subnet it was fitted on.
"""

from __future__ import annotations

import json
import math
import numbers
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..search_space import SearchSpace, SubnetConfig

__all__ = [
    "ENCODINGS",
    "PREDICTOR_MODELS",
    "Predictor",
    "encode",
    "encode_layers",
    "encoding_size",
    "held_out_split",
    "layer_encoding_size",
    "register_predictor_model",
]


def encoding_size(search_space: SearchSpace) -> int:
    """The length of [`encode`]'s features for `search_space`: 4 + 2 x the largest depth."""
    return 4 + 2 * max(search_space.num_hidden_layers)


def encode(subnet: SubnetConfig, search_space: SearchSpace) -> np.ndarray:
    """The fixed-length features of a subnet, each scaled to [0, 1] by the space's largest choice.

    In order: depth, hidden size, the heads of every layer of the deepest subnet, the FFN width of every layer (zero
    beyond the subnet's depth), the total attention width (sum of heads x head size over the kept layers) and the
    total FFN width.

    ```python
    >>> from hf_nas import SearchSpace, SubnetConfig
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> encode(space.largest(), space).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> encode(SubnetConfig.uniform(1, 2, 32, 16), space).tolist()
    [0.5, 0.5, 0.5, 0.0, 0.5, 0.0, 0.25, 0.25]
    ```
    """
    search_space.validate(subnet)
    max_depth = max(search_space.num_hidden_layers)
    max_heads = max(search_space.num_attention_heads)
    max_ffn = max(search_space.intermediate_size)
    head_size = search_space.attention_head_size
    heads = np.zeros(max_depth)  # (L,)
    ffn = np.zeros(max_depth)  # (L,)
    heads[: subnet.num_hidden_layers] = subnet.num_attention_heads
    ffn[: subnet.num_hidden_layers] = subnet.intermediate_size
    return np.concatenate(
        [
            [subnet.num_hidden_layers / max_depth, subnet.hidden_size / max(search_space.hidden_size)],
            heads / max_heads,
            ffn / max_ffn,
            [(heads.sum() * head_size) / (max_depth * max_heads * head_size), ffn.sum() / (max_depth * max_ffn)],
        ]
    )  # (4 + 2L,)


def layer_encoding_size(search_space: SearchSpace) -> int:
    """The length of [`encode_layers`]'s features for `search_space`: 4 + 3 x the supernet's depth."""
    return 4 + 3 * search_space.num_supernet_layers


def encode_layers(subnet: SubnetConfig, search_space: SearchSpace) -> np.ndarray:
    """The features of a subnet by *supernet layer*, each scaled to [0, 1]: what the supernet actually varies.

    In order: depth, hidden size, then for every layer of the supernet whether the subnet keeps it, its heads and its
    FFN width (zero for a layer it drops), then the total attention width and the total FFN width. Unlike [`encode`]
    (sizes by position among the kept layers), a supernet layer has the same features whichever depth keeps it, so
    a predictor sees that two subnets share that layer's weights.

    ```python
    >>> from hf_nas import SearchSpace
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8, layer_rule="spread")
    >>> encode_layers(space.largest(), space).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> encode_layers(space.subnet(1, 2, 32, 16), space).tolist()  # depth 1 keeps the last layer
    [0.5, 0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.5, 0.25, 0.25]
    ```
    """
    search_space.validate(subnet)
    total = search_space.num_supernet_layers
    max_heads = max(search_space.num_attention_heads)
    max_ffn = max(search_space.intermediate_size)
    max_depth = max(search_space.num_hidden_layers)
    kept = np.zeros(total)  # (L,)
    heads = np.zeros(total)  # (L,)
    ffn = np.zeros(total)  # (L,)
    layers = list(subnet.layers)
    kept[layers] = 1.0
    heads[layers] = subnet.num_attention_heads
    ffn[layers] = subnet.intermediate_size
    return np.concatenate(
        [
            [subnet.num_hidden_layers / max_depth, subnet.hidden_size / max(search_space.hidden_size)],
            kept,
            heads / max_heads,
            ffn / max_ffn,
            [heads.sum() / (max_depth * max_heads), ffn.sum() / (max_depth * max_ffn)],
        ]
    )  # (4 + 3L,)


ENCODINGS: dict[str, tuple[Callable[[SubnetConfig, SearchSpace], np.ndarray], Callable[[SearchSpace], int]]] = {
    "layers": (encode_layers, layer_encoding_size),
    "positions": (encode, encoding_size),
}
"""Name -> (encoding function, its length for a space) of the features a [`Predictor`] fits on."""


def held_out_split(
    subnets: Sequence[SubnetConfig], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of a fitting part and a held-out part of `subnets` that share no subnet, by construction.

    The *distinct* subnets are shuffled with `random.Random(seed)` and the first `ceil(test_fraction x distinct)` of
    them are held out; every index of a subnet goes to the side of that subnet. Repeated measurements of one subnet
    (two searches from the same seeded start, a test-retest pair) therefore never sit on both sides.

    Args:
        subnets (`Sequence[SubnetConfig]`): the measured subnets, repeats allowed.
        test_fraction (`float`, *optional*, defaults to 0.2): the share of distinct subnets held out, in (0, 1).
        seed (`int`, *optional*, defaults to 0): seeds the shuffle.

    Returns:
        `tuple[list[int], list[int]]`: the fitting indices and the held-out indices, each increasing.

    ```python
    >>> from hf_nas import SearchSpace
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> subnets = [space.sample(seed=i % 5) for i in range(10)]  # five subnets, each twice
    >>> fit, held_out = held_out_split(subnets, test_fraction=0.2)
    >>> len(fit), len(held_out), {subnets[i] for i in fit} & {subnets[i] for i in held_out}
    (8, 2, set())
    ```
    """
    if isinstance(subnets, (str, bytes)) or not isinstance(subnets, Sequence):
        raise TypeError(f"`subnets` must be a sequence of SubnetConfig, got {type(subnets).__name__}.")
    for i, subnet in enumerate(subnets):
        if not isinstance(subnet, SubnetConfig):
            raise TypeError(f"`subnets[{i}]` must be a SubnetConfig, got {type(subnet).__name__}.")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be a number in (0, 1), got {test_fraction!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {seed!r} of type {type(seed).__name__}.")
    keys = [json.dumps(s.to_dict(), sort_keys=True) for s in subnets]
    distinct = sorted(set(keys))
    if len(distinct) < 2:
        raise ValueError(f"A held-out split needs at least 2 distinct subnets, got {len(distinct)}.")
    random.Random(seed).shuffle(distinct)
    count = min(len(distinct) - 1, max(1, math.ceil(test_fraction * len(distinct))))
    held = set(distinct[:count])
    fit = [i for i, k in enumerate(keys) if k not in held]
    test = [i for i, k in enumerate(keys) if k in held]
    return fit, test


# ----------------------------------------------------------------------------------------------------------------
# regressors
def _gbrt(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(
        n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
    )


def _rf(seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=200, random_state=seed)


def _ridge(seed: int) -> Any:
    from sklearn.linear_model import Ridge

    return Ridge(alpha=1e-3)  # deterministic: the seed is unused


PREDICTOR_MODELS: dict[str, Callable[[int], Any]] = {"gbrt": _gbrt, "rf": _rf, "ridge": _ridge}
"""Name -> factory of an unfitted scikit-learn regressor, called with the predictor's seed."""


def register_predictor_model(name: str, factory: Callable[[int], Any]) -> None:
    """Make `Predictor(space, model=name)` use `factory(seed)`, which returns an unfitted scikit-learn regressor.

    ```python
    >>> from sklearn.neighbors import KNeighborsRegressor
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.predictors import Predictor, register_predictor_model
    >>> register_predictor_model("knn", lambda seed: KNeighborsRegressor(n_neighbors=5))
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> subnets = [space.sample(seed=i) for i in range(10)]
    >>> predictor = Predictor(space, model="knn").fit(subnets, [s.hidden_size for s in subnets])
    >>> predictor.predict(subnets[:3]).shape
    (3,)
    ```
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty str, got {name!r}.")
    if not callable(factory):
        raise TypeError(f"`factory` must be a function of the seed returning a regressor, got {factory!r}.")
    if name in PREDICTOR_MODELS and PREDICTOR_MODELS[name] is not factory:
        raise ValueError(f"A predictor model named {name!r} is already registered.")
    PREDICTOR_MODELS[name] = factory


# ----------------------------------------------------------------------------------------------------------------
# the predictor
class Predictor:
    """Estimates one objective of subnets from their [`encode`]ing with a scikit-learn regressor.

    Args:
        search_space (`SearchSpace`): the space of the subnets (fixes the encoding).
        model (`str`, *optional*, defaults to `"gbrt"`): the regressor, a key of [`PREDICTOR_MODELS`]: `"gbrt"`
            (gradient-boosted trees), `"rf"` (random forest) or `"ridge"` (ridge regression).
        seed (`int`, *optional*, defaults to 0): the regressor's `random_state`.
        encoding (`str`, *optional*, defaults to `"layers"`): the features, a key of [`ENCODINGS`]: `"layers"`
            ([`encode_layers`], per supernet layer) or `"positions"` ([`encode`]).

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.predictors import Predictor
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> subnets = [space.sample(seed=i) for i in range(20)]
    >>> values = [s.hidden_size * sum(s.intermediate_size) for s in subnets]
    >>> predictor = Predictor(space, model="ridge").fit(subnets, values)
    >>> predictor.predict(subnets[:2]).shape
    (2,)
    ```
    """

    def __init__(self, search_space: SearchSpace, model: str = "gbrt", seed: int = 0, encoding: str = "layers"):
        if not isinstance(search_space, SearchSpace):
            raise TypeError(f"`search_space` must be a SearchSpace, got {type(search_space).__name__}.")
        if not isinstance(model, str):
            raise TypeError(f"`model` must be a str, got {model!r} of type {type(model).__name__}.")
        if model not in PREDICTOR_MODELS:
            raise ValueError(f"Unknown predictor model {model!r}; allowed: {sorted(PREDICTOR_MODELS)}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r} of type {type(seed).__name__}.")
        if not isinstance(encoding, str) or encoding not in ENCODINGS:
            raise ValueError(f"Unknown `encoding` {encoding!r}; allowed: {sorted(ENCODINGS)}.")
        self.search_space = search_space
        self.model = model
        self.encoding = encoding
        self.seed = seed
        self.regressor: Any = None  # the fitted scikit-learn regressor, after `fit`
        self.num_samples = 0

    @property
    def is_fitted(self) -> bool:
        return self.regressor is not None

    def _features(self, subnets: Sequence[SubnetConfig]) -> np.ndarray:
        if isinstance(subnets, SubnetConfig) or isinstance(subnets, (str, bytes)) or not isinstance(subnets, Sequence):
            raise TypeError(f"`subnets` must be a sequence of SubnetConfig, got {type(subnets).__name__}.")
        for i, subnet in enumerate(subnets):
            if not isinstance(subnet, SubnetConfig):
                raise TypeError(f"`subnets[{i}]` must be a SubnetConfig, got {type(subnet).__name__}.")
        features, size = ENCODINGS[self.encoding]
        if not subnets:
            return np.zeros((0, size(self.search_space)))
        return np.stack([features(s, self.search_space) for s in subnets])  # (N, F)

    def _targets(self, subnets: Sequence[SubnetConfig], values: Sequence[float]) -> np.ndarray:
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(f"`values` must be a sequence of numbers, got {type(values).__name__}.")
        if len(values) != len(subnets):
            raise ValueError(
                f"Got {len(subnets)} subnets and {len(values)} values: give one measured value per subnet."
            )
        floats = []
        for i, value in enumerate(values):
            if isinstance(value, bool) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
                raise TypeError(f"`values[{i}]` must be a number, got {value!r} of type {type(value).__name__}.")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"`values[{i}]` must be finite, got {value}.")
            floats.append(value)
        return np.asarray(floats)  # (N,)

    def fit(self, subnets: Sequence[SubnetConfig], values: Sequence[float]) -> Predictor:
        """Fit the regressor on measured subnets (at least 2) and their values; returns `self`."""
        features = self._features(subnets)
        targets = self._targets(subnets, values)
        if len(targets) < 2:
            raise ValueError(f"A predictor needs at least 2 measured subnets to fit, got {len(targets)}.")
        regressor = PREDICTOR_MODELS[self.model](self.seed)
        regressor.fit(features, targets)
        self.regressor = regressor
        self.num_samples = len(targets)
        return self

    def predict(self, subnets: Sequence[SubnetConfig]) -> np.ndarray:
        """The predicted values of `subnets`, shape `(len(subnets),)`."""
        if not self.is_fitted:
            from sklearn.exceptions import NotFittedError  # a ValueError

            raise NotFittedError(
                f"This {self.model!r} Predictor is not fitted yet: call `fit(subnets, values)` first."
            )
        features = self._features(subnets)
        if len(features) == 0:
            return np.zeros(0)
        return np.asarray(self.regressor.predict(features), dtype=float)  # (N,)

    def score(self, subnets: Sequence[SubnetConfig], values: Sequence[float]) -> dict[str, float]:
        """How well the predictor ranks and estimates held-out measured subnets (at least 2).

        Returns:
            `dict[str, float]`: `"mae"` (mean absolute error) and `"kendall_tau"` (rank correlation between predicted
            and measured values, what matters for search; NaN when either side is constant).
        """
        from scipy.stats import kendalltau

        targets = self._targets(subnets, values)
        if len(targets) < 2:
            raise ValueError(f"Scoring needs at least 2 measured subnets, got {len(targets)}.")
        predictions = self.predict(subnets)
        tau = kendalltau(predictions, targets).statistic
        return {"mae": float(np.mean(np.abs(predictions - targets))), "kendall_tau": float(tau)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model!r}, seed={self.seed}, encoding={self.encoding!r}, "
            f"num_samples={self.num_samples})"
        )
