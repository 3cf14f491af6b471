"""Ensemble bootstrapping (BossNAS): self-supervised block-wise training without labels or a teacher.

An exponential-moving-average (EMA) copy of the supernet and of the projectors is the *target network*. For a block
and a batch, k candidates of the block are sampled; the target for each view is the average over those k candidates
of the target network's projected block output (each projection L2-normalized first, as BossNAS does): the
*ensemble target*, the population center. Each online candidate, through the online projector and predictor,
predicts the ensemble target of the *other* view (BYOL's regression loss, symmetrized over the two views). Text views
differ by token masking (and the online network's dropout); image views by random crops, flips and brightness.

The pieces are small and pure where they can be: [`BlockProjector`] (pooling + MLP, reading the first `h` channels
of any hidden size), [`byol_loss`], [`ensemble_target`], [`EMATarget`] (the target network, never trained by
gradients) and the view functions [`mask_tokens`] and [`image_views`].
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_float, check_int
from .blocks import BlockCandidate, run_block

__all__ = [
    "BlockProjector",
    "EMATarget",
    "EnsembleHeads",
    "byol_loss",
    "cosine_momentum",
    "ensemble_target",
    "image_views",
    "mask_tokens",
    "masked_mean_pool",
]


def masked_mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of `hidden_states` `(B, T, h)` over the real positions of `attention_mask` `(B, T)` (all when None),
    `(B, h)`."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)  # (B, h)
    mask = (attention_mask != 0).unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, h)


class BlockProjector(nn.Module):
    """Pools a block's output over the tokens and maps it through an MLP (BYOL's projector or predictor).

    The first linear layer is as wide as the supernet's hidden size and reads only the first `h` input channels of a
    candidate of hidden size `h` (zeros in the others would give the same result), so one projector serves every
    candidate of the block.

    Args:
        in_features (`int`): the largest input width (the supernet's hidden size).
        hidden_features (`int`): the MLP's hidden width.
        out_features (`int`): the projection size.
        pool (`bool`, *optional*, defaults to `True`): pool `(B, T, h)` inputs over the tokens first (a projector);
            a predictor takes `(B, out)` projections and does not pool.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.blockwise import BlockProjector
    >>> projector = BlockProjector(32, 64, 16)
    >>> projector(torch.randn(2, 5, 24)).shape  # a candidate of hidden size 24
    torch.Size([2, 16])
    ```
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, pool: bool = True):
        super().__init__()
        self.pool = pool
        self.dense = nn.Linear(
            check_int("in_features", in_features, 1), check_int("hidden_features", hidden_features, 1)
        )
        self.norm = nn.LayerNorm(hidden_features)
        self.out = nn.Linear(hidden_features, check_int("out_features", out_features, 1))

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = masked_mean_pool(inputs, attention_mask) if self.pool else inputs  # (B, h)
        h = x.shape[-1]
        if h > self.dense.in_features:
            raise ValueError(f"The input has {h} channels, more than the projector's {self.dense.in_features}.")
        x = F.linear(x, self.dense.weight[:, :h], self.dense.bias)  # (B, hidden)
        return self.out(F.gelu(self.norm(x)))  # (B, out)


class EnsembleHeads(nn.Module):
    """One projector and one predictor per block (the online side; the target keeps EMA copies of the projectors).

    Args:
        num_blocks (`int`): blocks of the split.
        hidden_size (`int`): the supernet's (largest) hidden size.
        projection_size (`int`): the size of the projections.
        projection_hidden_size (`int`): the hidden width of the projector and predictor MLPs.
    """

    def __init__(self, num_blocks: int, hidden_size: int, projection_size: int, projection_hidden_size: int):
        super().__init__()
        check_int("num_blocks", num_blocks, 1)
        self.projectors = nn.ModuleList(
            BlockProjector(hidden_size, projection_hidden_size, projection_size) for _ in range(num_blocks)
        )
        self.predictors = nn.ModuleList(
            BlockProjector(projection_size, projection_hidden_size, projection_size, pool=False)
            for _ in range(num_blocks)
        )

    def block_parameters(self, block: int) -> list[nn.Parameter]:
        return [*self.projectors[block].parameters(), *self.predictors[block].parameters()]


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss `2 - 2 cos(prediction, target)`, averaged over the batch; the target is detached.

    ```python
    >>> import torch
    >>> from hf_nas.blockwise import byol_loss
    >>> x = torch.randn(4, 8)
    >>> abs(round(byol_loss(x, 3 * x).item(), 6)), round(byol_loss(x, -x).item(), 6)  # same direction; opposite
    (0.0, 4.0)
    ```
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"`prediction` and `target` must have the same shape, got {tuple(prediction.shape)} and "
            f"{tuple(target.shape)}."
        )
    p = F.normalize(prediction.float(), dim=-1)  # (B, D)
    z = F.normalize(target.detach().float(), dim=-1)  # (B, D)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()


@torch.no_grad()
def ensemble_target(
    target_model: nn.Module,
    projector: nn.Module,
    candidates: Sequence[BlockCandidate],
    block_input: torch.Tensor,
    layer_args: Sequence[Any] = (),
    layer_kwargs: Mapping[str, Any] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ensemble target of a block: the mean over `candidates` of the target network's block output on
    `block_input`, projected by the target `projector` and L2-normalized, `(B, projection_size)`. Computed without
    gradients.

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.blockwise import BlockProjector, BlockSplit, ensemble_target, layer_call_arguments
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64)).eval()
    >>> split, space = BlockSplit.even(2, 2), model.search_space
    >>> candidates = [split.candidate(space.largest(), 1), split.candidate(space.smallest(), 1)]
    >>> inputs = {"input_ids": torch.tensor([[2, 5, 7]])}
    >>> args, kwargs = layer_call_arguments(model, inputs)
    >>> ensemble_target(model, BlockProjector(32, 64, 16), candidates, torch.randn(1, 3, 32), args, kwargs).shape
    torch.Size([1, 16])
    ```
    """
    if not candidates:
        raise ValueError("`candidates` is empty: the ensemble target needs at least one candidate.")
    previous = target_model.active_subnet
    total = None
    try:
        for candidate in candidates:
            output = run_block(target_model, candidate, block_input, layer_args, layer_kwargs)  # (B, T, h)
            z = F.normalize(projector(output, attention_mask).float(), dim=-1)  # (B, D)
            total = z if total is None else total + z
    finally:
        target_model.activate_subnet(previous)
    return total / len(candidates)  # (B, D)


def cosine_momentum(base: float, step: int, max_steps: int) -> float:
    """BYOL's EMA momentum at optimizer step `step` of `max_steps`: from `base` up to 1 on a cosine,
    `1 - (1 - base) (cos(pi step / max_steps) + 1) / 2`.

    ```python
    >>> from hf_nas.blockwise import cosine_momentum
    >>> cosine_momentum(0.99, 0, 100), cosine_momentum(0.99, 100, 100)
    (0.99, 1.0)
    ```
    """
    base = check_float("base", base)
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"`base` momentum must be in [0, 1], got {base}.")
    check_int("step", step, 0)
    check_int("max_steps", max_steps, 1)
    progress = min(step, max_steps) / max_steps
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class EMATarget(nn.Module):
    """The target network: a copy of the online modules whose parameters follow them as an exponential moving
    average, `target = m * target + (1 - m) * online`, and never receive gradients (`requires_grad=False`; the
    target runs in eval mode and under `torch.no_grad` in [`ensemble_target`]).

    Args:
        online (`dict[str, nn.Module]`): the online modules, by name (e.g. the supernet and the projectors).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.blockwise import EMATarget
    >>> online = torch.nn.Linear(2, 2)
    >>> target = EMATarget({"layer": online})
    >>> with torch.no_grad():
    ...     _ = online.weight.add_(1.0)
    >>> target.update({"layer": online}, momentum=0.5)
    >>> torch.allclose(target.modules_by_name["layer"].weight, online.weight - 0.5)
    True
    ```
    """

    def __init__(self, online: Mapping[str, nn.Module]):
        super().__init__()
        self.modules_by_name = nn.ModuleDict({name: copy.deepcopy(module) for name, module in online.items()})
        self.modules_by_name.requires_grad_(False)
        self.modules_by_name.eval()

    def train(self, mode: bool = True) -> EMATarget:
        """The target always stays in eval mode (no dropout): its outputs are the regression targets."""
        return super().train(False)

    @torch.no_grad()
    def update(self, online: Mapping[str, nn.Module], momentum: float) -> None:
        """Move every target parameter toward its online twin: `target = momentum * target + (1 - momentum) *
        online`."""
        momentum = check_float("momentum", momentum)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1], got {momentum}.")
        if set(online) != set(self.modules_by_name):
            raise ValueError(f"`online` must hold the modules {sorted(self.modules_by_name)}, got {sorted(online)}.")
        for name, module in online.items():
            target_params = list(self.modules_by_name[name].parameters())
            online_params = list(module.parameters())
            if len(target_params) != len(online_params):
                raise ValueError(f"The online module {name!r} no longer has the target's parameters.")
            torch._foreach_lerp_(target_params, [p.detach() for p in online_params], 1.0 - momentum)


# --------------------------------------------------------------------------------------------------------------------
# views
def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    probability: float,
    mask_token_id: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """A view of a text batch: each real token other than the first and the last of its row (`[CLS]`, `[SEP]`) is
    replaced by `mask_token_id` with `probability`. Returns new ids; `input_ids` is not changed.

    ```python
    >>> import torch
    >>> from hf_nas.blockwise import mask_tokens
    >>> ids = torch.tensor([[101, 7, 8, 9, 102, 0]])
    >>> mask_tokens(ids, (ids != 0).long(), 1.0, 103, torch.Generator().manual_seed(0)).tolist()
    [[101, 103, 103, 103, 102, 0]]
    ```
    """
    probability = check_float("probability", probability)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"`probability` must be in [0, 1], got {probability}.")
    B, T = input_ids.shape
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask != 0  # (B, T)
    lengths = real.sum(dim=1, keepdim=True)  # (B, 1)
    positions = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
    inner = real & (positions > 0) & (positions < lengths - 1)  # (B, T): not the first nor the last real token
    draw = torch.rand((B, T), generator=generator, device=generator.device).to(input_ids.device)  # (B, T)
    return torch.where(inner & (draw < probability), torch.full_like(input_ids, mask_token_id), input_ids)


def image_views(pixel_values: torch.Tensor, generator: torch.Generator, min_scale: float = 0.5) -> torch.Tensor:
    """A view of an image batch `(B, C, H, W)`: for each image a random crop of `min_scale` to all of its area (random
    aspect within [3/4, 4/3]) resized back to `(H, W)`, a horizontal flip with probability 1/2 and a brightness shift
    of up to 0.2 (of the normalized values' scale). Returns a new tensor.

    ```python
    >>> import torch
    >>> from hf_nas.blockwise import image_views
    >>> image_views(torch.randn(2, 3, 16, 16), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 16, 16])
    ```
    """
    min_scale = check_float("min_scale", min_scale)
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"`min_scale` must be in (0, 1], got {min_scale}.")
    B, _, H, W = pixel_values.shape

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=generator).item()

    views = []
    for image in pixel_values:
        scale = uniform(min_scale, 1.0)
        ratio = math.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
        h = max(1, min(H, round(math.sqrt(scale * H * W / ratio))))
        w = max(1, min(W, round(math.sqrt(scale * H * W * ratio))))
        top = int(uniform(0, H - h + 1e-9)) if H > h else 0
        left = int(uniform(0, W - w + 1e-9)) if W > w else 0
        crop = image[:, top : top + h, left : left + w].unsqueeze(0)  # (1, C, h, w)
        view = F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False)[0]  # (C, H, W)
        if uniform(0.0, 1.0) < 0.5:
            view = view.flip(-1)
        views.append(view + uniform(-0.2, 0.2))
    return torch.stack(views)  # (B, C, H, W)
