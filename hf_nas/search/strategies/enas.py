"""ENAS: an LSTM controller trained by REINFORCE, with a memory buffer of past (architecture, reward) pairs.

The controller ([`ENASController`]) emits a subnet decision by decision: the depth (which fixes the kept layers by the
space's layer rule), then the head count and FFN width of each kept layer, then the hidden size. Each decision is a
softmax over the dimension's choices computed from the LSTM's hidden state, whose next input is the embedding of the
choice made. [`ENASSearch`] trains it with REINFORCE on the reward of each told subnet (by default its first
objective, e.g. validation accuracy through the supernet; optionally minus a weighted MAC term), against a moving-
average baseline and with an entropy bonus; cheap constraints (a MAC budget) reject proposals at ask time.

The memory buffer follows "Understanding Neural Architecture Search Techniques" (Adam & Lorraine, 2019): they found
that ENAS's hidden states do not encode the past decisions (architectures sampled from similar hidden states are no
more similar than any two) and that training the controller with a buffer of previously sampled architectures
restores that correlation. Here each controller update replays `replay_size` past pairs drawn from the buffer into the
REINFORCE loss (their log-probabilities recomputed under the current controller, their stored rewards against the
current baseline). [`hidden_state_distance_correlation`] measures the paper's diagnostic. The paper's finding was
also that ENAS does not beat random search; measure before preferring it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...search_space import SearchSpace, SubnetConfig
from ...validation import check_float, check_floats, check_int
from .base import ConstraintsFunction, SearchStrategy, register_strategy

__all__ = [
    "DECISION_KINDS",
    "ControllerSample",
    "ENASController",
    "ENASSearch",
    "architecture_distance",
    "controller_diagnostic",
    "hidden_state_distance_correlation",
]

# The kinds of decision, in the order of the choices of SearchSpace they pick from.
DECISION_KINDS = ("num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size")


@dataclass(frozen=True)
class ControllerSample:
    """One pass of the controller: the decisions (choice indices), the subnet they decode to, the summed
    log-probability and entropy of the decisions, and the LSTM's hidden state after the last decision."""

    decisions: tuple[int, ...]
    subnet: SubnetConfig
    log_prob: torch.Tensor
    entropy: torch.Tensor
    hidden_state: torch.Tensor


class ENASController(nn.Module):
    """An LSTM that emits a [`SubnetConfig`] of `search_space` decision by decision.

    Decisions, in order: the depth (an index into `num_hidden_layers`; the kept layers follow the space's layer rule),
    then for each kept layer its head count and FFN width, then the hidden size. The first input is a learned start
    vector; each later input is the embedding of the previous choice. Parameters are drawn from U(-0.1, 0.1) (as ENAS
    does) by a generator seeded with `seed`, never from the global RNG.

    Args:
        search_space (`SearchSpace`): the space the subnets come from.
        hidden_size (`int`, *optional*, defaults to 64): the LSTM's width.
        seed (`int`, *optional*, defaults to 0): seeds the initial parameters.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies.enas import ENASController
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> controller = ENASController(space, hidden_size=16, seed=0)
    >>> sample = controller.sample(torch.Generator().manual_seed(0))
    >>> sample.subnet in space, len(sample.decisions) == 2 + 2 * sample.subnet.num_hidden_layers
    (True, True)
    ```
    """

    def __init__(self, search_space: SearchSpace, hidden_size: int = 64, seed: int = 0):
        super().__init__()
        if not isinstance(search_space, SearchSpace):
            raise TypeError(f"`search_space` must be a SearchSpace, got {type(search_space).__name__}.")
        self.search_space = search_space
        self.hidden_size = check_int("hidden_size", hidden_size, 1)
        self.choices = {kind: tuple(getattr(search_space, kind)) for kind in DECISION_KINDS}
        self.start = nn.Parameter(torch.empty(hidden_size))
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.embeddings = nn.ModuleDict({k: nn.Embedding(len(c), hidden_size) for k, c in self.choices.items()})
        self.logits = nn.ModuleDict({k: nn.Linear(hidden_size, len(c)) for k, c in self.choices.items()})
        generator = torch.Generator().manual_seed(check_int("seed", seed))
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-0.1, 0.1, generator=generator)

    # -- decisions <-> subnets -----------------------------------------------------------------------------------------
    def kinds(self, depth: int) -> list[str]:
        """The kinds of the decisions of a subnet of `depth` layers, in order."""
        return [
            "num_hidden_layers",
            *(k for _ in range(depth) for k in ("num_attention_heads", "intermediate_size")),
            "hidden_size",
        ]

    def decisions(self, subnet: SubnetConfig) -> tuple[int, ...]:
        """The choice indices that emit `subnet` (which must be in the space)."""
        self.search_space.validate(subnet)
        c = self.choices
        out = [c["num_hidden_layers"].index(subnet.num_hidden_layers)]
        for heads, ffn in zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True):
            out += [c["num_attention_heads"].index(heads), c["intermediate_size"].index(ffn)]
        out.append(c["hidden_size"].index(subnet.hidden_size))
        return tuple(out)

    def decode(self, decisions: Sequence[int]) -> SubnetConfig:
        """The subnet of a sequence of choice indices; it keeps the layers the space holds for its depth."""
        c = self.choices
        depth = c["num_hidden_layers"][decisions[0]]
        if len(decisions) != 2 + 2 * depth:
            raise ValueError(f"A subnet of depth {depth} takes {2 + 2 * depth} decisions, got {len(decisions)}.")
        heads = tuple(c["num_attention_heads"][decisions[1 + 2 * i]] for i in range(depth))
        ffn = tuple(c["intermediate_size"][decisions[2 + 2 * i]] for i in range(depth))
        return self.search_space.subnet(depth, heads, ffn, c["hidden_size"][decisions[-1]])

    # -- running the LSTM ----------------------------------------------------------------------------------------------
    def run(
        self, decisions: Sequence[int] | None = None, generator: torch.Generator | None = None
    ) -> ControllerSample:
        """Emit a subnet: sample each decision (with `generator`), or follow the given `decisions` (teacher forcing,
        to score a known subnet). Returns the decisions, the subnet, the summed log-probability and entropy (with
        gradients) and the final hidden state."""
        if (decisions is None) == (generator is None):
            raise ValueError("Pass exactly one of `decisions` (to score them) or `generator` (to sample).")
        x = self.start.unsqueeze(0)  # (1, H)
        state = None
        chosen: list[int] = []
        log_prob = entropy = torch.zeros(())
        kinds = ["num_hidden_layers"]
        t = 0
        while t < len(kinds):
            kind = kinds[t]
            h, c = self.cell(x, state)  # (1, H) each
            state = (h, c)
            logits = self.logits[kind](h)[0]  # (n,)
            log_p = torch.log_softmax(logits, dim=-1)  # (n,)
            if decisions is None:
                index = int(torch.multinomial(log_p.detach().exp(), 1, generator=generator))
            else:
                index = int(decisions[t])
                if not 0 <= index < len(log_p):
                    raise ValueError(f"Decision {t} ({kind}) is {index}; allowed: 0 to {len(log_p) - 1}.")
            chosen.append(index)
            log_prob = log_prob + log_p[index]
            entropy = entropy - (log_p.exp() * log_p).sum()
            if t == 0:
                kinds = self.kinds(self.choices["num_hidden_layers"][index])
            x = self.embeddings[kind](torch.tensor([index]))  # (1, H)
            t += 1
        if decisions is not None and len(decisions) != len(chosen):
            raise ValueError(f"Got {len(decisions)} decisions; this subnet takes {len(chosen)}.")
        return ControllerSample(tuple(chosen), self.decode(chosen), log_prob, entropy, state[0][0])

    def sample(self, generator: torch.Generator) -> ControllerSample:
        """A subnet drawn from the controller's distribution with `generator`."""
        return self.run(generator=generator)

    def score(self, subnet: SubnetConfig) -> ControllerSample:
        """`subnet`'s log-probability, entropy and final hidden state under the controller (teacher forcing)."""
        return self.run(decisions=self.decisions(subnet))

    @torch.no_grad()
    def first_decision_probabilities(self) -> torch.Tensor:
        """The probabilities of the depth choices (the first decision), `(len(num_hidden_layers),)`."""
        h, _ = self.cell(self.start.unsqueeze(0))
        return torch.softmax(self.logits["num_hidden_layers"](h)[0], dim=-1)


@register_strategy
class ENASSearch(SearchStrategy):
    """ENAS's controller as a search strategy: [`ENASController`] proposes subnets and learns from their rewards by
    REINFORCE with a moving-average baseline, an entropy bonus and, optionally, a memory buffer replayed into each
    update.

    The reward of a told subnet is `sum_i w_i * s_i * values[i] / scale_i` (`s_i` = +1 for a maximized objective, -1
    for a minimized one; weights `reward_weights`, default 1 for the first objective and 0 for the others; scales
    `reward_scales`, default 1), minus `constraint_penalty` times the sum of the positive measured constraint values.
    With objectives (accuracy, MACs), `reward_weights=(1, 0.1)` and `reward_scales=(1, full_macs)` give ENAS's
    "validation accuracy minus a MAC penalty"; a cheap `constraints` function (a MAC budget) instead rejects
    infeasible proposals at ask time (up to `max_attempts` draws).

    Every `batch_size` tells the controller takes one Adam step on

        L = -(1 / |N + R|) sum_{j in N + R} (r_j - b) log p(a_j) - entropy_weight (1 / |N|) sum_{j in N} H(a_j)

    where N are the new (subnet, reward) pairs, R the `replay_size` pairs drawn (uniformly, without replacement, seeded)
    from the buffer of earlier pairs, `log p(a_j)` and the summed decision entropies `H(a_j)` are recomputed under the
    current controller, and the baseline `b` has first absorbed the new rewards one by one (`b <- decay b + (1 - decay)
    r`, starting at the first reward). Then the new pairs join the buffer, which keeps the last `buffer_size`.

    Args:
        search_space, directions, seed, constraints, max_attempts: as for every [`SearchStrategy`].
        hidden_size (`int`, *optional*, defaults to 64): the controller's LSTM width.
        learning_rate (`float`, *optional*, defaults to 0.005): Adam's learning rate.
        baseline_decay (`float`, *optional*, defaults to 0.95): decay of the moving-average baseline.
        entropy_weight (`float`, *optional*, defaults to 1e-4): weight of the entropy bonus.
        reward_weights (`Sequence[float]`, *optional*): one weight per objective (default: 1, 0, ...).
        reward_scales (`Sequence[float]`, *optional*): one positive scale per objective (default: all 1).
        constraint_penalty (`float`, *optional*, defaults to 1.0): reward lost per unit of measured constraint
            violation.
        batch_size (`int`, *optional*, defaults to 1): tells per controller update.
        buffer_size (`int`, *optional*, defaults to 0): past pairs kept in the memory buffer (0: no buffer).
        replay_size (`int`, *optional*, defaults to 0): buffer pairs replayed into each update (at most the buffer's
            length at that time).

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import get_strategy
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> strategy = get_strategy("enas", space, ["maximize"], seed=0, buffer_size=20, replay_size=4)
    >>> for _ in range(5):
    ...     subnet = strategy.ask()
    ...     strategy.tell(subnet, [subnet.hidden_size / 32])
    >>> len(strategy.history), len(strategy.buffer)
    (5, 5)
    ```
    """

    name = "enas"

    def __init__(
        self,
        search_space: SearchSpace,
        directions: Sequence[str],
        seed: int = 0,
        constraints: ConstraintsFunction | None = None,
        max_attempts: int = 1000,
        hidden_size: int = 64,
        learning_rate: float = 0.005,
        baseline_decay: float = 0.95,
        entropy_weight: float = 1e-4,
        reward_weights: Sequence[float] | None = None,
        reward_scales: Sequence[float] | None = None,
        constraint_penalty: float = 1.0,
        batch_size: int = 1,
        buffer_size: int = 0,
        replay_size: int = 0,
    ):
        super().__init__(search_space, directions, seed=seed, constraints=constraints, max_attempts=max_attempts)
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.baseline_decay = check_float("baseline_decay", baseline_decay)
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"`baseline_decay` must be in [0, 1), got {baseline_decay}.")
        self.entropy_weight = check_float("entropy_weight", entropy_weight)
        if self.entropy_weight < 0:
            raise ValueError(f"`entropy_weight` must be >= 0, got {entropy_weight}.")
        n = self.num_objectives
        weights = (
            (1.0,) + (0.0,) * (n - 1) if reward_weights is None else check_floats("reward_weights", reward_weights)
        )
        scales = (1.0,) * n if reward_scales is None else check_floats("reward_scales", reward_scales)
        for name, values in (("reward_weights", weights), ("reward_scales", scales)):
            if len(values) != n:
                raise ValueError(f"`{name}` needs one value per objective ({n}, directions {list(self.directions)}).")
        if any(s <= 0 for s in scales):
            raise ValueError(f"`reward_scales` must be positive, got {list(scales)}.")
        self.reward_weights, self.reward_scales = weights, scales
        self.constraint_penalty = check_float("constraint_penalty", constraint_penalty)
        if self.constraint_penalty < 0:
            raise ValueError(f"`constraint_penalty` must be >= 0, got {constraint_penalty}.")
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.buffer_size = check_int("buffer_size", buffer_size, 0)
        self.replay_size = check_int("replay_size", replay_size, 0)
        if self.replay_size > 0 and self.buffer_size == 0:
            raise ValueError(f"`replay_size`={replay_size} needs a buffer: set `buffer_size` > 0.")

        self.controller = ENASController(search_space, hidden_size, seed=self.seed)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.learning_rate)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._replay_rng = random.Random(f"{self.seed}-replay")
        self.baseline: float | None = None
        self.buffer: deque[tuple[SubnetConfig, float]] = deque(maxlen=self.buffer_size or None)
        self._pending: list[tuple[SubnetConfig, float]] = []
        self._queue: deque[SubnetConfig] = deque()
        self.num_updates = 0

    def reward(self, values: Sequence[float], constraint_values: Sequence[float] = ()) -> float:
        """The reward of measured objective values (and constraint values, <= 0 feasible)."""
        total = 0.0
        for value, weight, scale, direction in zip(
            values, self.reward_weights, self.reward_scales, self.directions, strict=True
        ):
            total += weight * (1.0 if direction == "maximize" else -1.0) * value / scale
        return total - self.constraint_penalty * sum(max(0.0, c) for c in constraint_values)

    def ask(self) -> SubnetConfig:
        if self._queue:
            return self._queue.popleft()
        with torch.no_grad():
            for _ in range(self.max_attempts):
                subnet = self.controller.sample(self._generator).subnet
                if self._is_feasible(subnet):
                    return subnet
        raise self._unsatisfiable()

    def _tell(self, subnet: SubnetConfig, values: tuple[float, ...], constraint_values: tuple[float, ...]) -> None:
        self._pending.append((subnet, self.reward(values, constraint_values)))
        if len(self._pending) >= self.batch_size:
            batch, self._pending = self._pending, []
            self.update(batch)

    def _enqueue(self, subnet: SubnetConfig) -> None:
        self._queue.append(subnet)

    def replay(self) -> list[tuple[SubnetConfig, float]]:
        """The buffer pairs the next update replays: `min(replay_size, len(buffer))` drawn without replacement."""
        count = min(self.replay_size, len(self.buffer))
        return self._replay_rng.sample(list(self.buffer), count) if count else []

    def loss(
        self,
        new: Sequence[tuple[SubnetConfig, float]],
        replayed: Sequence[tuple[SubnetConfig, float]],
        baseline: float,
    ) -> torch.Tensor:
        """The REINFORCE loss of one update (see the class docstring) under the current controller."""
        items = [*new, *replayed]
        scored = [self.controller.score(subnet) for subnet, _ in items]
        policy = torch.stack([-(reward - baseline) * s.log_prob for (_, reward), s in zip(items, scored, strict=True)])
        entropy = torch.stack([s.entropy for s in scored[: len(new)]]).mean()
        return policy.mean() - self.entropy_weight * entropy

    def update(self, new: Sequence[tuple[SubnetConfig, float]]) -> None:
        """One controller update on the `new` (subnet, reward) pairs and a replay from the buffer; then the new pairs
        join the buffer."""
        if not new:
            return
        replayed = self.replay()
        for _, reward in new:
            b = self.baseline
            self.baseline = reward if b is None else self.baseline_decay * b + (1.0 - self.baseline_decay) * reward
        self.optimizer.zero_grad()
        self.loss(new, replayed, self.baseline).backward()
        self.optimizer.step()
        self.num_updates += 1
        if self.buffer_size:
            self.buffer.extend(new)


def _positive(name: str, value: Any) -> float:
    value = check_float(name, value)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value}.")
    return value


# --------------------------------------------------------------------------------------------------------------------
# the diagnostic of "Understanding Neural Architecture Search Techniques"
def architecture_distance(a: SubnetConfig, b: SubnetConfig, num_supernet_layers: int) -> int:
    """A Hamming distance between two subnets of one supernet: over the supernet's layers, whether the head counts
    differ and whether the FFN widths differ (a dropped layer has 0 of both), plus whether the hidden sizes differ.

    ```python
    >>> from hf_nas import SubnetConfig
    >>> from hf_nas.search.strategies.enas import architecture_distance
    >>> a = SubnetConfig(2, (4, 4), (64, 64), 32, layers=(0, 1))
    >>> b = SubnetConfig(1, (4,), (32,), 32, layers=(1,))
    >>> architecture_distance(a, b, num_supernet_layers=2)  # layer 0 dropped (2), layer 1's FFN (1)
    3
    ```
    """

    def genome(s: SubnetConfig) -> list[tuple[int, int]]:
        g = [(0, 0)] * num_supernet_layers
        for layer, heads, ffn in zip(s.layers, s.num_attention_heads, s.intermediate_size, strict=True):
            g[layer] = (heads, ffn)
        return g

    distance = int(a.hidden_size != b.hidden_size)
    for (ha, fa), (hb, fb) in zip(genome(a), genome(b), strict=True):
        distance += int(ha != hb) + int(fa != fb)
    return distance


def hidden_state_distance_correlation(
    hidden_states: Sequence[Any], subnets: Sequence[SubnetConfig], num_supernet_layers: int
) -> dict[str, float]:
    """The correlation, over all pairs of samples, between the Euclidean distance of the controller's hidden states
    and the [`architecture_distance`] of the subnets they produced: near 0 when the hidden state does not encode the
    decisions (the failure the paper found in ENAS), positive when it does.

    Args:
        hidden_states: one vector per sample (tensors or arrays), e.g. `ControllerSample.hidden_state`.
        subnets: the subnet of each sample.
        num_supernet_layers: the supernet's depth (for the distance).

    Returns:
        `dict`: `spearman` and `pearson` correlations (NaN when either distance is constant) and `num_pairs`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import SubnetConfig
    >>> from hf_nas.search.strategies.enas import hidden_state_distance_correlation
    >>> subnets = [SubnetConfig.uniform(1, h, f, 32) for h, f in ((2, 16), (2, 32), (4, 32), (4, 64))]
    >>> states = [torch.tensor([s.num_attention_heads[0], s.intermediate_size[0] / 16]) for s in subnets]
    >>> hidden_state_distance_correlation(states, subnets, 1)["spearman"] > 0.5  # states that encode the choices
    True
    ```
    """
    from scipy.stats import pearsonr, spearmanr

    if len(hidden_states) != len(subnets):
        raise ValueError(f"Got {len(hidden_states)} hidden states and {len(subnets)} subnets: give one per sample.")
    if len(subnets) < 3:
        raise ValueError(f"The correlation needs at least 3 samples, got {len(subnets)}.")
    states = np.stack([np.asarray(torch.as_tensor(h).detach().cpu(), dtype=float).ravel() for h in hidden_states])
    hidden_d, arch_d = [], []
    for i in range(len(subnets)):
        for j in range(i + 1, len(subnets)):
            hidden_d.append(float(np.linalg.norm(states[i] - states[j])))
            arch_d.append(architecture_distance(subnets[i], subnets[j], num_supernet_layers))
    constant = len(set(arch_d)) < 2 or len(set(hidden_d)) < 2
    spearman = float("nan") if constant else float(spearmanr(hidden_d, arch_d).statistic)
    pearson = float("nan") if constant else float(pearsonr(hidden_d, arch_d).statistic)
    return {"spearman": spearman, "pearson": pearson, "num_pairs": len(arch_d)}


def controller_diagnostic(strategy: ENASSearch, num_samples: int = 100, seed: int = 0) -> dict[str, float]:
    """[`hidden_state_distance_correlation`] of `num_samples` subnets drawn from `strategy`'s controller (with a
    generator of its own, seeded by `seed`: the strategy's own draws are not disturbed)."""
    check_int("num_samples", num_samples, 3)
    generator = torch.Generator().manual_seed(check_int("seed", seed))
    with torch.no_grad():
        samples = [strategy.controller.sample(generator) for _ in range(num_samples)]
    return hidden_state_distance_correlation(
        [s.hidden_state for s in samples],
        [s.subnet for s in samples],
        strategy.search_space.num_supernet_layers,
    )
