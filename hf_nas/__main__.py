"""`python -m hf_nas <command> ...`: the `hf-nas` console command (see `hf_nas.cli`)."""

from __future__ import annotations

from hf_nas.cli import main

if __name__ == "__main__":
    main(prog="python -m hf_nas")
