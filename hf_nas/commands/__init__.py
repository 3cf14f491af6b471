"""The programs behind the `hf-nas` console command and the `scripts/*.py` files.

Each command module (`hf_nas.commands.train`, `...search`, ...) holds the argument dataclasses, a `build_parser`
function returning its `HfArgumentParser`, and `main(argv=None)`; `hf-nas <name> ...` and the matching
`scripts/<script>.py ...` run that same `main`. [`COMMANDS`] is the registry `hf-nas` dispatches on: adding a command
is one entry (its name, module and one-line description); modules are imported only when their command runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import HfArgumentParser

__all__ = ["COMMANDS", "Command", "description_of", "parse_arguments"]


@dataclass(frozen=True)
class Command:
    """A subcommand of `hf-nas`: the module whose `main(argv, prog=...)` runs it, and its one-line description."""

    module: str
    description: str


COMMANDS: dict[str, Command] = {
    "train": Command("hf_nas.commands.train", "Fine-tune a BERT, ViT or BEiT checkpoint into an elastic supernet."),
    "finetune": Command("hf_nas.commands.finetune", "Fine-tune the full vanilla model with a plain Trainer."),
    "distill": Command("hf_nas.commands.distill", "Distill task-agnostic supernets, one per sub-space (AutoDistil)."),
    "search": Command("hf_nas.commands.search", "Search a supernet for the Pareto front of accuracy and costs."),
    "extract": Command("hf_nas.commands.extract", "Extract one subnet as a plain checkpoint with a model card."),
    "push": Command("hf_nas.commands.push", "Push an extracted subnet folder to the Hugging Face Hub."),
    "compress": Command("hf_nas.commands.compress", "Compress an extracted subnet into a new checkpoint folder."),
    "gradient-search": Command(
        "hf_nas.commands.gradient_search", "Search a supernet by gradient descent (TangleNAS) and select subnets."
    ),
}


def description_of(module_doc: str | None) -> str | None:
    """The first paragraph of a command module's docstring, as the description its `--help` prints."""
    if not module_doc:
        return None
    return " ".join(module_doc.strip().split("\n\n")[0].split())


def parse_arguments(
    parser: HfArgumentParser, argv: Sequence[str] | None = None, defaults: Mapping[str, Any] | None = None
) -> tuple:
    """Parse `argv` (default `sys.argv[1:]`) into the parser's dataclasses, or, when `argv` is a single `.json` path,
    that file's keys, on top of `defaults` (the values the parser's `set_defaults` gives on the command line).

    Args:
        parser (`HfArgumentParser`): the command's parser.
        argv (`Sequence[str]`, *optional*): the command's arguments, without the program name.
        defaults (`Mapping[str, Any]`, *optional*): defaults that a JSON file gets too.

    Returns:
        `tuple`: one instance per dataclass of the parser, in order.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(os.path.abspath(argv[0])) as f:
            return parser.parse_dict({**(defaults or {}), **json.load(f)})
    # no `<program>.args` file lookup: `hf-nas <name>` and the script must read the same arguments
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
