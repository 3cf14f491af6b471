"""Push a subnet folder written by scripts/extract_subnet.py (model, config, tokenizer or image processor, README.md
card) to a model repo on the Hugging Face Hub, created if needed, in one commit. `--token` defaults to `HF_TOKEN` or
the token saved by `hf auth login`.

The same program as `hf-nas push`: its code, options and examples are in `hf_nas.commands.push`
(`python scripts/push_subnet.py --help`).
"""

from hf_nas.commands.push import main

if __name__ == "__main__":
    main()
