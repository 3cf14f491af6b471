"""The mixed forward of the weight-entangled space (TangleNAS): one forward of the supernet mixes every choice.

Every elastic choice of a supernet is a prefix slice of one shared weight, so a mixture of the choices of one
dimension is *one* operation on a weighted superposition of prefix masks, not one forward per choice:

- per-layer heads: the concatenated head outputs (the input of `layer.head_projection()`) are scaled per head by
  `m_j = sum_k w_k * 1[j < heads_k]`; FFN width likewise on the input of `layer.neuron_projection()`;
- depth: the hidden state passed on after the last layer is `sum_d w_d * (output of chain d)`, where chain `d` runs
  the layers `space.layers_for(d)` (the first `d` under `layer_rule="first"`, where every chain is a prefix of the
  deepest one and all are read off one pass; other rules run the chains that branch off, see [`MixedForward`]);
- hidden size (when the space has several): every LayerNorm becomes the superposition of the LayerNorms over the
  first `h_k` channels (zero beyond `h_k`), and the pooled output / head input is masked per channel.

Under `layer_rule="first"` the supernet runs at full size (the largest depth and hidden size of its space) once per
forward, so memory stays that of the largest subnet. With one-hot weights the mixed forward equals the plain forward
of that subnet, under every layer rule, for text (`input_ids`) and image (`pixel_values`) models alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..mixture import check_no_mixture
from ..models.supernet import set_active_layers
from ..modules import ElasticLayerNorm
from ..search_space import SubnetConfig
from ..switchable_norms import check_no_switchable_norms
from .parameters import ArchitectureWeights, check_supernet

__all__ = ["MIXTURE_REFUSAL", "NORMS_REFUSAL", "MixedForward"]

# Why a Mixture-of-Supernets supernet cannot be searched by gradient, and what to do instead.
NORMS_REFUSAL = (
    "It superposes every choice in one forward, while switchable norms give each size budget norms of its own. Search "
    "it with SubnetSearch / `hf-nas search`, or run the gradient search on a supernet without them."
)
MIXTURE_REFUSAL = (
    "It superposes every choice in one forward on one set of weights, while a mixture supernet computes each subnet "
    "with weights of its own. Search it with SubnetSearch / `hf-nas search` (which sets each subnet), or run the "
    "gradient search on a supernet without a mixture."
)


def _prefix_indicator(choices: Sequence[int], size: int, device: torch.device) -> torch.Tensor:
    """`ind[k, j] = 1[j < choices[k]]`, shape (K, size)."""
    return (torch.arange(size, device=device)[None, :] < torch.tensor(choices, device=device)[:, None]).float()


def _replace_output(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


def _output_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of `a` and `b`."""
    n = 0
    for x, y in zip(a, b, strict=False):  # stops at the shorter one
        if x != y:
            break
        n += 1
    return n


def _scaled(x: torch.Tensor, mask: torch.Tensor, unit_size: int) -> torch.Tensor:
    """`x` scaled per unit (head or channel) of its last dimension by `mask`."""
    if unit_size > 1:
        mask = mask.repeat_interleave(unit_size)  # (units * unit_size,)
    return x * mask[: x.shape[-1]].to(x.dtype)


class MixedForward:
    """Context manager that turns the supernet's forward into the weight-entangled mixture of its search space.

    On entry the supernet runs at full size (all heads and neurons of the layers of the deepest subnet, the largest
    hidden size) and hooks are installed; every forward then mixes the choices of each dimension with `self.weights`
    (an [`ArchitectureWeights`], which may carry gradients to the architecture parameters). On exit the hooks are
    removed and the previously active subnet is restored. Set `weights` before each forward (e.g.
    `mixed.weights = arch.weights()`); the masks are rebuilt at the start of every forward, so a new graph is made
    for each. The model is called as usual: `input_ids` for text models, `pixel_values` for image models.

    Depth: each depth choice `d` runs its own *chain*, the layers `space.layers_for(d)` in order, and the hidden
    state after the last layer is `sum_d w_d * (output of chain d)`. The per-layer weights belong to chain positions
    (row `i` masks the `i`-th layer a chain runs), like the per-layer values of a `SubnetConfig`. The model's own
    forward runs the deepest chain; a chain that is a prefix of it (every chain under `layer_rule="first"`) is read
    off that run at no extra cost, and the others run their remaining layers on the shared weights from the longest
    prefix already computed (the chains form a trie, each node runs once). Under `"spread"` and `"importance"` one
    forward thus costs up to the sum of the depth choices in layer forwards instead of the largest depth; depth
    choices with weight exactly 0 are skipped when no gradient is recorded (e.g. during selection, once the depth is
    decided). With `output_hidden_states`, the branch layers' outputs are recorded after the deepest chain's.

    Args:
        model: an elastic supernet.
        weights (`ArchitectureWeights`, *optional*): the initial mixture weights.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticViTConfig, ElasticViTForImageClassification
    >>> from hf_nas.gradient import ArchitectureParameters, MixedForward
    >>> model = ElasticViTForImageClassification(ElasticViTConfig(hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=8, num_labels=2))
    >>> arch = ArchitectureParameters(model.search_space)
    >>> with MixedForward(model, arch.weights()):
    ...     loss = model(pixel_values=torch.randn(2, 3, 16, 16), labels=torch.tensor([0, 1])).loss
    >>> loss.backward()  # gradients reach the model's weights and `arch`
    >>> arch.num_attention_heads.grad.shape
    torch.Size([2, 4])
    ```
    """

    def __init__(self, model: nn.Module, weights: ArchitectureWeights | None = None):
        self.model = check_supernet(model)
        check_no_mixture(model, "The weight-entangled mixed forward (gradient search)", MIXTURE_REFUSAL)
        check_no_switchable_norms(model, "The weight-entangled mixed forward (gradient search)", NORMS_REFUSAL)
        self.space = model.search_space
        self.weights = weights
        self._handles: list[Any] = []
        self._previous: SubnetConfig | None = None
        self._masks: dict[str, torch.Tensor] = {}
        self._states: dict[tuple[int, ...], torch.Tensor] = {}  # chain prefix -> hidden state after it
        self._layer_args: tuple = ()
        self._layer_kwargs: dict[str, Any] = {}
        self._branching = False

    # -- set-up ----------------------------------------------------------------------------------------------------
    def __enter__(self) -> MixedForward:
        self._plan_chains()
        self._previous = self.model.active_subnet
        try:
            self._activate_full_size()
            self._build_indicators()
            self._install_hooks()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._masks.clear()
        self._release()
        if self._previous is not None:
            self.model.activate_subnet(self._previous)
            self._previous = None

    def _plan_chains(self) -> None:
        """The layers each depth choice runs, the main (deepest) chain and the chains that branch off it."""
        space, layers = self.space, self.model.elastic_layers()
        if space.num_supernet_layers > len(layers):
            raise ValueError(
                f"The space takes its layers from {space.num_supernet_layers} supernet layers but the supernet has "
                f"{len(layers)}."
            )
        self.layers = layers
        self.depth_choices = space.num_hidden_layers
        self.hidden_choices = space.hidden_size
        self.max_hidden = max(self.hidden_choices)
        self.max_depth = max(self.depth_choices)
        self.chains = {d: space.layers_for(d) for d in self.depth_choices}  # depth -> the layers it runs
        self.main_chain = self.chains[self.max_depth]  # the model's own layer loop runs this one
        # Chains that are not a prefix of the main chain branch off it after `_common_prefix` layers.
        self.branches = [d for d in self.depth_choices if self.chains[d] != self.main_chain[:d]]
        self.union = sorted(set().union(*self.chains.values()))
        self._main_positions = {j: i for i, j in enumerate(self.main_chain)}
        self._positions = dict(self._main_positions)  # layer index -> its position in the chain running now

    def _activate_full_size(self) -> None:
        """Every head and neuron of every layer a chain runs, at the largest hidden size: the masks do the choosing."""
        full = self.model.max_subnet()
        heads, ffn = full.num_attention_heads[0], full.intermediate_size[0]
        set_active_layers(
            self.layers, SubnetConfig.uniform(len(self.union), heads, ffn, self.max_hidden, layers=self.union)
        )
        self.model.activate_subnet(
            SubnetConfig.uniform(self.max_depth, heads, ffn, self.max_hidden, layers=self.main_chain)
        )

    def _build_indicators(self) -> None:
        device = next(self.model.parameters()).device
        first = self.layers[self.main_chain[0]]
        self.head_size = first.attention_head_size
        space = self.space
        self.head_indicator = _prefix_indicator(
            space.num_attention_heads, first.max_num_attention_heads, device
        )  # (K_a, heads)
        self.neuron_indicator = _prefix_indicator(
            space.intermediate_size, first.max_intermediate_size, device
        )  # (K_f, neurons)
        self.hidden_indicator = _prefix_indicator(self.hidden_choices, self.max_hidden, device)  # (K_h, hidden)

    def _install_hooks(self) -> None:
        model, layers = self.model, self.layers
        self._handles.append(model.register_forward_pre_hook(self._build_masks))
        for j in self.union:
            head_hook = self._scale_layer_input("heads", j, self.head_size)
            self._handles.append(layers[j].head_projection().register_forward_pre_hook(head_hook))
            self._handles.append(
                layers[j].neuron_projection().register_forward_pre_hook(self._scale_layer_input("ffn", j))
            )
        if self.branches:
            first = layers[self.main_chain[0]]
            self._handles.append(first.register_forward_pre_hook(self._capture_layer_input, with_kwargs=True))
        captured = {_common_prefix(self.chains[d], self.main_chain) for d in self.depth_choices}
        for p in sorted(captured | {self.max_depth}):
            if p > 0:
                self._handles.append(layers[self.main_chain[p - 1]].register_forward_hook(self._main_chain_hook(p)))
        if len(self.hidden_choices) > 1:
            self._install_hidden_hooks()

    def _release(self) -> None:
        """Drop the references to this forward's states and layer arguments."""
        self._states.clear()
        self._layer_args, self._layer_kwargs = (), {}

    def _install_hidden_hooks(self) -> None:
        model, hidden = self.model, self.model.max_subnet().hidden_size
        norms = [m for m in model.modules() if isinstance(m, ElasticLayerNorm) and m.max_features == hidden]
        if not norms:
            raise ValueError(
                f"Mixing several hidden sizes {list(self.hidden_choices)} needs the supernet's LayerNorms over the "
                f"hidden channels; none found in {type(model).__name__}. Narrow the space to one hidden size: "
                "model.search_space = model.search_space.narrow(hidden_size=[...])."
            )
        for norm in norms:
            self._handles.append(norm.register_forward_hook(self._mixed_layer_norm))
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is not None:
            self._handles.append(pooler.register_forward_hook(self._mask_hidden_output))
        for module in model.head_modules():
            self._handles.append(module.register_forward_pre_hook(self._scale_input("hidden")))

    # -- hooks -----------------------------------------------------------------------------------------------------
    def _build_masks(self, module: nn.Module, args: Any, kwargs: Any = None) -> None:
        if self.weights is None:
            raise ValueError("MixedForward has no `weights`: set `mixed.weights = arch.weights()` before the forward.")
        w = self.weights
        w.check(self.space)
        ind = self.head_indicator
        heads = w.num_attention_heads.to(ind) @ ind  # (L, heads): m[i, j] = sum_k w[i, k] 1[j < heads_k]
        ffn = w.intermediate_size.to(ind) @ self.neuron_indicator  # (L, neurons)
        self._masks = {f"heads.{i}": heads[i] for i in range(self.max_depth)}
        self._masks.update({f"ffn.{i}": ffn[i] for i in range(self.max_depth)})
        self._masks["hidden"] = w.hidden_size.to(ind) @ self.hidden_indicator  # (hidden,)
        self._positions = dict(self._main_positions)
        self._branching = False
        self._release()

    def _scale_input(self, key: str, unit_size: int = 1) -> Callable:
        def hook(module: nn.Module, args: tuple) -> tuple:
            return (_scaled(args[0], self._masks[key], unit_size), *args[1:])

        return hook

    def _scale_layer_input(self, kind: str, layer: int, unit_size: int = 1) -> Callable:
        """Scale the input of a projection of supernet layer `layer` by the mask of its position in the running chain."""

        def hook(module: nn.Module, args: tuple) -> tuple:
            mask = self._masks[f"{kind}.{self._positions[layer]}"]
            return (_scaled(args[0], mask, unit_size), *args[1:])

        return hook

    def _capture_layer_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Keep the input of the main chain's first layer (where branches may start) and its other arguments (the
        attention mask, ...: the same for every layer), to run the branches with."""
        if self._branching:
            return None
        self._states[()] = args[0]  # (B, T, h)
        self._layer_args, self._layer_kwargs = args[1:], kwargs
        return None

    def _main_chain_hook(self, p: int) -> Callable:
        """Forward hook of the main chain's `p`-th layer: keep its output; after the last one, mix the depths."""
        prefix = self.main_chain[:p]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if self._branching:
                return None
            self._states[prefix] = _output_tensor(output)  # (B, T, h)
            if p != self.max_depth:
                return None
            mixed = self._mix_depths()
            self._release()
            return _replace_output(output, mixed)

        return hook

    def _mix_depths(self) -> torch.Tensor:
        """`sum_d w_d * (output of chain d)`, running the branches that are not computed yet."""
        w = self.weights.num_hidden_layers
        depths = list(self.depth_choices)
        if self.branches and not (torch.is_grad_enabled() and w.requires_grad):
            # no gradient to the depth weights: a depth of weight 0 adds nothing, so its branch need not run
            keep = [d for d, wd in zip(self.depth_choices, w.tolist(), strict=True) if wd != 0]
            depths = keep or depths
        self._branching = True
        try:
            for d in depths:
                if d in self.branches:
                    self._run_chain(self.chains[d])
        finally:
            self._branching = False
            self._positions = dict(self._main_positions)
        index = torch.tensor([self.depth_choices.index(d) for d in depths], device=w.device)
        states = torch.stack([self._states[self.chains[d]] for d in depths])  # (K_d, B, T, h)
        return torch.einsum("k,k...->...", w[index].to(states.dtype), states)  # (B, T, h)

    def _run_chain(self, chain: tuple[int, ...]) -> None:
        """Run `chain` from its longest prefix already computed, keeping the state after each of its layers."""
        start = max(p for p in range(len(chain) + 1) if chain[:p] in self._states)
        state = self._states[chain[:start]]  # (B, T, h)
        for i in range(start, len(chain)):
            j = chain[i]
            self._positions[j] = i
            state = _output_tensor(self.layers[j](state, *self._layer_args, **self._layer_kwargs))  # (B, T, h)
            self._states[chain[: i + 1]] = state

    def _mask_hidden_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        x = _output_tensor(output)  # (B, h)
        return _replace_output(output, x * self._masks["hidden"][: x.shape[-1]].to(x.dtype))

    def _mixed_layer_norm(self, module: ElasticLayerNorm, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """sum_k w_k * pad(LayerNorm over the first h_k channels), as one expression of (B, T, hidden) tensors."""
        x = args[0]  # (..., H)
        w = self.weights.hidden_size.to(x.dtype)  # (K,)
        ind = self.hidden_indicator.to(x.dtype)  # (K, H)
        means, rstds = [], []
        for h in self.hidden_choices:
            prefix = x[..., :h]
            means.append(prefix.mean(-1))
            rstds.append(torch.rsqrt(prefix.var(-1, unbiased=False) + module.eps))
        mean = torch.stack(means, -1)  # (..., K)
        rstd = torch.stack(rstds, -1)  # (..., K)
        scale = (w * rstd) @ ind  # (..., H): sum_k w_k rstd_k 1[c < h_k]
        shift = (w * rstd * mean) @ ind  # (..., H)
        out = x * scale - shift
        if module.weight is not None:
            out = out * module.weight[: x.shape[-1]]
        if module.bias is not None:
            out = out + module.bias[: x.shape[-1]] * (w @ ind)
        return out
