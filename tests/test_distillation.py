"""Distillation losses: values equal straightforward reference computations, gradients reach only the student,
padding never matters, and bad arguments raise errors that name them."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from hf_nas.training.distillation import (
    _default_num_relation_heads,
    attention_relation_loss,
    combine_losses,
    hidden_state_loss,
    soft_cross_entropy,
)


def randn(*shape: int, seed: int = 0, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype) * scale


def qkv(B: int, T: int, inner: int, seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    return tuple(randn(B, T, inner, seed=seed + i, dtype=dtype) for i in range(3))


def padding_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) bool


def fill_padding(x: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    return x.masked_fill(~mask.unsqueeze(-1), value)


# ----------------------------------------------------------------------------------------------------------------
# soft_cross_entropy
def reference_soft_ce(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """Rows of (N, C) logits, one example each, done the long way."""
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        p_t = torch.exp(t / T) / torch.exp(t / T).sum()
        log_p_s = s / T - torch.log(torch.exp(s / T).sum())
        total = total - (p_t * log_p_s).sum()
    return total / len(student) * T**2


@pytest.mark.parametrize("shape", [(4, 5), (3, 6, 5)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_soft_ce_matches_manual_computation(shape, temperature):
    s, t = randn(*shape, seed=0, dtype=torch.float64), randn(*shape, seed=1, dtype=torch.float64)
    loss = soft_cross_entropy(s, t, temperature=temperature)
    expected = reference_soft_ce(s.reshape(-1, shape[-1]), t.reshape(-1, shape[-1]), temperature)
    torch.testing.assert_close(loss, expected)
    assert loss.ndim == 0


def test_soft_ce_equals_teacher_entropy_not_zero_for_equal_logits():
    t = randn(4, 5, seed=0)
    p = t.softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean()
    torch.testing.assert_close(soft_cross_entropy(t, t), entropy)
    assert soft_cross_entropy(t, t).item() > 0


def test_soft_ce_gradient_matches_analytic():
    T, N = 2.0, 6
    s = randn(2, 3, 5, seed=0, dtype=torch.float64).requires_grad_()
    t = randn(2, 3, 5, seed=1, dtype=torch.float64).requires_grad_()
    soft_cross_entropy(s, t, temperature=T).backward()
    # d/ds [T^2 * mean CE(softmax(t/T), log_softmax(s/T))] = T * (softmax(s/T) - softmax(t/T)) / N
    expected = T * ((s / T).softmax(-1) - (t / T).softmax(-1)) / N
    torch.testing.assert_close(s.grad, expected.detach())
    assert t.grad is None  # the teacher is a constant


def test_soft_ce_temperature_scaling():
    s, t = randn(4, 7, seed=0, dtype=torch.float64), randn(4, 7, seed=1, dtype=torch.float64)
    for T in (0.5, 2.0, 4.0):
        torch.testing.assert_close(soft_cross_entropy(s, t, T), T**2 * soft_cross_entropy(s / T, t / T, 1.0))
    # a hotter teacher is softer: the T=1 and T=4 losses differ
    assert not torch.isclose(soft_cross_entropy(s, t, 1.0), soft_cross_entropy(s, t, 4.0))


def test_soft_ce_mask_excludes_positions_even_with_garbage():
    s = randn(2, 4, 5, seed=0).requires_grad_()
    t = randn(2, 4, 5, seed=1)
    labels = torch.tensor([[1, -100, 2, -100], [-100, 0, 0, 3]])
    mask = labels != -100
    expected = soft_cross_entropy(s[mask], t[mask])  # (N, C): only the kept positions
    torch.testing.assert_close(soft_cross_entropy(s, t, mask=mask), expected)
    torch.testing.assert_close(soft_cross_entropy(s, t, mask=mask.long()), expected)

    garbage_s = fill_padding(s.detach(), mask, float("nan")).requires_grad_()
    garbage_t = fill_padding(t, mask, 1e30)
    loss = soft_cross_entropy(garbage_s, garbage_t, mask=mask)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(garbage_s.grad).all()
    assert (garbage_s.grad[~mask] == 0).all() and (garbage_s.grad[mask] != 0).any()


def test_soft_ce_example_mask_and_empty_mask():
    s, t = randn(4, 5, seed=0).requires_grad_(), randn(4, 5, seed=1)
    keep = torch.tensor([True, False, True, False])
    torch.testing.assert_close(soft_cross_entropy(s, t, mask=keep), soft_cross_entropy(s[keep], t[keep]))
    torch.testing.assert_close(
        soft_cross_entropy(s, t, mask=torch.ones(4, dtype=torch.bool)), soft_cross_entropy(s, t)
    )
    empty = soft_cross_entropy(s, t, mask=torch.zeros(4, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()  # still attached to the graph
    assert (s.grad == 0).all()


def test_soft_ce_low_precision_inputs_give_float32():
    s, t = randn(3, 5, seed=0), randn(3, 5, seed=1)
    loss = soft_cross_entropy(s.bfloat16(), t.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, soft_cross_entropy(s.bfloat16().float(), t.bfloat16().float()))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"student_logits": randn(4, 5), "teacher_logits": randn(4, 6)}, ValueError, "same shape"),
        ({"student_logits": randn(4, 5), "teacher_logits": randn(1, 4, 5)}, ValueError, "same shape"),
        ({"student_logits": randn(5), "teacher_logits": randn(5)}, ValueError, "2 or 3 dimensions"),
        ({"student_logits": randn(1, 2, 3, 4), "teacher_logits": randn(1, 2, 3, 4)}, ValueError, "2 or 3 dimensions"),
        ({"student_logits": torch.ones(2, 3, dtype=torch.long), "teacher_logits": randn(2, 3)}, TypeError, "floating"),
        ({"student_logits": [[0.0]], "teacher_logits": randn(1, 1)}, TypeError, "student_logits"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": math.inf}, ValueError, "temperature"),
        ({"temperature": math.nan}, ValueError, "temperature"),
        ({"temperature": True}, TypeError, "temperature"),
        ({"temperature": "2"}, TypeError, "temperature"),
        ({"mask": torch.ones(4, 5, dtype=torch.bool)}, ValueError, r"mask.*\(4,\)"),
        ({"mask": torch.ones(4)}, TypeError, "additive"),
        ({"mask": [1, 1, 1, 1]}, TypeError, "mask"),
    ],
)
def test_soft_ce_bad_arguments_raise(kwargs, error, match):
    arguments = {"student_logits": randn(4, 5, seed=0), "teacher_logits": randn(4, 5, seed=1), **kwargs}
    with pytest.raises(error, match=match):
        soft_cross_entropy(**arguments)


# ----------------------------------------------------------------------------------------------------------------
# attention_relation_loss
def reference_relation_loss(student, teacher, mask, R, relations):
    """Per example, per relation head, per real query row, done the long way in float64."""
    index = {"q": 0, "k": 1, "v": 2}
    B, T, _ = student[0].shape
    mask = torch.ones(B, T, dtype=torch.bool) if mask is None else mask
    per_relation = []
    for name in relations:
        total, count = 0.0, 0
        for b in range(B):
            real = mask[b].nonzero().flatten()
            for h in range(R):
                dists = []
                for x in (teacher, student):
                    d = x[0].shape[-1] // R
                    a = x[index[name[0]]][b, real, h * d : (h + 1) * d].double()  # (n, d)
                    c = x[index[name[1]]][b, real, h * d : (h + 1) * d].double()  # (n, d)
                    dists.append(torch.softmax(a @ c.T / math.sqrt(d), dim=-1))  # (n, n) over real keys
                p_t, p_s = dists
                total = total + (p_t * (p_t.log() - p_s.log())).sum()
                count += len(real)
        per_relation.append(total / count)
    return sum(per_relation) / len(per_relation)


@pytest.mark.parametrize(
    ("s_inner", "t_inner", "R", "relations"),
    [
        (32, 32, 4, ("qk", "vv")),  # same shape; R = real heads, so "qk" is the attention distribution
        (96, 384, 12, ("qk", "vv")),  # 3 heads x 32 vs 12 heads x 32
        (120, 384, 12, ("qq", "kk", "vv")),  # 3 heads x 40 vs 12 heads x 32: different head sizes
        (96, 384, 3, ("kk",)),
    ],
)
def test_attention_relation_matches_reference(s_inner, t_inner, R, relations):
    mask = padding_mask([6, 3], 6)
    student, teacher = qkv(2, 6, s_inner, seed=0), qkv(2, 6, t_inner, seed=10)
    loss = attention_relation_loss(student, teacher, mask, num_relation_heads=R, relations=relations)
    expected = reference_relation_loss(student, teacher, mask, R, relations)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert loss.ndim == 0 and loss.item() > 0


def test_attention_relation_qk_is_the_attention_distribution_kl():
    B, T, nh, hs = 2, 5, 4, 8
    (sq, sk, sv), (tq, tk, tv) = qkv(B, T, nh * hs, seed=0), qkv(B, T, nh * hs, seed=10)

    def attention_probs(q, k):
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        return (q @ k.transpose(-1, -2) / math.sqrt(hs)).softmax(-1)  # (B, nh, T, T)

    p_s, p_t = attention_probs(sq, sk), attention_probs(tq, tk)
    expected = (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    loss = attention_relation_loss((sq, sk, sv), (tq, tk, tv), num_relation_heads=nh, relations=("qk",))
    torch.testing.assert_close(loss, expected)


def test_attention_relation_zero_for_identical_inputs_and_models():
    mask = padding_mask([7, 4, 1], 7)
    x = qkv(3, 7, 48, seed=0)
    assert attention_relation_loss(x, x).item() < 1e-7
    assert attention_relation_loss(x, x, mask, relations=("qk", "vv", "qq", "kk")).item() < 1e-7

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 32, generator=g)
    projections = torch.nn.ModuleList(torch.nn.Linear(32, 48) for _ in range(3))
    twin = copy.deepcopy(projections)
    student = tuple(p(hidden) for p in projections)
    teacher = tuple(p(hidden) for p in twin)
    loss = attention_relation_loss(student, teacher, mask)
    assert loss.item() < 1e-7
    loss.backward()  # a zero loss still backpropagates


def test_attention_relation_positive_for_different_inputs():
    x, y = qkv(2, 5, 32, seed=0), qkv(2, 5, 32, seed=10)
    assert attention_relation_loss(x, y).item() > 1e-3
    for relation in ("qk", "vv", "qq", "kk"):
        assert attention_relation_loss(x, y, relations=(relation,)).item() > 1e-3


def test_attention_relation_across_sizes_and_default_heads():
    mask = padding_mask([5, 2], 5)
    for s_inner, t_inner in [(96, 384), (120, 384), (384, 96)]:
        student, teacher = qkv(2, 5, s_inner, seed=0), qkv(2, 5, t_inner, seed=10)
        loss = attention_relation_loss(student, teacher, mask)
        assert torch.isfinite(loss) and loss.item() > 0
        R = _default_num_relation_heads(s_inner, t_inner)
        torch.testing.assert_close(loss, attention_relation_loss(student, teacher, mask, num_relation_heads=R))


@pytest.mark.parametrize(
    ("s_inner", "t_inner", "expected"),
    [
        (768, 768, 12),
        (384, 768, 12),
        (96, 384, 12),
        (120, 384, 12),
        (320, 768, 8),
        (32, 32, 8),
        (7, 5, 1),
        (30, 20, 10),
    ],
)
def test_default_num_relation_heads(s_inner, t_inner, expected):
    assert _default_num_relation_heads(s_inner, t_inner) == expected


def test_attention_relation_ignores_padding_values():
    lengths, T = [6, 4, 1], 6
    mask = padding_mask(lengths, T)
    student, teacher = qkv(3, T, 32, seed=0), qkv(3, T, 64, seed=10)
    clean = attention_relation_loss(student, teacher, mask)
    for garbage in (1e4, -3e3, float("nan"), float("inf")):
        noisy_student = tuple(fill_padding(x, mask, garbage) for x in student)
        noisy_teacher = tuple(fill_padding(x, mask, -garbage) for x in teacher)
        torch.testing.assert_close(attention_relation_loss(noisy_student, noisy_teacher, mask), clean)

    # the padded batch is the token-weighted mean of each sequence on its own, without padding
    per_sequence = [
        attention_relation_loss(tuple(x[b : b + 1, :n] for x in student), tuple(x[b : b + 1, :n] for x in teacher))
        for b, n in enumerate(lengths)
    ]
    expected = sum(loss * n for loss, n in zip(per_sequence, lengths, strict=True)) / sum(lengths)
    torch.testing.assert_close(clean, expected)


def test_attention_relation_all_ones_mask_equals_no_mask():
    student, teacher = qkv(2, 5, 32, seed=0), qkv(2, 5, 64, seed=10)
    no_mask = attention_relation_loss(student, teacher)
    torch.testing.assert_close(attention_relation_loss(student, teacher, torch.ones(2, 5, dtype=torch.long)), no_mask)
    torch.testing.assert_close(attention_relation_loss(student, teacher, torch.ones(2, 5, dtype=torch.bool)), no_mask)


def test_attention_relation_all_padding_gives_zero_without_nan():
    student = tuple(x.requires_grad_() for x in qkv(2, 4, 32, seed=0))
    loss = attention_relation_loss(student, qkv(2, 4, 32, seed=10), torch.zeros(2, 4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert all((x.grad == 0).all() for x in student)


def test_attention_relation_gradient_reaches_only_the_student():
    mask = padding_mask([5, 3], 5)
    student = tuple(x.requires_grad_() for x in qkv(2, 5, 32, seed=0))
    teacher = tuple(x.requires_grad_() for x in qkv(2, 5, 64, seed=10))
    attention_relation_loss(student, teacher, mask, relations=("qk", "vv")).backward()
    for x in student:
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert (x.grad[mask] != 0).any()
        assert (x.grad[~mask] == 0).all()  # padding positions get no gradient
    assert all(x.grad is None for x in teacher)


def test_attention_relation_gradcheck():
    mask = padding_mask([4, 2], 4)
    student = tuple(x.requires_grad_() for x in qkv(2, 4, 6, seed=0, dtype=torch.float64))
    teacher = qkv(2, 4, 9, seed=10, dtype=torch.float64)

    def f(q, k, v):
        return attention_relation_loss((q, k, v), teacher, mask, relations=("qk", "vv", "qq"))

    assert torch.autograd.gradcheck(f, student)


def test_attention_relation_relations_are_averaged():
    student, teacher = qkv(2, 5, 32, seed=0), qkv(2, 5, 32, seed=10)
    both = attention_relation_loss(student, teacher, relations=("qk", "vv"))
    qk = attention_relation_loss(student, teacher, relations=("qk",))
    vv = attention_relation_loss(student, teacher, relations=("vv",))
    torch.testing.assert_close(both, (qk + vv) / 2)


def test_attention_relation_low_precision_inputs_give_float32():
    student, teacher = qkv(2, 5, 32, seed=0), qkv(2, 5, 32, seed=10)
    loss = attention_relation_loss(tuple(x.bfloat16() for x in student), tuple(x.bfloat16() for x in teacher))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_attention_relation_bad_heads_error_names_sizes_and_divisors():
    student, teacher = qkv(2, 5, 96, seed=0), qkv(2, 5, 384, seed=10)
    with pytest.raises(ValueError, match=r"num_relation_heads`=5.*96.*384.*allowed: \[1, 2, 3, 4, 6, 8, 12"):
        attention_relation_loss(student, teacher, num_relation_heads=5)
    with pytest.raises(ValueError, match="num_relation_heads"):
        attention_relation_loss(student, teacher, num_relation_heads=0)
    with pytest.raises(TypeError, match="num_relation_heads"):
        attention_relation_loss(student, teacher, num_relation_heads=4.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"relations": ("qk", "vk")}, ValueError, r"relations.*'qk', 'vv', 'qq', 'kk'"),
        ({"relations": ()}, ValueError, "non-empty"),
        ({"relations": ("vv", "vv")}, ValueError, "distinct"),
        ({"relations": "qk"}, TypeError, "relations"),
        ({"teacher": qkv(3, 5, 32, seed=1)}, ValueError, r"\(B, T\)"),
        ({"teacher": qkv(2, 6, 32, seed=1)}, ValueError, r"\(B, T\)"),
        ({"student": qkv(2, 5, 32, seed=1)[:2]}, TypeError, "length 2"),
        ({"student": randn(2, 5, 32)}, TypeError, "tuple"),
        ({"student": (randn(2, 5, 32), randn(2, 5, 32), randn(2, 5, 16))}, ValueError, "same shape"),
        ({"student": (randn(2, 5, 32), randn(2, 5, 32), randn(10, 32))}, ValueError, r"student\.v.*3 dimensions"),
        ({"attention_mask": torch.ones(2, 6, dtype=torch.long)}, ValueError, "attention_mask"),
        ({"attention_mask": torch.ones(2, 5)}, TypeError, "additive"),
    ],
)
def test_attention_relation_bad_arguments_raise(kwargs, error, match):
    arguments = {"student": qkv(2, 5, 32, seed=0), "teacher": qkv(2, 5, 64, seed=10), **kwargs}
    with pytest.raises(error, match=match):
        attention_relation_loss(**arguments)


# ----------------------------------------------------------------------------------------------------------------
# hidden_state_loss
def test_hidden_state_loss_values():
    teacher = randn(2, 5, 16, seed=0)
    assert hidden_state_loss(teacher, teacher).item() == 0.0
    assert hidden_state_loss(teacher[..., :8], teacher).item() == 0.0  # the student is a prefix of the teacher
    assert hidden_state_loss(teacher[..., 8:], teacher).item() > 0  # a suffix is not
    student = randn(2, 5, 8, seed=1)
    torch.testing.assert_close(hidden_state_loss(student, teacher), F.mse_loss(student, teacher[..., :8]))


def test_hidden_state_loss_mask_and_gradient():
    mask = padding_mask([5, 2], 5)
    student = randn(2, 5, 8, seed=1).requires_grad_()
    teacher = randn(2, 5, 16, seed=0).requires_grad_()
    expected = F.mse_loss(student[mask], teacher[..., :8][mask])
    loss = hidden_state_loss(student, teacher, mask.long())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.grad is None
    assert (student.grad[~mask] == 0).all() and (student.grad[mask] != 0).all()

    garbage = hidden_state_loss(
        fill_padding(student.detach(), mask, float("nan")), fill_padding(teacher, mask, 1e30), mask
    )
    torch.testing.assert_close(garbage, expected.detach())
    torch.testing.assert_close(
        hidden_state_loss(student, teacher, torch.ones(2, 5, dtype=torch.bool)), F.mse_loss(student, teacher[..., :8])
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"student_hidden": randn(2, 5, 32)}, ValueError, "hidden size 32.*teacher's 16.*allowed: 1 to 16"),
        ({"student_hidden": randn(2, 4, 8)}, ValueError, r"\(B, T\)"),
        ({"student_hidden": randn(10, 8)}, ValueError, "student_hidden.*3 dimensions"),
        ({"teacher_hidden": torch.ones(2, 5, 16, dtype=torch.long)}, TypeError, "teacher_hidden.*floating"),
        ({"attention_mask": torch.ones(5, 2, dtype=torch.bool)}, ValueError, "attention_mask"),
    ],
)
def test_hidden_state_loss_bad_arguments_raise(kwargs, error, match):
    arguments = {"student_hidden": randn(2, 5, 8, seed=1), "teacher_hidden": randn(2, 5, 16, seed=0), **kwargs}
    with pytest.raises(error, match=match):
        hidden_state_loss(**arguments)


# ----------------------------------------------------------------------------------------------------------------
# combine_losses
def test_combine_losses_weighted_sum_and_gradient():
    x = torch.tensor(3.0, requires_grad=True)
    losses = {"task": x * 2, "kd": x**2, "attention": torch.tensor(float("nan"))}
    total = combine_losses(losses, {"task": 1.0, "kd": 0.5, "attention": 0.0, "hidden": 2.0})
    torch.testing.assert_close(total, torch.tensor(6.0 + 4.5))  # the zero-weight NaN is skipped, not multiplied
    total.backward()
    torch.testing.assert_close(x.grad, torch.tensor(2.0 + 3.0))


@pytest.mark.parametrize(
    ("losses", "weights", "error", "match"),
    [
        ({"task": torch.tensor(1.0)}, {"task": -1.0}, ValueError, r"weights\['task'\].*non-negative"),
        ({"task": torch.tensor(1.0)}, {"task": 1.0, "kd": -0.5}, ValueError, r"weights\['kd'\]"),
        ({"task": torch.tensor(1.0)}, {"task": math.inf}, ValueError, "finite"),
        ({"task": torch.tensor(1.0)}, {"task": True}, TypeError, r"weights\['task'\]"),
        ({"task": torch.tensor(1.0), "kd": torch.tensor(1.0)}, {"task": 1.0}, ValueError, r"no weight for \['kd'\]"),
        ({"task": torch.tensor(1.0)}, {"task": 0.0}, ValueError, "every weight"),
        ({}, {"task": 1.0}, ValueError, "empty"),
        ({"task": torch.ones(2)}, {"task": 1.0}, TypeError, r"losses\['task'\].*scalar"),
        ({"task": 1.0}, {"task": 1.0}, TypeError, r"losses\['task'\]"),
        ([("task", torch.tensor(1.0))], {"task": 1.0}, TypeError, "losses"),
    ],
)
def test_combine_losses_bad_arguments_raise(losses, weights, error, match):
    with pytest.raises(error, match=match):
        combine_losses(losses, weights)
