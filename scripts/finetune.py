"""Fine-tune the full vanilla BERT, ViT or BEiT checkpoint on a classification task with a plain `Trainer`.

The same program as `hf-nas finetune`: its code, options and examples are in `hf_nas.commands.finetune`
(`python scripts/finetune.py --help`).
"""

from hf_nas.commands.finetune import main

if __name__ == "__main__":
    main()
