"""Search a trained supernet for the subnets with the best accuracy for their size and latency.

The same program as `hf-nas search`: its code, options and examples are in `hf_nas.commands.search`
(`python scripts/search_subnets.py --help`).
"""

from hf_nas.commands.search import main

if __name__ == "__main__":
    main()
