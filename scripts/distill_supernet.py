"""Task-agnostic supernet distillation (AutoDistil): distill K supernets, one per compact sub-space (tiny, small,
base), from a teacher on unlabeled text with the last-layer self-attention relation loss only. Fine-tune any of them
afterwards with scripts/train_supernet.py (--model_name_or_path <output_dir>/<sub-space>).

The same program as `hf-nas distill`: its code, options and examples are in `hf_nas.commands.distill`
(`python scripts/distill_supernet.py --help`).
"""

from hf_nas.commands.distill import main

if __name__ == "__main__":
    main()
