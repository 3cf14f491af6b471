"""Copy the shared block of `subnet_common.py` into every family's self-contained subnet modeling file.

    python -m hf_nas.models.generate_subnet_modeling          # rewrite the out-of-date copies
    python -m hf_nas.models.generate_subnet_modeling --check  # exit 1 if a copy differs (nothing is written)

The targets are the `models/<family>/modeling_<family>_subnet.py` files. The block lies between the `BEGIN` and
`END` marker lines, in the source and in each target. A target must already have both markers (put them once by
hand, after its imports) and import every name the block uses from the source's imports; the block itself imports
nothing and never names the package, since the copies load without it.

This module needs nothing but the standard library: if a broken copy keeps the package from importing, run it as a
file, `python hf_nas/models/generate_subnet_modeling.py`.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BEGIN", "COMMAND", "END", "SOURCE", "check_block", "default_targets", "main", "render", "shared_block"]

BEGIN = "# >>> shared subnet code: copied from models/subnet_common.py of hf-nas; edit it there, not here >>>"
END = "# <<< shared subnet code <<<"
SOURCE = Path(__file__).resolve().with_name("subnet_common.py")
_PACKAGE = SOURCE.parents[1].name
COMMAND = f"python -m {_PACKAGE}.models.{Path(__file__).stem}"


def default_targets() -> list[Path]:
    """The subnet modeling file of every family folder (`models/<family>/modeling_<family>_subnet.py`)."""
    return sorted(
        path
        for path in SOURCE.parent.glob("*/modeling_*_subnet.py")
        if path.stem == f"modeling_{path.parent.name}_subnet"
    )


def _split(text: str, path: Path | str) -> tuple[str, str, str]:
    """`text` as (up to and including BEGIN, the block, from END on)."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.rstrip("\n") == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == END]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise ValueError(
            f"{path} must have exactly one line {BEGIN!r} followed by one line {END!r} (found {len(begins)} and "
            f"{len(ends)})."
        )
    b, e = begins[0], ends[0]
    return "".join(lines[: b + 1]), "".join(lines[b + 1 : e]), "".join(lines[e:])


def shared_block(source_text: str) -> str:
    """The text between the markers of the source."""
    return _split(source_text, SOURCE)[1]


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _used_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def check_block(block: str) -> None:
    """Refuse a block that imports anything or names the package (its copies must load without it)."""
    tree = ast.parse(block)
    if any(isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(tree)):
        raise ValueError(
            f"The shared block of {SOURCE.name} must not import anything: import at the top of the files."
        )
    if _PACKAGE in block:
        raise ValueError(
            f"The shared block of {SOURCE.name} must not mention {_PACKAGE!r}: the copies load without it."
        )


def render(target_text: str, block: str, source_text: str, path: Path | str = "<target>") -> str:
    """`target_text` with `block` between its markers. Raises `ValueError` if the target lacks a name the block
    uses from the source's imports."""
    head, _, tail = _split(target_text, path)
    required = _imported_names(ast.parse(source_text)) & _used_names(ast.parse(block))
    missing = sorted(required - _imported_names(ast.parse(head + tail)))
    if missing:
        raise ValueError(f"{path} must import {missing}: the shared block uses them.")
    return head + block + tail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files; exit 1 if any")
    parser.add_argument("targets", nargs="*", type=Path, help="files to update (default: every family's)")
    args = parser.parse_args(argv)
    source_text = SOURCE.read_text()
    block = shared_block(source_text)
    check_block(block)
    stale = []
    for path in args.targets or default_targets():
        text = path.read_text()
        new_text = render(text, block, source_text, path)
        if new_text == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new_text)
    verb = "out of date" if args.check else "rewritten"
    for path in stale:
        print(f"{path}: {verb}", file=sys.stderr if args.check else sys.stdout)
    if args.check and stale:
        print(f"Run `{COMMAND}` to update them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
