"""Extract one subnet of a trained supernet as an ordinary checkpoint with a model card, and push it to the Hub.

The same program as `hf-nas extract`: its code, options and examples are in `hf_nas.commands.extract`
(`python scripts/extract_subnet.py --help`).
"""

from hf_nas.commands.extract import main

if __name__ == "__main__":
    main()
