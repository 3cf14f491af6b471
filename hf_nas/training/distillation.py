"""Distillation losses for supernet training: pure functions of tensors, no model code and no state.

- [`soft_cross_entropy`]: in-place distillation of the logits (Hinton et al.; BigNAS): every subnet learns the
  largest subnet's (or an external teacher's) softened class distribution.
- [`attention_relation_loss`]: self-attention distillation of the last layer (MiniLM; AutoDistil) in the MiniLMv2
  *multi-head self-attention relation* form, so teacher and student may differ in head count and hidden size.
- [`hidden_state_loss`]: MSE between the student's last hidden state and the matching prefix of the teacher's.
- [`layer_hidden_state_loss`]: DynaBERT's hidden-state distillation: the embeddings and every kept layer of a subnet
  against the teacher layer it maps to ([`teacher_layer_map`]).
- [`combine_losses`]: the weighted sum of the terms a training step computed.

Every loss returns a scalar tensor that is differentiable with respect to the student's tensors; the teacher's
tensors are detached inside, so no gradient ever reaches the teacher. Computation runs in at least float32 (inputs in
float16 or bfloat16 are upcast), so mixed-precision training gets full-precision losses. Values at padding positions
never reach a loss or its gradient, even when they are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "attention_relation_loss",
    "combine_losses",
    "hidden_state_loss",
    "layer_hidden_state_loss",
    "soft_cross_entropy",
    "teacher_layer_map",
]

# relation name -> indices into (q, k, v) of its two sides. "qk" is the attention distribution (MiniLM), "vv" the
# value relation (MiniLM, MiniLMv2), "qq" and "kk" the query and key relations (MiniLMv2).
_RELATIONS = {"qk": (0, 1), "vv": (2, 2), "qq": (0, 0), "kk": (1, 1)}
# Cap of the default relation head count: BERT-base's head count, so that a 12-head teacher's "qk" relation is
# exactly its own attention distribution.
_MAX_DEFAULT_RELATION_HEADS = 12


# ----------------------------------------------------------------------------------------------------------------
# argument checks and small helpers
def _check_tensor(field: str, value: Any, ndims: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{field}` must be a torch.Tensor, got {type(value).__name__}.")
    if value.ndim not in ndims:
        allowed = " or ".join(str(n) for n in ndims)
        raise ValueError(f"`{field}` must have {allowed} dimensions, got shape {tuple(value.shape)}.")
    if not value.is_floating_point():
        raise TypeError(f"`{field}` must be a floating-point tensor, got dtype {value.dtype}.")
    return value


def _check_mask(field: str, mask: Any, shape: torch.Size, shape_name: str) -> torch.Tensor | None:
    """Returns `mask` as a bool tensor (True = position counts), or None for no mask."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`{field}` must be a torch.Tensor or None, got {type(mask).__name__}.")
    if mask.is_floating_point() or mask.is_complex():
        # An additive mask (0 = keep, large negative = drop) would be silently inverted: refuse floats.
        raise TypeError(
            f"`{field}` must be a bool or integer tensor (1 or True = real token, 0 or False = padding), got dtype "
            f"{mask.dtype}; pass the tokenizer's attention_mask, not an additive float mask."
        )
    if mask.shape != shape:
        raise ValueError(f"`{field}` must have shape {shape_name} = {tuple(shape)}, got {tuple(mask.shape)}.")
    return mask != 0


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32, or in its own dtype if that is wider (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _zero_padding(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """`x` (B, T, C) with the padding positions of `mask` (B, T) set to 0, so that garbage there (even NaN) can
    reach neither the loss nor the gradient."""
    if mask is None:
        return x
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, T, C)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None, per_position: int = 1) -> torch.Tensor:
    """Sum of `values` over the positions of `mask` divided by their count times `per_position`; 0 if none count.

    `values` has the shape of `mask` and is already 0 at excluded positions (see [`_zero_padding`]).
    """
    if mask is None:
        return values.sum() / (values.numel() * per_position)
    values = values * mask  # exact zeros at padding even if a non-finite value slipped through
    return values.sum() / (mask.sum().clamp(min=1) * per_position)


# ----------------------------------------------------------------------------------------------------------------
# logits
def soft_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Knowledge-distillation loss on logits: cross-entropy from the teacher's softened distribution to the student's.

    The loss of one example (or one token) is `-sum_c softmax(t / T)_c * log_softmax(s / T)_c`, multiplied by `T**2`
    so that its gradient keeps the same scale whatever the temperature (Hinton et al., 2015), and averaged over the
    examples (or over the tokens where `mask` is True). This is the in-place distillation loss of BigNAS.

    It is a cross-entropy, not a KL divergence: it equals the teacher's entropy (times `T**2`) when the student
    matches the teacher, not 0. The difference is a constant in the student, so the gradient is the same as the KL's.

    Args:
        student_logits (`torch.Tensor` of shape `(B, C)` or `(B, T, C)`):
            The student's logits; `(B, T, C)` for token tasks (token classification, masked LM).
        teacher_logits (`torch.Tensor`, same shape as `student_logits`):
            The teacher's logits. Detached: no gradient reaches them.
        temperature (`float`, *optional*, defaults to 1.0):
            Softmax temperature `T > 0`; larger values soften both distributions.
        mask (`torch.Tensor` of shape `(B,)` or `(B, T)`, *optional*):
            Bool or integer tensor with the shape of the logits without their last dimension; True (nonzero) marks
            the positions that count, e.g. `labels != -100`. Without a mask every position counts. If no position
            counts the loss is 0 (still attached to the graph).

    Returns:
        `torch.Tensor`: a scalar, in float32 (or float64 for float64 inputs).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.training.distillation import soft_cross_entropy
    >>> loss = soft_cross_entropy(torch.zeros(2, 4), torch.zeros(2, 4))  # entropy of a uniform 4-way distribution
    >>> round(loss.item(), 4)
    1.3863
    ```
    """
    _check_tensor("student_logits", student_logits, (2, 3))
    _check_tensor("teacher_logits", teacher_logits, (2, 3))
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"`student_logits` and `teacher_logits` must have the same shape, got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}."
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"`temperature` must be a positive number, got {temperature!r}.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"`temperature` must be a positive, finite number, got {temperature}.")
    mask = _check_mask("mask", mask, student_logits.shape[:-1], "student_logits.shape[:-1]")

    # (B, C) -> (B, 1, C) so that both layouts share one code path with a (B, T) mask.
    student = _upcast(student_logits if student_logits.ndim == 3 else student_logits.unsqueeze(1))  # (B, T, C)
    teacher = _upcast(teacher_logits.detach() if teacher_logits.ndim == 3 else teacher_logits.detach().unsqueeze(1))
    if mask is not None and mask.ndim == 1:
        mask = mask.unsqueeze(1)  # (B, 1)
    student = _zero_padding(student, mask)  # (B, T, C)
    teacher = _zero_padding(teacher, mask)  # (B, T, C)

    log_p_student = F.log_softmax(student / temperature, dim=-1)  # (B, T, C)
    p_teacher = F.softmax(teacher / temperature, dim=-1)  # (B, T, C)
    cross_entropy = -(p_teacher * log_p_student).sum(dim=-1)  # (B, T)
    return _masked_mean(cross_entropy, mask) * temperature**2


# ----------------------------------------------------------------------------------------------------------------
# self-attention relations
def _default_num_relation_heads(student_inner: int, teacher_inner: int) -> int:
    """The largest divisor of `gcd(student_inner, teacher_inner)` that is at most 12."""
    common = math.gcd(student_inner, teacher_inner)
    return max(r for r in range(1, _MAX_DEFAULT_RELATION_HEADS + 1) if common % r == 0)


def _check_qkv(field: str, value: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(
            f"`{field}` must be a tuple (query, key, value) of the attention projections' outputs, got "
            f"{type(value).__name__}" + (f" of length {len(value)}." if isinstance(value, (tuple, list)) else ".")
        )
    for name, x in zip("qkv", value, strict=True):
        _check_tensor(f"{field}.{name}", x, (3,))
    if not value[0].shape == value[1].shape == value[2].shape:
        raise ValueError(
            f"`{field}` q, k and v must have the same shape (B, T, heads * head_size), got "
            f"{tuple(value[0].shape)}, {tuple(value[1].shape)} and {tuple(value[2].shape)}."
        )
    return value[0], value[1], value[2]


def _relation_log_probs(
    a: torch.Tensor, b: torch.Tensor, num_heads: int, key_mask: torch.Tensor | None
) -> torch.Tensor:
    """Log-softmax over keys of the scaled dot products between `num_heads` relation heads of `a` and `b`."""
    B, T, inner = a.shape
    d = inner // num_heads
    a = a.reshape(B, T, num_heads, d).transpose(1, 2)  # (B, R, T, d)
    b = b.reshape(B, T, num_heads, d).transpose(1, 2)  # (B, R, T, d)
    scores = _upcast(a @ b.transpose(-1, -2)) / math.sqrt(d)  # (B, R, T, T)
    if key_mask is not None:
        # A finite minimum rather than -inf: a row whose keys are all padding stays finite (uniform), never NaN.
        scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)  # (B, R, T, T)
    return F.log_softmax(scores, dim=-1)  # (B, R, T, T)


def attention_relation_loss(
    student: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None = None,
    num_relation_heads: int | None = None,
    relations: tuple[str, ...] = ("qk", "vv"),
) -> torch.Tensor:
    """Self-attention relation distillation (MiniLM, MiniLMv2; AutoDistil), usually of the last layer.

    For a relation `"ab"`, the `a` and `b` projections of each model are split into `R` *relation heads* of size
    `d = inner / R`, and each query position gets a distribution over the keys,
    `softmax(a_h @ b_h^T / sqrt(d))` per relation head `h`. The loss is `KL(teacher || student)` of these
    distributions, summed over keys and averaged over the real query positions of the whole batch (a token-level
    mean, so longer sequences weigh more), the relation heads, and the listed relations (a mean, so the scale does
    not depend on how many relations are used). Because `R` is chosen for the pair, not taken from either model,
    teacher and student may differ in head count, head size and inner size (MiniLMv2).

    Relations: `"qk"` is the attention distribution (MiniLM), `"vv"` the value relation (MiniLM), `"qq"` and `"kk"`
    the query and key relations (MiniLMv2 uses `("qq", "kk", "vv")`). With `R` equal to a model's own head count,
    its `"qk"` relation is exactly its attention probabilities.

    Args:
        student (`tuple[torch.Tensor, torch.Tensor, torch.Tensor]`):
            The student's query, key and value projection outputs (before the split into attention heads), each of
            shape `(B, T, inner_s)` with `inner_s = heads * head_size`.
        teacher (`tuple[torch.Tensor, torch.Tensor, torch.Tensor]`):
            The teacher's, each of shape `(B, T, inner_t)`; `B` and `T` must match the student's, `inner_t` may
            differ. Detached: no gradient reaches them.
        attention_mask (`torch.Tensor` of shape `(B, T)`, *optional*):
            The tokenizer's mask, bool or integer: 1 (True) for real tokens, 0 (False) for padding. Padding keys are
            masked out of every softmax, padding queries do not count, and values at padding positions are ignored.
            Without a mask every position is real.
        num_relation_heads (`int`, *optional*):
            `R`; must divide both `inner_s` and `inner_t`. Defaults to the largest divisor of
            `gcd(inner_s, inner_t)` that is at most 12 (BERT-base's head count): 12 for a BERT-base teacher and a
            student with a multiple of 3 heads of size 64, 8 for other head counts of size 64.
        relations (`tuple[str, ...]`, *optional*, defaults to `("qk", "vv")`):
            Distinct names among `"qk"`, `"vv"`, `"qq"`, `"kk"`; AutoDistil's default is `("qk", "vv")`.

    Returns:
        `torch.Tensor`: a scalar, in float32 (or float64 for float64 inputs); 0 if no position is real.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.training.distillation import attention_relation_loss
    >>> g = torch.Generator().manual_seed(0)
    >>> student = tuple(torch.randn(2, 5, 96, generator=g) for _ in range(3))  # 3 heads of 32
    >>> teacher = tuple(torch.randn(2, 5, 384, generator=g) for _ in range(3))  # 12 heads of 32
    >>> attention_relation_loss(student, teacher).item() > 0
    True
    >>> attention_relation_loss(teacher, teacher).item()
    0.0
    ```
    """
    s_qkv = _check_qkv("student", student)
    t_qkv = _check_qkv("teacher", teacher)
    B, T, s_inner = s_qkv[0].shape
    t_inner = t_qkv[0].shape[-1]
    if t_qkv[0].shape[:2] != (B, T):
        raise ValueError(
            f"`student` and `teacher` must have the same batch size and sequence length (B, T), got {(B, T)} and "
            f"{tuple(t_qkv[0].shape[:2])}."
        )
    mask = _check_mask("attention_mask", attention_mask, torch.Size((B, T)), "(B, T)")

    if isinstance(relations, str) or not isinstance(relations, Sequence):
        raise TypeError(f"`relations` must be a tuple of relation names such as ('qk', 'vv'), got {relations!r}.")
    unknown = [r for r in relations if r not in _RELATIONS]
    if unknown or not relations or len(set(relations)) != len(relations):
        raise ValueError(
            f"`relations` must be a non-empty tuple of distinct names from {tuple(_RELATIONS)}, got {tuple(relations)!r}."
        )

    if num_relation_heads is None:
        num_relation_heads = _default_num_relation_heads(s_inner, t_inner)
    elif isinstance(num_relation_heads, bool) or not isinstance(num_relation_heads, int):
        raise TypeError(f"`num_relation_heads` must be an int or None, got {num_relation_heads!r}.")
    elif num_relation_heads < 1 or s_inner % num_relation_heads or t_inner % num_relation_heads:
        common = math.gcd(s_inner, t_inner)
        allowed = [r for r in range(1, common + 1) if common % r == 0]
        raise ValueError(
            f"`num_relation_heads`={num_relation_heads} must divide both the student's inner size {s_inner} and the "
            f"teacher's {t_inner}; allowed: {allowed}."
        )

    s_qkv = tuple(_zero_padding(x, mask) for x in s_qkv)  # each (B, T, inner_s)
    t_qkv = tuple(_zero_padding(x.detach(), mask) for x in t_qkv)  # each (B, T, inner_t)
    total = None
    for name in relations:
        i, j = _RELATIONS[name]
        log_p_teacher = _relation_log_probs(t_qkv[i], t_qkv[j], num_relation_heads, mask)  # (B, R, T, T)
        log_p_student = _relation_log_probs(s_qkv[i], s_qkv[j], num_relation_heads, mask)  # (B, R, T, T)
        # p_t * (log p_t - log p_s); padding keys have p_t == 0 exactly, so they add nothing.
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(dim=-1)  # (B, R, T)
        loss = _masked_mean(kl.sum(dim=1), mask, per_position=num_relation_heads)
        total = loss if total is None else total + loss
    return total / len(relations)


# ----------------------------------------------------------------------------------------------------------------
# hidden states
def hidden_state_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between the student's hidden state and the first channels of the teacher's.

    In a weight-sharing supernet a subnet of hidden size `h_s` uses the first `h_s` channels of the residual stream,
    so the student is compared with `teacher_hidden[..., :h_s]`, averaged over the real tokens and the `h_s`
    channels.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, T, h_s)`): the student's (last) hidden state.
        teacher_hidden (`torch.Tensor` of shape `(B, T, h_t)`):
            The teacher's, with `h_t >= h_s` and the same `B`, `T`. Detached: no gradient reaches it.
        attention_mask (`torch.Tensor` of shape `(B, T)`, *optional*):
            Bool or integer, 1 (True) for real tokens and 0 (False) for padding, which does not count. If no token
            is real the loss is 0.

    Returns:
        `torch.Tensor`: a scalar, in float32 (or float64 for float64 inputs).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.training.distillation import hidden_state_loss
    >>> teacher = torch.arange(8.0).view(1, 2, 4)
    >>> hidden_state_loss(teacher[..., :2], teacher).item()  # the student is the teacher's first 2 channels
    0.0
    ```
    """
    _check_tensor("student_hidden", student_hidden, (3,))
    _check_tensor("teacher_hidden", teacher_hidden, (3,))
    B, T, h_s = student_hidden.shape
    h_t = teacher_hidden.shape[-1]
    if teacher_hidden.shape[:2] != (B, T):
        raise ValueError(
            f"`student_hidden` and `teacher_hidden` must have the same batch size and sequence length (B, T), got "
            f"{(B, T)} and {tuple(teacher_hidden.shape[:2])}."
        )
    if h_s > h_t:
        raise ValueError(
            f"`student_hidden` has hidden size {h_s}, larger than the teacher's {h_t}; allowed: 1 to {h_t} (the "
            "student's channels are a prefix of the teacher's)."
        )
    mask = _check_mask("attention_mask", attention_mask, torch.Size((B, T)), "(B, T)")

    student = _zero_padding(_upcast(student_hidden), mask)  # (B, T, h_s)
    teacher = _zero_padding(_upcast(teacher_hidden.detach()[..., :h_s]), mask)  # (B, T, h_s)
    squared_error = (student - teacher).pow(2).sum(dim=-1)  # (B, T)
    return _masked_mean(squared_error, mask, per_position=h_s)


def teacher_layer_map(student_layers: Sequence[int], num_supernet_layers: int, num_teacher_layers: int) -> list[int]:
    """The teacher layer each kept supernet layer is distilled from (0-based).

    Supernet layer `j` of `L_s` maps to teacher layer `(j + 1) * L_t // L_s - 1`: itself when the teacher has the
    supernet's depth (teacher-first: the supernet was initialised from the teacher, so its layer `j` was the
    teacher's layer `j`), and the teacher layer at the same relative depth otherwise (the last layer always maps to
    the teacher's last).

    Example:

    ```python
    >>> from hf_nas.training.distillation import teacher_layer_map
    >>> teacher_layer_map((1, 3, 5), num_supernet_layers=6, num_teacher_layers=6)
    [1, 3, 5]
    >>> teacher_layer_map((1, 3, 5), num_supernet_layers=6, num_teacher_layers=3)
    [0, 1, 2]
    ```
    """
    for name, value in (("num_supernet_layers", num_supernet_layers), ("num_teacher_layers", num_teacher_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    out = []
    for j in student_layers:
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < num_supernet_layers:
            raise ValueError(
                f"student layer {j!r} is out of range; allowed: 0 to {num_supernet_layers - 1} (the supernet's layers)."
            )
        out.append((j + 1) * num_teacher_layers // num_supernet_layers - 1)
    return out


def layer_hidden_state_loss(
    student_hidden_states: Sequence[torch.Tensor],
    teacher_hidden_states: Sequence[torch.Tensor],
    student_layers: Sequence[int],
    num_supernet_layers: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hidden-state distillation at the embeddings and at every kept layer (DynaBERT, TinyBERT).

    The student's embedding output is compared with the teacher's, and the output of the student's i-th kept layer
    (supernet layer `student_layers[i]`) with the output of the teacher layer [`teacher_layer_map`] gives for it,
    each by [`hidden_state_loss`] (MSE over the student's channels, a prefix of the teacher's); the result is the
    mean over these `k + 1` pairs, so its scale does not depend on the depth.

    Args:
        student_hidden_states (`Sequence[torch.Tensor]`):
            `k + 1` tensors of shape `(B, T, h_s)`: the embeddings, then each kept layer's output, as a model returns
            them with `output_hidden_states=True`.
        teacher_hidden_states (`Sequence[torch.Tensor]`):
            `L_t + 1` tensors of shape `(B, T, h_t)`, `h_t >= h_s`: the teacher's embeddings and every layer's output.
            Detached: no gradient reaches them.
        student_layers (`Sequence[int]`): the `k` supernet layers the student keeps (`SubnetConfig.layers`).
        num_supernet_layers (`int`): the supernet's depth `L_s`.
        attention_mask (`torch.Tensor` of shape `(B, T)`, *optional*): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor`: a scalar; 0 when the student computes exactly the teacher's hidden states.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.training.distillation import layer_hidden_state_loss
    >>> teacher = [torch.randn(1, 3, 4) for _ in range(4)]  # embeddings + 3 layers
    >>> student = [teacher[0], teacher[2], teacher[3]]      # keeps layers 1 and 2
    >>> layer_hidden_state_loss(student, teacher, student_layers=(1, 2), num_supernet_layers=3).item()
    0.0
    ```
    """
    for field, value in (
        ("student_hidden_states", student_hidden_states),
        ("teacher_hidden_states", teacher_hidden_states),
    ):
        if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
            raise TypeError(f"`{field}` must be a sequence of tensors (embeddings first), got {type(value).__name__}.")
    if len(student_hidden_states) != len(student_layers) + 1:
        raise ValueError(
            f"`student_hidden_states` has {len(student_hidden_states)} tensors but `student_layers` names "
            f"{len(student_layers)} layers: expected the embeddings plus one tensor per kept layer "
            f"({len(student_layers) + 1})."
        )
    num_teacher_layers = len(teacher_hidden_states) - 1
    if num_teacher_layers < 1:
        raise ValueError("`teacher_hidden_states` needs the embeddings and at least one layer's output.")
    targets = [0] + [t + 1 for t in teacher_layer_map(student_layers, num_supernet_layers, num_teacher_layers)]
    losses = [
        hidden_state_loss(student, teacher_hidden_states[t], attention_mask)
        for student, t in zip(student_hidden_states, targets, strict=True)
    ]
    return torch.stack(losses).mean()


# ----------------------------------------------------------------------------------------------------------------
# weighting
def combine_losses(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Weighted sum of the loss terms of one training step.

    Terms with weight 0 are skipped (not multiplied by 0, so a NaN there cannot leak into the sum). Weights for
    names missing from `losses` are allowed, so one weight table can serve steps that compute different terms.

    Args:
        losses (`Mapping[str, torch.Tensor]`): name -> scalar loss tensor, e.g. `{"task": ..., "kd": ...}`.
        weights (`Mapping[str, float]`): name -> non-negative, finite weight; must cover every name in `losses`.

    Returns:
        `torch.Tensor`: the scalar `sum(weights[name] * losses[name])` over the names with a nonzero weight.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.training.distillation import combine_losses
    >>> combine_losses({"task": torch.tensor(2.0), "kd": torch.tensor(4.0)}, {"task": 1.0, "kd": 0.5}).item()
    4.0
    ```
    """
    if not isinstance(losses, Mapping):
        raise TypeError(f"`losses` must be a mapping from names to scalar tensors, got {type(losses).__name__}.")
    if not isinstance(weights, Mapping):
        raise TypeError(f"`weights` must be a mapping from names to numbers, got {type(weights).__name__}.")
    if not losses:
        raise ValueError("`losses` is empty; there is nothing to combine.")
    for name, weight in weights.items():  # all of them: a negative weight is a bug even if its term is absent
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"`weights[{name!r}]` must be a number, got {weight!r}.")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"`weights[{name!r}]` must be a non-negative, finite number, got {weight}.")
    missing = [name for name in losses if name not in weights]
    if missing:
        raise ValueError(f"`losses` has no weight for {missing}; `weights` has {sorted(weights)}.")

    total = None
    for name, loss in losses.items():
        weight = weights[name]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TypeError(f"`losses[{name!r}]` must be a scalar (0-dim) tensor, got {shape}.")
        if weight == 0:
            continue
        term = loss * weight
        total = term if total is None else total + term
    if total is None:
        raise ValueError(
            f"every weight of {sorted(losses)} is 0, so the sum would not train anything; give at least one a "
            "positive weight."
        )
    return total
