"""Compress a subnet folder written by scripts/extract_subnet.py: `--method magnitude` sets the `--sparsity` share of
smallest-magnitude encoder linear weights to zero, and the folder written to `--output_dir` loads exactly as the input
did, with its tokenizer or image processor, its model card (plus a "Compression" section) and `compression.json`.

The same program as `hf-nas compress`: its code, options and examples are in `hf_nas.commands.compress`
(`python scripts/compress_subnet.py --help`).
"""

from hf_nas.commands.compress import main

if __name__ == "__main__":
    main()
