"""Arguments of supernet fine-tuning: `TrainingArguments` plus sampling and distillation."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

__all__ = ["SupernetTrainingArguments"]

DISTILLATION_MODES = ("inplace", "teacher", "chain", "none")
EXTERNAL_TEACHER_MODES = ("teacher", "chain")  # the modes with an external teacher model
HIDDEN_LOSS_LAYERS = ("all", "last")
EVAL_SUBNET_NAMES = ("largest", "middle", "smallest")


@dataclass
class SupernetTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] for [`SupernetTrainer`]: which subnets each step trains and how they learn.

    Each optimizer step trains the subnets the sampler picks for it (BigNAS sandwich by default), accumulating
    their gradients into one optimizer step. The largest subnet (or an external teacher) learns from the labels; the
    other subnets learn from the labels (`task_loss_weight`) and from the teacher's logits (`kd_loss_weight`), its
    last-layer self-attention relations (`attention_loss_weight`) and its last hidden state (`hidden_loss_weight`).

    Example:

    ```python
    >>> args = SupernetTrainingArguments("out", sampler="sandwich", num_random_subnets=2, kd_loss_weight=1.0)
    ```
    """

    sampler: str = field(
        default="sandwich",
        metadata={
            "help": "Subnet sampler: sandwich (BigNAS), instatune, random, shiftnas, or targeted (the sandwich rule "
            "with its random subnets just below the MAC shares of sampler_mac_targets)."
        },
    )
    num_random_subnets: int = field(
        default=2,
        metadata={"help": "Random subnets per step besides the largest and smallest (sandwich, shiftnas, targeted)."},
    )
    sampler_mac_targets: str | None = field(
        default=None,
        metadata={
            "help": "targeted sampler: comma-separated shares of the largest subnet's MACs to train subnets at "
            "(default '0.5,0.25'); each random subnet of a step is drawn just below one of them, in turn (a repeated "
            "share trains its band more often)."
        },
    )
    sampler_mac_tolerance: float = field(
        default=0.1,
        metadata={"help": "targeted sampler: a subnet is at target t when its MAC share is in [t - tolerance, t]."},
    )
    sampler_include_smallest: bool = field(
        default=True,
        metadata={
            "help": "targeted sampler: train the space's smallest subnet every step beside the largest (the sandwich "
            "rule); False trains only the largest and the targeted subnets, none far below the lowest target."
        },
    )
    sampler_seed: int | None = field(default=None, metadata={"help": "Seed of the sampler (default: `seed`)."})
    sampler_stages: str | None = field(
        default=None,
        metadata={
            "help": "Progressive shrinking as a schedule of stages, e.g. 'width@0.5,depth': the first stage's "
            "dimensions (and those named nowhere) are elastic from the start; each later stage's dimensions stay at "
            "their largest choice until that stage starts (at the previous stage's fraction of max_steps). "
            "Dimensions: num_hidden_layers (depth), num_attention_heads (heads), intermediate_size (ffn), "
            "hidden_size (hidden); width = heads+ffn+hidden. Join several with '+'."
        },
    )
    uniform_subnet_probability: float = field(
        default=0.0,
        metadata={
            "help": "Probability that a random subnet has one head count and FFN width for all its layers (the "
            "uniform subnets search and extraction favour); sandwich, instatune and random samplers."
        },
    )
    protect_largest_gradient: bool = field(
        default=False,
        metadata={
            "help": "NASViT gradient protection: clip the other subnets' summed gradient on its own and add the "
            "largest subnet's gradient (clipped on its own, as plain fine-tuning would) back, so the largest "
            "subnet keeps a plain fine-tuning step. Needs gradient_accumulation_steps=1 and max_grad_norm > 0."
        },
    )
    distillation: str | None = field(
        default=None,
        metadata={
            "help": "inplace: the largest subnet teaches the others (a sampler that puts it first saves a forward); "
            "teacher: an external model teaches every subnet; chain: the external model teaches the largest subnet "
            "and the largest, as it is at that step, teaches the others (BigNAS in-place distillation below a fixed "
            "teacher); none: labels only. Default: teacher when a teacher model is given, else inplace."
        },
    )
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "External teacher (distillation='teacher'), if no model object is given."}
    )
    distillation_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of logit KD."})
    task_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the label loss of the subnets that are not the teacher."}
    )
    kd_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the soft cross-entropy to the teacher."})
    attention_loss_weight: float = field(
        default=0.0, metadata={"help": "Weight of the last-layer self-attention relation loss (AutoDistil/MiniLM)."}
    )
    hidden_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of hidden-state distillation: MSE at the embeddings and every kept layer against the "
            "teacher layer it maps to (DynaBERT), or at the last layer only (see hidden_loss_layers)."
        },
    )
    hidden_loss_layers: str = field(
        default="all",
        metadata={"help": "all: embeddings and every kept layer (DynaBERT); last: the last hidden state only."},
    )
    num_relation_heads: int | None = field(
        default=None, metadata={"help": "Relation heads of the attention loss (default: chosen per pair of sizes)."}
    )
    eval_subnets: str = field(
        default="largest,middle,smallest",
        metadata={"help": "Comma-separated subnets evaluated at each evaluation: largest, middle, smallest."},
    )
    mixture_of_supernets: str = field(
        default="off",
        metadata={
            "help": "Mixture-of-Supernets: off; layer (the weights of each targeted linear layer are a mixture of "
            "experts routed by the subnet's architecture); neuron (one mixture per output neuron). The trainer adds "
            "the mixture to a supernet without one (every expert a copy of the weight); a supernet saved with a "
            "mixture keeps it and must match."
        },
    )
    mixture_num_experts: int = field(default=2, metadata={"help": "Mixture-of-Supernets: experts per linear layer."})
    mixture_router_hidden_size: int = field(
        default=128, metadata={"help": "Mixture-of-Supernets: hidden width of each router."}
    )
    mixture_target_modules: str = field(
        default="ffn",
        metadata={"help": "Mixture-of-Supernets: comma-separated linear layers with experts: ffn, attention."},
    )
    mixture_router_init_std: float = field(
        default=0.02,
        metadata={
            "help": "Mixture-of-Supernets: std of the routers' output weights at init (0: alpha exactly uniform)."
        },
    )
    mixture_expert_init_noise: float = field(
        default=0.0,
        metadata={
            "help": "Mixture-of-Supernets: zero-mean noise added to the experts when the mixture is added, in standard "
            "deviations of each weight (0: exact copies, a saddle the experts barely leave). With "
            "mixture_router_init_std=0 every subnet still computes what the plain supernet computed."
        },
    )
    mixture_router_init: str = field(
        default="random",
        metadata={
            "help": "Mixture-of-Supernets: how the routers start: random (alpha near uniform) or size (expert 0 owns "
            "the largest subnets, the last expert the smallest, so the experts specialize from the first step; with "
            "mixture_expert_init_noise=0 every subnet still computes what the plain supernet computed)."
        },
    )
    switchable_layer_norms: str | None = field(
        default=None,
        metadata={
            "help": "Switchable layer norms: comma-separated MAC shares of the encoder layers between norm budgets, "
            "e.g. 0.75,0.375 (subnets with at least 0.75 of them use the model's LayerNorms, 0.375 to 0.75 a second set, "
            "smaller ones a third). "
            "Every other weight stays shared; an extracted subnet gets its budget's norms. The trainer adds them to a "
            "supernet without them (each budget a copy); a supernet saved with them keeps them and must match."
        },
    )
    switchable_norm_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Switchable layer norms: learning rate of the norm budgets (default: learning_rate). Adam moves a "
            "parameter by about the learning rate per step, so at 1e-4 a budget's scale (near 1) can change by a few "
            "hundredths in a short run; a larger rate lets the budgets specialize. Follows the same schedule."
        },
    )
    switchable_heads: bool = field(
        default=False,
        metadata={
            "help": "Switchable heads, with switchable_layer_norms: the task head (the classifier) switches with the norm "
            "budgets, so the subnets of each budget read their features with their own weights (each budget a copy at "
            "the start). An extracted subnet gets its budget's head. Needs switchable layer norms (these arguments' or "
            "the supernet's own)."
        },
    )
    switchable_head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Switchable heads: learning rate of the head budgets (default: learning_rate)."},
    )
    switchable_biases: bool = field(
        default=False,
        metadata={
            "help": "Switchable biases, with switchable_layer_norms: every linear layer of the encoder layers that has a "
            "bias (attention projections, FFN) switches its bias with the norm budgets, so the subnets of each budget "
            "shift their projections' outputs with their own biases while the weight matrices stay shared (each budget "
            "a copy at the start). An extracted subnet gets its budget's biases. Needs switchable layer norms; not with "
            "Mixture-of-Supernets."
        },
    )
    switchable_bias_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Switchable biases: learning rate of the bias budgets (default: learning_rate)."},
    )
    switchable_delta_rank: int = field(
        default=0,
        metadata={
            "help": "Switchable low-rank deltas, with switchable_layer_norms: every linear layer of the encoder layers "
            "adds, for each smaller norm budget, its own delta of this rank to the shared weight (zero at the start; "
            "0: none). An extracted subnet gets its budget's weight with the delta merged: an ordinary matrix. Needs "
            "switchable layer norms; not with Mixture-of-Supernets."
        },
    )
    switchable_delta_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Switchable low-rank deltas: their learning rate (default: learning_rate)."},
    )
    mixture_router_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Mixture-of-Supernets: learning rate of the routers (default: learning_rate); the routers start "
            "from scratch, the experts from pretrained weights. Follows the same schedule."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        from .samplers import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; allowed: {sorted(SAMPLERS)}.")
        if self.num_random_subnets < 0:
            raise ValueError(f"`num_random_subnets` must be >= 0, got {self.num_random_subnets}.")
        if self.distillation is not None and self.distillation not in DISTILLATION_MODES:
            raise ValueError(f"Unknown distillation {self.distillation!r}; allowed: {list(DISTILLATION_MODES)}.")
        if self.hidden_loss_layers not in HIDDEN_LOSS_LAYERS:
            raise ValueError(
                f"Unknown hidden_loss_layers {self.hidden_loss_layers!r}; allowed: {list(HIDDEN_LOSS_LAYERS)}."
            )
        if self.sampler_mac_targets is not None and self.sampler != "targeted":
            raise ValueError(
                f"`sampler_mac_targets` is an option of the targeted sampler, not of {self.sampler!r}: set "
                "sampler='targeted' or leave it unset."
            )
        if not self.sampler_include_smallest and self.sampler != "targeted":
            raise ValueError(
                f"`sampler_include_smallest=False` is an option of the targeted sampler, not of {self.sampler!r}: "
                "set sampler='targeted' or leave it at True."
            )
        if self.sampler == "targeted":
            self.mac_targets()  # a malformed list fails here, before training
        if not 0.0 <= self.uniform_subnet_probability <= 1.0:
            raise ValueError(f"`uniform_subnet_probability` must be in [0, 1], got {self.uniform_subnet_probability}.")
        if self.sampler_stages is not None:
            from .samplers import parse_stages

            parse_stages(self.sampler_stages)  # unknown dimensions or bad fractions fail here, before training
            if self.max_steps <= 0:
                raise ValueError(
                    f"`sampler_stages` needs a fixed number of steps: set max_steps > 0 (got {self.max_steps})."
                )
        if self.protect_largest_gradient:
            if self.gradient_accumulation_steps != 1:
                raise ValueError(
                    "protect_largest_gradient=True needs gradient_accumulation_steps=1, got "
                    f"{self.gradient_accumulation_steps}; set protect_largest_gradient=False "
                    "(--protect_largest_gradient false) to accumulate gradients."
                )
            if not self.max_grad_norm or self.max_grad_norm <= 0:
                raise ValueError(
                    f"protect_largest_gradient=True clips each part to max_grad_norm: set max_grad_norm > 0 (got "
                    f"{self.max_grad_norm}), or protect_largest_gradient=False."
                )
        if self.distillation_temperature <= 0:
            raise ValueError(f"`distillation_temperature` must be > 0, got {self.distillation_temperature}.")
        for name in ("task_loss_weight", "kd_loss_weight", "attention_loss_weight", "hidden_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if self.num_relation_heads is not None and self.num_relation_heads < 1:
            raise ValueError(f"`num_relation_heads` must be >= 1, got {self.num_relation_heads}.")
        # Under DDP the last subnet's backward carries every parameter (see SupernetTrainer.training_step), so DDP must
        # not look for unused parameters: it would mark the layers that subnet drops ready twice.
        if self.ddp_find_unused_parameters is None:
            self.ddp_find_unused_parameters = False
        elif self.ddp_find_unused_parameters:
            raise ValueError(
                "ddp_find_unused_parameters=True is not supported by SupernetTrainer: every step's last backward "
                "reaches all parameters, so leave it unset (False)."
            )
        names = self.eval_subnet_names
        unknown = [n for n in names if n not in EVAL_SUBNET_NAMES]
        if unknown:
            raise ValueError(f"Unknown eval_subnets {unknown}; allowed: {list(EVAL_SUBNET_NAMES)}.")
        self.mixture_config()  # an unknown mode, too few experts or an unsupported target fail here
        self.norm_boundaries()  # malformed boundaries fail here, naming the field
        if self.switchable_norm_learning_rate is not None:
            if not self.switchable_norm_learning_rate > 0:
                raise ValueError(
                    f"`switchable_norm_learning_rate` must be > 0, got {self.switchable_norm_learning_rate}."
                )
        if self.switchable_head_learning_rate is not None:
            if not self.switchable_heads:
                raise ValueError("`switchable_head_learning_rate` is set but `switchable_heads` is not: set both.")
            if not self.switchable_head_learning_rate > 0:
                raise ValueError(
                    f"`switchable_head_learning_rate` must be > 0, got {self.switchable_head_learning_rate}."
                )
        if self.switchable_bias_learning_rate is not None:
            if not self.switchable_biases:
                raise ValueError("`switchable_bias_learning_rate` is set but `switchable_biases` is not: set both.")
            if not self.switchable_bias_learning_rate > 0:
                raise ValueError(
                    f"`switchable_bias_learning_rate` must be > 0, got {self.switchable_bias_learning_rate}."
                )
        from ..models.configuration_elastic import check_delta_rank

        check_delta_rank(self.switchable_delta_rank)
        if self.switchable_delta_learning_rate is not None:
            if not self.switchable_delta_rank:
                raise ValueError("`switchable_delta_learning_rate` is set but `switchable_delta_rank` is 0: set both.")
            if not self.switchable_delta_learning_rate > 0:
                raise ValueError(
                    f"`switchable_delta_learning_rate` must be > 0, got {self.switchable_delta_learning_rate}."
                )
        for name in ("switchable_biases", "switchable_delta_rank"):
            if getattr(self, name) and self.mixture_of_supernets != "off":
                raise ValueError(
                    f"`{name}` does not support `mixture_of_supernets` (its layers mix their own weights and "
                    f"biases), got mixture_of_supernets={self.mixture_of_supernets!r}: use one or the other."
                )
        if self.mixture_router_learning_rate is not None and not self.mixture_router_learning_rate > 0:
            raise ValueError(f"`mixture_router_learning_rate` must be > 0, got {self.mixture_router_learning_rate}.")

    def norm_boundaries(self) -> tuple[float, ...] | None:
        """The MAC-share boundaries of `switchable_layer_norms` (None when unset)."""
        from ..switchable_norms import check_norm_boundaries

        return check_norm_boundaries(self.switchable_layer_norms, "switchable_layer_norms")

    def mixture_config(self):
        """The [`~hf_nas.mixture.MixtureConfig`] these arguments ask for (None for `mixture_of_supernets="off"`)."""
        from ..mixture import MixtureConfig

        mixture = MixtureConfig(
            mode=self.mixture_of_supernets,
            num_experts=self.mixture_num_experts,
            router_hidden_size=self.mixture_router_hidden_size,
            target_modules=self.mixture_target_modules,
            router_init_std=self.mixture_router_init_std,
            expert_init_noise=self.mixture_expert_init_noise,
            router_init=self.mixture_router_init,
        )
        return mixture if mixture.enabled else None

    def mac_targets(self) -> tuple[float, ...]:
        """The target MAC shares of the targeted sampler, parsed from `sampler_mac_targets` (default (0.5, 0.25))."""
        text = "0.5,0.25" if self.sampler_mac_targets is None else self.sampler_mac_targets
        try:
            targets = tuple(float(t) for t in text.split(","))
        except ValueError:
            raise ValueError(
                f"`sampler_mac_targets` must be comma-separated shares in (0, 1] such as '0.5,0.25', got {text!r}."
            ) from None
        bad = [t for t in targets if not 0.0 < t <= 1.0]
        if bad:
            raise ValueError(f"`sampler_mac_targets` must hold shares in (0, 1], got {bad} in {text!r}.")
        if not 0.0 < self.sampler_mac_tolerance <= 1.0:
            raise ValueError(f"`sampler_mac_tolerance` must be in (0, 1], got {self.sampler_mac_tolerance}.")
        return targets

    @property
    def eval_subnet_names(self) -> list[str]:
        return [n.strip() for n in self.eval_subnets.split(",") if n.strip()]
