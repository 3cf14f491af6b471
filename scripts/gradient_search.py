"""Search a supernet by gradient descent in its weight-entangled space (TangleNAS) and select subnets.

Trains the supernet's weights and its architecture parameters together (bi-level: weight steps on the training
rows, architecture steps on a held-out part of them), then selects a subnet per method (argmax of the architecture
weights, and/or perturbation-based selection, DARTS-PT), optionally under a MAC budget. Writes
`selected_subnets.json` (each subnet and its MAC ratio), the supernet with its architecture parameters, and with
--extract each selected subnet as an ordinary checkpoint (`subnet-<method>/`).

    python scripts/gradient_search.py --train_file data/sst2_sample.tsv --output_dir out/gradient \
        --max_steps 200 --arch_optimizer darts --resource_penalty 1 --target_macs_ratio 0.5 --extract
    python scripts/gradient_search.py args.json

The same program as `hf-nas gradient-search` (`hf_nas.commands.gradient_search`), with the same options.
"""

from hf_nas.commands.gradient_search import main

if __name__ == "__main__":
    main()
