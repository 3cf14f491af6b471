"""Task-agnostic supernet distillation (AutoDistil): distill K supernets, one per compact sub-space (tiny, small,
base), from a teacher on unlabeled text with the last-layer self-attention relation loss only. Fine-tune any of them
afterwards with scripts/train_supernet.py (--model_name_or_path <output_dir>/<sub-space>).

    python scripts/distill_supernet.py --text_file data/sst2_sample.tsv --output_dir out/distilled --max_steps 100

The same program as `hf-nas distill` (`hf_nas.commands.distill`), with the same options.
"""

from hf_nas.commands.distill import main

if __name__ == "__main__":
    main()
