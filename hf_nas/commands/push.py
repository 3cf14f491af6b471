"""Push a subnet folder written by `hf-nas extract` (model, config, tokenizer or image processor, README.md card) to a
model repo on the Hugging Face Hub, created if needed, in one commit.

The folder is checked first: it must hold `config.json`, the model card `README.md` and the weights
(`model.safetensors`, `pytorch_model.bin` or a sharded index of either). `--token` defaults to `HF_TOKEN` or the token
saved by `hf auth login`. A failed upload (no network, no token, no write access) ends with one line, "saved locally
at <folder>; upload to <repo> failed: <reason>", and exit status 1; the folder is kept as it is. Arguments come from
the command line or one JSON file; `hf-nas push` and `scripts/push_subnet.py` are this same program.

    hf-nas push --folder out/subnet --repo_id me/bert-subnet
    hf-nas push --folder out/subnet --repo_id me/bert-subnet --private --commit_message "Subnet at half the MACs"
    hf-nas push --folder out/subnet --repo_id me/bert-subnet --dry_run     # list the files, upload nothing
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from hf_nas.commands import description_of, parse_arguments
from hf_nas.data import HelpFormatter
from hf_nas.hub import PushError, check_repo_id, push_subnet_folder

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
DEFAULT_COMMIT_MESSAGE = "Upload subnet extracted with hf-nas"


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "A subnet folder written by `hf-nas extract` (or hf_nas.export_subnet)."})
    repo_id: str = field(metadata={"help": "The Hub model repo, 'namespace/name' (or 'name' in the token's user's)."})
    private: bool = field(
        default=False, metadata={"help": "Create the repo private (an existing repo keeps its own)."}
    )
    commit_message: str = field(default=DEFAULT_COMMIT_MESSAGE, metadata={"help": "The commit message."})
    token: str | None = field(
        default=None,
        metadata={"help": "A Hub token with write access; None: HF_TOKEN, else the one saved by `hf auth login`."},
    )
    dry_run: bool = field(default=False, metadata={"help": "List the files that would be uploaded; upload nothing."})

    def __post_init__(self):
        check_subnet_folder(self.folder)
        try:
            check_repo_id(self.repo_id)
        except ValueError as e:
            raise ValueError(f"--repo_id: {e}") from e
        if not self.commit_message.strip():
            raise ValueError("--commit_message must not be empty.")


def check_subnet_folder(folder: str) -> None:
    """Raise `ValueError`, naming `--folder` and what is missing, unless `folder` is a complete subnet folder."""
    if not os.path.isdir(folder):
        what = "a file" if os.path.exists(folder) else "missing"
        raise ValueError(f"--folder {folder!r} is {what}; give a subnet folder written by `hf-nas extract`.")
    missing = [name for name in ("config.json", "README.md") if not os.path.isfile(os.path.join(folder, name))]
    if not any(os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES):
        missing.append(f"weights (one of {', '.join(WEIGHT_FILES)})")
    if missing:
        raise ValueError(
            f"--folder {folder!r} is not a complete subnet folder: it has no {', '.join(missing)}. Write it with "
            "`hf-nas extract` (the model card README.md included)."
        )


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas push`."""
    return HfArgumentParser(
        PushArguments, prog=prog, description=description_of(__doc__), formatter_class=HelpFormatter
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas push` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    (args,) = parse_arguments(build_parser(prog), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        files = push_subnet_folder(
            args.folder,
            args.repo_id,
            private=args.private,
            token=args.token,
            dry_run=args.dry_run,
            commit_message=args.commit_message,
        )
    except PushError as e:
        raise SystemExit(str(e)) from None  # one line on stderr, exit status 1, no traceback
    if not args.dry_run:
        print(
            f"Pushed {len(files)} files from {os.path.abspath(args.folder)} to https://huggingface.co/{args.repo_id}"
        )


if __name__ == "__main__":
    main()
