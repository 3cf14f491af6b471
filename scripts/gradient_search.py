"""Search a supernet by gradient descent in its weight-entangled space (TangleNAS) and select subnets.

The same program as `hf-nas gradient-search`: its code, options and examples are in `hf_nas.commands.gradient_search`
(`python scripts/gradient_search.py --help`).
"""

from hf_nas.commands.gradient_search import main

if __name__ == "__main__":
    main()
