"""Extract one subnet of a trained supernet as an ordinary checkpoint with a model card, and push it to the Hub.

The subnet is chosen by exactly one of: a SubnetConfig JSON file (`--subnet_json`), a point of the Pareto front of a
search (`--pareto_index` with `--results`), or the best feasible subnet of a search under constraints (`--constraint`
with `--results`, best by `--maximize`). Arguments come from the command line or one JSON file.

    python scripts/extract_subnet.py --supernet out/supernet --subnet_json subnet.json --output_dir out/subnet
    python scripts/extract_subnet.py --supernet out/supernet --results out/search --pareto_index 3 \
        --output_dir out/subnet --push_to_hub --hub_model_id me/bert-subnet --dry_run
    python scripts/extract_subnet.py --supernet out/supernet --results out/search --constraint "macs<=5e8" \
        --maximize accuracy --output_dir out/subnet

For ViT and BEiT supernets the image processor saved with the supernet is copied into the subnet folder, and latency
and MACs are measured at its image size (or `--image_size`).

`--finetune_steps N` (text supernets) adds a short distillation of the chosen subnet before it is saved: the subnet
alone is trained for N steps on `--train_file` with distillation from the teacher saved beside the supernet (the
teacher-first recipe), `--teacher_model_name_or_path`, or else the supernet's own full model (the one-pass recipe's
in-place teacher). The card then reports the accuracy without retraining and after it, apart
(`--validation_file`), and says how the subnet was trained.

`--results` is the output folder of scripts/search_subnets.py (`SearchResults.from_dir` reads its
`search_results.json`); the front is the one of `SearchResults.pareto_indices`, as listed in its `pareto.csv`.

The same program as `hf-nas extract` (`hf_nas.commands.extract`), with the same options.
"""

from hf_nas.commands.extract import main

if __name__ == "__main__":
    main()
