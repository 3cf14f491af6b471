"""Compress a subnet folder written by scripts/extract_subnet.py: sparsity (`--sparsity`, `--method jackpot|magnitude`),
weight quantization (`--bits`, `--quant nupes|uniform`) and an ONNX export checked against ONNX Runtime (`--onnx`),
chained in that order. The folder written to `--output_dir` loads as the input did (plain transformers for a vanilla
subnet), with its tokenizer or image processor, its model card (plus a "Compression" section per step),
`compression.json`, and `quantization.safetensors` (the integer codes) or `onnx/` when those steps ran.

The same program as `hf-nas compress`: its code, options and examples are in `hf_nas.commands.compress`
(`python scripts/compress_subnet.py --help`).
"""

from hf_nas.commands.compress import main

if __name__ == "__main__":
    main()
