"""Model cards, atomic export and Hub uploads of extracted subnets.

- [`build_model_card`] (`hf_nas.hub.card`) renders `model_cards/subnet_card.md` with
  `huggingface_hub.ModelCard.from_template`: the base model, the search space, the chosen subnet, its parameters, MACs
  and measured latency, its metrics and its place on the Pareto front, how to load it and how it was trained.
- [`export_subnet`] (`hf_nas.hub.export`) writes a complete, loadable folder (config, weights, tokenizer or image
  processor, README.md and, for a per-layer subnet, the modeling file) atomically.
- [`push_subnet_folder`] (`hf_nas.hub.push`) uploads such a folder with `huggingface_hub` (or, with `dry_run=True`,
  only lists what it would upload); a failed upload raises [`PushError`], saying the folder is saved locally.
"""

from __future__ import annotations

from .card import MODEL_CARD_TAGS, build_model_card, check_pareto, subnet_card_template_path
from .export import export_subnet
from .push import PushError, check_repo_id, push_subnet_folder

__all__ = [
    "MODEL_CARD_TAGS",
    "PushError",
    "build_model_card",
    "check_pareto",
    "check_repo_id",
    "export_subnet",
    "push_subnet_folder",
    "subnet_card_template_path",
]
