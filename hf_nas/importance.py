"""Importance reordering ("network rewiring", DynaBERT): put the most important heads and FFN neurons first.

Layers are ranked too ([`rank_layers`], for the search space's `layer_rule="importance"`): a layer's importance is
the increase of the loss when the full model runs without it.

The importance of a head (or neuron) is the accumulated magnitude of the loss gradient with respect to a mask
multiplying its output (Michel et al., 2019; DynaBERT section 3.1), measured at full size on a few batches. Each
layer's heads and neurons are then permuted in place, together with the rows and columns that read them, so the
full model computes exactly the same function while slicing a prefix keeps the most important units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

__all__ = ["ImportanceScores", "compute_importance", "rank_layers", "reorder_by_importance"]


@dataclass
class ImportanceScores:
    """Per-layer importance: `heads[i]` has shape `(num_attention_heads,)`, `neurons[i]` `(intermediate_size,)`."""

    heads: list[torch.Tensor]
    neurons: list[torch.Tensor]


def _default_loss(outputs: Any) -> torch.Tensor:
    loss = getattr(outputs, "loss", None)
    if loss is not None:
        return loss
    # No labels (e.g. a bare encoder): the energy of the main output stands in for a task loss.
    return 0.5 * outputs[0].float().pow(2).mean()


def compute_importance(
    model: PreTrainedModel,
    batches: Iterable[Mapping[str, torch.Tensor]],
    num_batches: int | None = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    show_progress: bool = True,
) -> ImportanceScores:
    """Measure head and neuron importance of the full supernet on `batches` (dicts of model inputs).

    Args:
        model: an elastic model.
        batches: an iterable of input dicts (e.g. a `DataLoader`); include `labels` to use the task loss.
        num_batches: stop after this many batches (default: all).
        loss_fn: maps the model outputs to a scalar; default: `outputs.loss`, or half the mean squared main output
            when the batches carry no labels.
        show_progress: show a progress bar.
    """
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"`num_batches` must be a positive int or None, got {num_batches!r}.")
    loss_fn = loss_fn or _default_loss
    layers = model.elastic_layers()
    device = next(model.parameters()).device
    head_masks = [torch.ones(layer.max_num_attention_heads, device=device, requires_grad=True) for layer in layers]
    neuron_masks = [torch.ones(layer.max_intermediate_size, device=device, requires_grad=True) for layer in layers]
    heads = [torch.zeros(m.shape, device=device) for m in head_masks]
    neurons = [torch.zeros(m.shape, device=device) for m in neuron_masks]

    hooks = []
    for layer, head_mask, neuron_mask in zip(layers, head_masks, neuron_masks, strict=True):
        hooks.append(
            layer.head_projection().register_forward_pre_hook(_mask_hook(head_mask, layer.attention_head_size))
        )
        hooks.append(layer.neuron_projection().register_forward_pre_hook(_mask_hook(neuron_mask, 1)))

    was_training, previous = model.training, model.active_subnet
    model.eval()  # no dropout: the scores measure the function the supernet computes
    model.reset_supernet()
    params_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    seen = 0
    try:
        iterator = islice(batches, num_batches) if num_batches is not None else batches
        for batch in tqdm(iterator, total=num_batches, desc="importance", disable=not show_progress):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            loss = loss_fn(model(**batch))
            grads = torch.autograd.grad(loss, head_masks + neuron_masks)
            for acc, g in zip(heads + neurons, grads, strict=True):
                acc += g.abs()
            seen += 1
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in zip(model.parameters(), params_grad, strict=True):
            p.requires_grad_(flag)
        model.activate_subnet(previous)
        model.train(was_training)
    if seen == 0:
        raise ValueError("`batches` is empty: importance needs at least one batch of inputs.")
    return ImportanceScores(heads=[h.cpu() for h in heads], neurons=[n.cpu() for n in neurons])


def _mask_hook(mask: torch.Tensor, unit_size: int) -> Callable:
    """A forward pre-hook scaling the input of a projection (heads or neurons, at full size) by `mask`."""

    def hook(module, args):
        scale = mask.repeat_interleave(unit_size) if unit_size > 1 else mask  # (units * unit_size,)
        return (args[0] * scale, *args[1:])

    return hook


@torch.no_grad()
def reorder_by_importance(
    model: PreTrainedModel,
    batches: Iterable[Mapping[str, torch.Tensor]],
    num_batches: int | None = 8,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    show_progress: bool = True,
) -> ImportanceScores:
    """Permute every layer's heads and FFN neurons so the most important come first; returns the scores in the
    new order (each layer's scores are then sorted in descending order, unless all layers share one head order, as
    with BEiT's shared relative position bias, when heads are ranked by their importance summed over layers). The
    full model's outputs are unchanged.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, reorder_by_importance
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> model = ElasticBertForSequenceClassification(config).eval()
    >>> batches = [{"input_ids": torch.randint(0, 99, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}] * 2
    >>> before = model(**batches[0]).logits
    >>> scores = reorder_by_importance(model, batches, num_batches=2)
    >>> [tuple(h.shape) for h in scores.heads], torch.allclose(model(**batches[0]).logits, before, atol=1e-5)
    ([(4,), (4,)], True)
    >>> small = model.extract_subnet(model.search_space.smallest())  # keeps the most important units
    ```
    """
    with torch.enable_grad():
        scores = compute_importance(model, batches, num_batches, loss_fn, show_progress)
    shared_order = None
    if model.shares_head_order():
        # One head order for all layers (they share per-head parameters): rank by the summed importance.
        shared_order = torch.argsort(torch.stack(scores.heads).sum(0), descending=True, stable=True)
        model.permute_shared_heads(shared_order)
    for layer, head_scores, neuron_scores in zip(model.elastic_layers(), scores.heads, scores.neurons, strict=True):
        head_order = torch.argsort(head_scores, descending=True, stable=True) if shared_order is None else shared_order
        neuron_order = torch.argsort(neuron_scores, descending=True, stable=True)
        layer.permute_heads(head_order)
        layer.permute_neurons(neuron_order)
        head_scores.copy_(head_scores[head_order])
        neuron_scores.copy_(neuron_scores[neuron_order])
    return scores


@torch.no_grad()
def rank_layers(
    model: PreTrainedModel,
    batches: Iterable[Mapping[str, torch.Tensor]],
    num_batches: int | None = 8,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    show_progress: bool = True,
) -> tuple[list[int], list[float]]:
    """Rank the supernet's layers by how much the loss rises when the full model skips each one alone.

    Returns `(order, increases)`: the layer indices from most to least important, and the mean loss increase of
    each layer (indexed by layer). Use the order as `SearchSpace(layer_rule="importance", layer_order=order)`: a subnet
    of depth k then keeps the k most important layers. Measured in eval mode at full width, on the same batches for
    every layer; the model's active subnet and mode are restored.

    Example:

    ```python
    >>> import dataclasses
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, rank_layers
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> batches = [{"input_ids": torch.randint(0, 99, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}] * 2
    >>> order, increases = rank_layers(model, batches, num_batches=2)
    >>> sorted(order), len(increases)
    ([0, 1], 2)
    >>> model.search_space = dataclasses.replace(model.search_space, layer_rule="importance", layer_order=order)
    >>> model.search_space.smallest().layers == (order[0],)
    True
    ```
    """
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"`num_batches` must be a positive int or None, got {num_batches!r}.")
    loss_fn = loss_fn or _default_loss
    full = model.max_subnet()
    num_layers = full.num_hidden_layers
    if num_layers < 2:
        raise ValueError("Ranking layers needs a supernet with at least 2 layers.")
    without = [
        dataclasses.replace(
            full,
            num_hidden_layers=num_layers - 1,
            num_attention_heads=full.num_attention_heads[1:],
            intermediate_size=full.intermediate_size[1:],
            layers=tuple(i for i in range(num_layers) if i != j),
        )
        for j in range(num_layers)
    ]
    device = next(model.parameters()).device
    was_training, previous = model.training, model.active_subnet
    model.eval()
    totals = [0.0] * (num_layers + 1)  # index num_layers: the full model
    seen = 0
    try:
        iterator = islice(batches, num_batches) if num_batches is not None else batches
        for batch in tqdm(iterator, total=num_batches, desc="layer importance", disable=not show_progress):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            for i, subnet in enumerate([*without, full]):
                # Subnets outside the search space on purpose (depth L-1 need not be a choice): no validation.
                model.activate_subnet(subnet)
                totals[i] += float(loss_fn(model(**batch)))
            seen += 1
    finally:
        model.activate_subnet(previous)
        model.train(was_training)
    if seen == 0:
        raise ValueError("`batches` is empty: ranking layers needs at least one batch of inputs.")
    increases = [(totals[j] - totals[num_layers]) / seen for j in range(num_layers)]
    order = sorted(range(num_layers), key=lambda j: (-increases[j], j))
    return order, increases
