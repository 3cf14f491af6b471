"""Push a subnet folder written by scripts/extract_subnet.py (model, config, tokenizer or image processor, README.md
card) to a model repo on the Hugging Face Hub, created if needed, in one commit. `--token` defaults to `HF_TOKEN` or
the token saved by `hf auth login`.

    python scripts/push_subnet.py --folder out/subnet --repo_id me/bert-subnet
    python scripts/push_subnet.py --folder out/subnet --repo_id me/bert-subnet --private --commit_message "Half MACs"
    python scripts/push_subnet.py --folder out/subnet --repo_id me/bert-subnet --dry_run   # list the files only

The same program as `hf-nas push` (`hf_nas.commands.push`), with the same options.
"""

from hf_nas.commands.push import main

if __name__ == "__main__":
    main()
