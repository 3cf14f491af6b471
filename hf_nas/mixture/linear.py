"""`MixtureElasticLinear`: an elastic linear layer whose weight is a mixture of experts routed by the architecture."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from ..modules import ElasticLinear
from .config import MixtureConfig
from .router import Router, get_router_class

__all__ = ["MixtureElasticLinear"]


class MixtureElasticLinear(ElasticLinear):
    """[`ElasticLinear`] whose weight depends on the active subnet: `W(a) = sum_i alpha_i(a) * E_i`, then sliced to the
    active shape as usual (only the active slice is mixed).

    Parameters: `weight` and `bias` (vanilla names and shapes) are expert 0, so a vanilla or plain supernet checkpoint
    loads into it without key mapping; `expert_weights` `(num_experts - 1, out, in)` and `expert_biases`
    `(num_experts - 1, out)` are the other experts; `router` maps the architecture encoding to `alpha` (see
    [`Router`]). The encoding of the active subnet is the non-persistent buffer `architecture`, set by the supernet
    on every subnet change ([`set_architecture`]).

    When the mixture is computed:
    - in training mode (and whenever autograd records a graph through the mixture's tensors), at every forward, so that
      gradients reach the experts and the router;
    - otherwise (eval mode under `torch.no_grad` / `torch.inference_mode`, or with frozen parameters), once per subnet:
      when the subnet is set, or at the first forward after that, and cached until the subnet, the active sizes or any
      of the tensors it is made of change (an optimizer step, `load_state_dict`, a move to another device).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.mixture import MixtureConfig, MixtureElasticLinear
    >>> layer = MixtureElasticLinear(8, 4, mixture=MixtureConfig(mode="neuron", num_experts=3), encoding_size=6)
    >>> layer.expert_weights.shape, layer.router(layer.architecture).shape
    (torch.Size([2, 4, 8]), torch.Size([4, 3]))
    >>> layer.set_active(in_features=6, out_features=2)
    >>> layer(torch.randn(3, 6)).shape
    torch.Size([3, 2])
    >>> type(layer.to_static()).__name__  # the mixture of the active encoding, as a plain layer
    'Linear'
    ```
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        mixture: MixtureConfig,
        encoding_size: int,
        size_range: tuple[float, float] | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if not isinstance(mixture, MixtureConfig) or not mixture.enabled:
            raise ValueError(
                f"MixtureElasticLinear needs an enabled MixtureConfig (mode layer or neuron), got {mixture!r}."
            )
        factory = {"device": device, "dtype": dtype}
        self.num_experts = mixture.num_experts
        self.expert_weights = nn.Parameter(torch.empty(mixture.num_experts - 1, out_features, in_features, **factory))
        if bias:
            self.expert_biases = nn.Parameter(torch.empty(mixture.num_experts - 1, out_features, **factory))
        else:
            self.register_parameter("expert_biases", None)
        if mixture.router_init == "size" and size_range is None:
            raise ValueError(
                "MixtureConfig(router_init='size') needs `size_range`: the size_score of the smallest and the largest "
                "subnet (attach_mixture computes it from the supernet's search space)."
            )
        router_class = get_router_class(mixture.mode)
        self.router: Router = router_class(
            encoding_size,
            mixture.router_hidden_size,
            mixture.num_experts,
            out_features,
            mixture.router_init_std,
            size_range=size_range if mixture.router_init == "size" else None,
        ).to(**{k: v for k, v in factory.items() if v is not None})
        self.architecture = nn.Buffer(torch.ones(encoding_size, **factory), persistent=False)
        self._mixture_cache: tuple | None = None
        self.reset_mixture()

    @classmethod
    def from_linear(
        cls,
        linear: nn.Module,
        mixture: MixtureConfig,
        encoding_size: int,
        size_range: tuple[float, float] | None = None,
    ) -> MixtureElasticLinear:
        """A mixture layer that takes over `linear`'s `weight` and `bias` (the same parameters) and active sizes, with
        every other expert a copy of that weight: it computes what `linear` computed, for every active size (with
        `mixture.expert_init_noise` > 0 the experts are then perturbed, see `perturb_experts`: exactly so only while
        alpha is uniform, i.e. with `router_init_std=0`). `size_range` is the router's (see [`Router`]), needed with
        `mixture.router_init="size"`.

        Raises `TypeError` if `linear` is not a plain [`ElasticLinear`] (a mixture needs the elastic slicing)."""
        if not isinstance(linear, ElasticLinear) or isinstance(linear, MixtureElasticLinear):
            what = "already a mixture" if isinstance(linear, MixtureElasticLinear) else type(linear).__name__
            raise TypeError(
                f"Mixture-of-Supernets turns an ElasticLinear into a MixtureElasticLinear; got {what}, which does not "
                "support it."
            )
        weight = linear.weight
        with torch.device("meta"):
            new = cls(
                linear.in_features,
                linear.out_features,
                bias=linear.bias is not None,
                mixture=mixture,
                encoding_size=encoding_size,
                size_range=size_range,
            )
        new = new.to_empty(device=weight.device).to(dtype=weight.dtype)
        new.weight, new.bias = linear.weight, linear.bias
        new.set_active(in_features=linear.active_in_features, out_features=linear.active_out_features)
        new.reset_mixture()
        if mixture.expert_init_noise > 0 and not new.weight.is_meta:  # meta: from_pretrained loads the experts next
            new.perturb_experts(mixture.expert_init_noise)
        new.train(linear.training)
        return new

    @torch.no_grad()
    def reset_mixture(self) -> None:
        """Every expert a copy of `weight` (and `bias`), the router re-initialized (near-uniform), the encoding that of
        the largest subnet. Tensors already loaded from a checkpoint (marked by transformers) are left as they are."""
        init.copy_(self.expert_weights, self.weight.detach()[None].expand_as(self.expert_weights))
        if self.bias is not None:
            init.copy_(self.expert_biases, self.bias.detach()[None].expand_as(self.expert_biases))
        self.router.reset_parameters()
        self.architecture.fill_(1.0)
        self._mixture_cache = None

    @torch.no_grad()
    def perturb_experts(self, noise: float, generator: torch.Generator | None = None) -> None:
        """Break the symmetry of identical experts: add to the weight experts (`weight` included) Gaussian noise of
        `noise` standard deviations of `weight`, minus its mean over the experts, so that their uniform average is
        unchanged (see `MixtureConfig.expert_init_noise`). `from_linear` calls it with the config's value."""
        weight = self.weight.detach()
        scale = float(noise) * weight.float().std().item()
        draws = torch.randn((self.num_experts, *weight.shape), generator=generator, dtype=torch.float32)
        draws = ((draws - draws.mean(0, keepdim=True)) * scale).to(device=weight.device, dtype=weight.dtype)
        self.weight.add_(draws[0])
        self.expert_weights.add_(draws[1:])
        self._mixture_cache = None

    # -- the architecture ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def set_architecture(self, encoding: torch.Tensor, precompute: bool = False) -> None:
        """Route for the subnet encoded by `encoding` (see [`architecture_encoding`]); with `precompute` and in eval
        mode, compute and cache its mixture now."""
        if encoding.shape != self.architecture.shape:
            raise ValueError(
                f"The architecture encoding has shape {tuple(encoding.shape)}; this layer's router reads "
                f"{tuple(self.architecture.shape)}."
            )
        encoding = encoding.to(device=self.architecture.device, dtype=self.architecture.dtype)
        if not torch.equal(encoding, self.architecture):
            self.architecture.copy_(encoding)
        if precompute and not self.training:
            self.mixed_weight_and_bias()

    def mixture_weights(self) -> torch.Tensor:
        """`alpha(a)` of the current encoding: `(num_experts,)` layer-wise, `(out_features, num_experts)` neuron-wise."""
        return self.router(self.architecture)

    # -- the mixture --------------------------------------------------------------------------------------------------
    def compute_mixture(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mixed weight `(active_out, active_in)` and bias `(active_out,)` of the current encoding, computed now
        (with an autograd graph to the experts and the router when autograd records one)."""
        rows, cols = self.active_out_features, self.active_in_features
        alpha = self.router.row_weights(self.architecture, rows)  # (m, rows) or (m, 1)
        experts = self.expert_weights[:, :rows, :cols]  # (m - 1, rows, cols), a view
        weight = alpha[0, :, None] * self.weight[:rows, :cols] + (alpha[1:, :, None] * experts).sum(0)  # (rows, cols)
        bias = None
        if self.bias is not None:
            bias = alpha[0] * self.bias[:rows] + (alpha[1:] * self.expert_biases[:, :rows]).sum(0)  # (rows,)
        return weight, bias

    def mixed_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mixture the forward computes with: fresh in training mode or when autograd records through it, else
        the cached one of the current subnet (computed if missing or stale)."""
        if self.training or (torch.is_grad_enabled() and self._records_gradients()):
            return self.compute_mixture()
        key = self._cache_key()
        if self._mixture_cache is None or self._mixture_cache[0] != key:
            # Never an inference tensor: the cache may be read later by a forward that records a graph of its input.
            with torch.inference_mode(False), torch.no_grad():
                weight, bias = self.compute_mixture()
            self._mixture_cache = (key, weight, bias)
        return self._mixture_cache[1], self._mixture_cache[2]

    def _mixture_tensors(self) -> list[torch.Tensor]:
        tensors = [self.weight, self.bias, self.expert_weights, self.expert_biases, self.architecture]
        return [t for t in tensors if t is not None] + list(self.router.parameters())

    def _records_gradients(self) -> bool:
        return any(t.requires_grad for t in self._mixture_tensors())

    def _cache_key(self) -> tuple:
        # A tensor's version counter moves with every in-place change (optimizer steps, copy_, load_state_dict); its
        # data pointer with every replacement of its storage (`.to(device)`).
        versions = tuple((t.data_ptr(), t._version) for t in self._mixture_tensors())
        return (self.active_in_features, self.active_out_features, self.weight.dtype, versions)

    def train(self, mode: bool = True) -> MixtureElasticLinear:
        if mode:
            self._mixture_cache = None  # training never reads it: free its memory
        return super().train(mode)

    # -- ElasticLinear ------------------------------------------------------------------------------------------------
    def active_weight(self) -> torch.Tensor:
        return self.mixed_weight_and_bias()[0]

    def active_bias(self) -> torch.Tensor | None:
        return self.mixed_weight_and_bias()[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.mixed_weight_and_bias()
        return F.linear(x, weight, bias)

    @torch.no_grad()
    def to_static(self) -> nn.Linear:
        """A plain `nn.Linear` holding a copy of the mixture of the current encoding (in eval mode the cached one)."""
        weight, bias = self.mixed_weight_and_bias()
        static = nn.Linear(
            self.active_in_features,
            self.active_out_features,
            bias=bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        static.weight.copy_(weight)
        if bias is not None:
            static.bias.copy_(bias)
        return static

    @torch.no_grad()
    def permute_out_features(self, index: torch.Tensor) -> None:
        """Reorder the output features of every expert (and of a neuron-wise router) in place."""
        super().permute_out_features(index)
        self.expert_weights.copy_(self.expert_weights[:, index])
        if self.expert_biases is not None:
            self.expert_biases.copy_(self.expert_biases[:, index])
        self.router.permute_outputs(index)

    @torch.no_grad()
    def permute_in_features(self, index: torch.Tensor) -> None:
        """Reorder the input features of every expert in place."""
        super().permute_in_features(index)
        self.expert_weights.copy_(self.expert_weights[:, :, index])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_experts={self.num_experts}, mode={self.router.mode!r}"
