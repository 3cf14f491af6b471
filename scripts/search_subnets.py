"""Search a trained supernet for the subnets with the best accuracy for their size and latency.

Writes `search_results.json` (every measured subnet), `pareto.csv`, `pareto.png` and the hypervolume to --output_dir;
rerun with the same --output_dir to resume an interrupted search.

    python scripts/search_subnets.py --supernet out/supernet --validation_file data/sst2_sample_dev.tsv \
        --output_dir out/search --objectives accuracy,macs,latency --num_evaluations 100
    python scripts/search_subnets.py ... --constraint "latency<=10" --constraint "macs<=1e9"
    python scripts/search_subnets.py --supernet out/vit-supernet --data_dir data/cifar10_sample \
        --output_dir out/vit-search --num_evaluations 50
    python scripts/search_subnets.py --supernet out/supernet --train_file data/sst2_sample.tsv \
        --validation_split_percentage 10 --output_dir out/search

The supernet's model type picks the data options: text classification for BERT (--validation_file, ...), image
classification for ViT and BEiT (--data_dir or --validation_dir, ...; see `hf_nas.data.ImageDataArguments`). Images
are evaluated, and MACs and latency measured, at the size of the image processor saved with the supernet (or
--image_size).

Subnets are measured on the data's validation split, or with `--validation_split_percentage N` on N% of the
training rows held out with `--seed`; data without a validation split is an error.

The same program as `hf-nas search` (`hf_nas.commands.search`), with the same options.
"""

from hf_nas.commands.search import main

if __name__ == "__main__":
    main()
