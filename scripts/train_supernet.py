"""Fine-tune a vanilla BERT, ViT or BEiT checkpoint into a supernet whose every subnet is good.

The same program as `hf-nas train`: its code, options and examples are in `hf_nas.commands.train`
(`python scripts/train_supernet.py --help`).
"""

from hf_nas.commands.train import main

if __name__ == "__main__":
    main()
