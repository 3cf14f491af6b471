"""Gradient-based search in the weight-entangled space (TangleNAS) and perturbation-based selection (DARTS-PT).

- [`ArchitectureParameters`] / [`ArchitectureWeights`] (`parameters.py`): the architecture parameters (softmax logits
  for DARTS, Dirichlet concentrations for DrNAS) and the mixture weights they give;
- [`MixedForward`] (`mixture.py`): the mixed forward, one pass of the supernet that superposes every choice;
- [`expected_macs`] and [`MacBudget`] (`cost.py`): the MACs expected under the mixture (differentiable) and the
  budget of selection, both from the one cost model of `hf_nas.costs`;
- [`select_argmax`] and [`perturbation_select`] (`selection.py`): the subnet from the search, optionally under a MAC
  budget;
- [`GradientSearchTrainer`] and [`GradientSearchArguments`] (`trainer.py`): the bi-level training loop.

Text supernets (BERT) and image supernets (ViT, BEiT) are searched alike: costs take `sequence_length` for text and
`image_size` for images, as `hf_nas.count_macs` does.
"""

from .cost import MacBudget, expected_macs
from .mixture import MixedForward
from .parameters import (
    ARCHITECTURE_CONFIG_NAME,
    ARCHITECTURE_WEIGHTS_NAME,
    DIMENSIONS,
    PARAMETRIZATIONS,
    ArchitectureParameters,
    ArchitectureWeights,
    check_supernet,
)
from .selection import perturbation_select, select_argmax
from .trainer import (
    ARCH_OPTIMIZERS,
    ARCH_STATE_NAME,
    ARCHITECTURE_DIR_NAME,
    SELECTION_METHODS,
    GradientSearchArguments,
    GradientSearchTrainer,
    selection_summary,
)

__all__ = [
    "ARCHITECTURE_CONFIG_NAME",
    "ARCHITECTURE_DIR_NAME",
    "ARCHITECTURE_WEIGHTS_NAME",
    "ARCH_OPTIMIZERS",
    "ARCH_STATE_NAME",
    "DIMENSIONS",
    "PARAMETRIZATIONS",
    "SELECTION_METHODS",
    "ArchitectureParameters",
    "ArchitectureWeights",
    "GradientSearchArguments",
    "GradientSearchTrainer",
    "MacBudget",
    "MixedForward",
    "check_supernet",
    "expected_macs",
    "perturbation_select",
    "select_argmax",
    "selection_summary",
]
