"""The `hf-nas` console command: `hf-nas <command> [options]` runs the `main` of the command registered in
[`hf_nas.commands.COMMANDS`] with the remaining arguments, so `hf-nas train ...` and `scripts/train_supernet.py ...`
(e.g. under `accelerate launch` or `torchrun`) are the same program.

    hf-nas --help                      # the commands, one line each
    hf-nas train --help                # the options of one command
    hf-nas search --supernet out/supernet --validation_file data/sst2_sample_dev.tsv --output_dir out/search
    python -m hf_nas push --folder out/subnet --repo_id me/bert-subnet
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .commands import COMMANDS

__all__ = ["build_parser", "main", "run_command"]

PROG = "hf-nas"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The top-level parser: `--help` lists every registered command with its description, and `--version`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Neural architecture search for Hugging Face Transformers: train an elastic supernet, search its "
        "subnets, extract one as a plain checkpoint and push it to the Hub.",
        epilog=f"Run `{prog} <command> --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", title="commands", required=True)
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.description, add_help=False)
    return parser


def run_command(name: str, argv: Sequence[str], prog: str = PROG) -> None:
    """Run the registered command `name` on `argv`; its own parser reads them, with usage `<prog> <name>`."""
    if name not in COMMANDS:
        raise ValueError(f"Unknown hf-nas command {name!r}; allowed: {', '.join(COMMANDS)}.")
    module = importlib.import_module(COMMANDS[name].module)
    module.main(list(argv), prog=f"{prog} {name}")


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> None:
    """Entry point of `hf-nas` (and `python -m hf_nas`): dispatch `argv` (default `sys.argv[1:]`) to a command.

    Args:
        argv (`Sequence[str]`, *optional*): the arguments, without the program name.
        prog (`str`, *optional*, defaults to `"hf-nas"`): the program name usage lines show.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        run_command(argv[0], argv[1:], prog=prog)
        return
    build_parser(prog).parse_args(argv)  # --help, --version, or an error naming the allowed commands: it exits


if __name__ == "__main__":
    main()
