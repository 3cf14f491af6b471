"""Fine-tune a vanilla BERT, ViT or BEiT checkpoint into a supernet whose every subnet is good.

Two recipes, one command (`--recipe`):
- `one_pass` (default; InstaTune): the supernet is built during the one fine-tuning; the largest subnet teaches in
  place. At equal training compute it gave better subnets than teacher-first (docs/benchmarks/supernet.md).
- `teacher_first`: fine-tune the full model (`--teacher_max_steps`, default `--max_steps`) or take
  `--teacher_model_name_or_path`, save it to `<output_dir>/teacher`, initialise the supernet from it, reorder heads
  and neurons by importance on it, then train the supernet (BigNAS sandwich) with distillation from that fixed
  teacher: logits and the hidden states of every kept layer. A rerun reuses a saved teacher and resumes the
  supernet from its last checkpoint.

Both use the benchmarked levers by default (`hf_nas.training.recipes.RECIPE_DEFAULTS`: hidden-state distillation at
every kept layer, gradient protection of the largest subnet, half the random subnets uniform); any of them can be
set on the command line or in the JSON file.

In the style of transformers' run_glue.py and run_image_classification.py: arguments from the command line or one
JSON file. The checkpoint's model type picks the data options: text classification for BERT (--train_file, ...),
image classification for ViT and BEiT (--data_dir or --train_dir / --validation_dir, --image_size, ...; see
`hf_nas.data.ImageDataArguments`, or `--help` after `--model_name_or_path`).

    python scripts/train_supernet.py --train_file data/sst2_sample.tsv --validation_file data/sst2_sample_dev.tsv \
        --output_dir out/supernet --max_steps 50 --per_device_train_batch_size 16 --eval_strategy steps
    python scripts/train_supernet.py --model_name_or_path path/to/vit --data_dir data/cifar10_sample \
        --image_size 56 --output_dir out/vit-supernet --max_steps 50 --do_train --do_eval
    accelerate launch scripts/train_supernet.py args.json        # or: torchrun --nproc_per_node 2 ...

For images, the image processor (resizing to --image_size) is saved beside the supernet, and every batch carries
`interpolate_pos_encoding` (default: True when --image_size differs from the checkpoint's image size).

The same program as `hf-nas train` (`hf_nas.commands.train`), with the same options.
"""

from hf_nas.commands.train import main

if __name__ == "__main__":
    main()
