"""Doctest set-up for `pytest --doctest-modules hf_nas` (part of `make test`).

The docstrings follow the transformers convention of wrapping examples in Markdown code fences; the expected output of
an example ends at the closing fence instead of running into it, and imports in examples stay local.
"""

from __future__ import annotations

import doctest
import re

_EXAMPLE_RE = re.compile(
    r"""
    (?P<source>(?:^(?P<indent>[ ]*)>>>.*)(?:\n[ ]*\.\.\..*)*)\n?
    (?P<want>(?:(?![ ]*$)(?![ ]*>>>)(?![ ]*```).+$\n?)*)
    """,
    re.MULTILINE | re.VERBOSE,
)


# pytest's doctest finder holds a parser built at import time, so the pattern is set on the class itself.
doctest.DocTestParser._EXAMPLE_RE = _EXAMPLE_RE
