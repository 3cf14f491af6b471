"""The modeling files copied into extracted checkpoints run on users' machines with `trust_remote_code=True`: they may
import only the standard library's harmless modules, torch, transformers and huggingface_hub (a dependency of
transformers), and never run code from strings, open files or reach the network."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from hf_nas.models.families import FAMILIES

MODELS_DIR = Path(__file__).resolve().parents[1] / "hf_nas" / "models"
FILES = [MODELS_DIR / name / family.subnet_modeling_file for name, family in sorted(FAMILIES.items())]
THIRD_PARTY = {"torch", "transformers", "huggingface_hub"}
# standard-library modules that reach files, processes, the network or the interpreter's internals
FORBIDDEN_STDLIB = {
    "builtins", "ctypes", "http", "importlib", "io", "marshal", "multiprocessing", "os", "pathlib", "pickle",
    "shutil", "socket", "ssl", "subprocess", "sys", "tempfile", "urllib", "webbrowser", "zipfile",
}  # fmt: skip
FORBIDDEN_CALLS = {"eval", "exec", "compile", "open", "__import__", "breakpoint", "input"}


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("." * node.level + (node.module or ""))  # relative: not self-contained
            else:
                names.append(node.module)
    return names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imports_are_on_the_allow_list(path):
    for module in _imported_modules(ast.parse(path.read_text())):
        root = module.split(".")[0]
        assert not module.startswith("."), f"{path.name}: relative import {module!r}"
        assert root != "hf_nas", f"{path.name} imports hf_nas"
        allowed = root in THIRD_PARTY or (root in sys.stdlib_module_names and root not in FORBIDDEN_STDLIB)
        assert allowed or root == "__future__", f"{path.name} imports {module!r}, outside the allow-list"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_dynamic_code_file_or_network_access(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"
        if isinstance(node, ast.Name):
            assert node.id not in {"__builtins__", "globals", "locals"}, f"{path.name}:{node.lineno} uses {node.id}"


def test_the_allow_list_check_catches_a_bad_file(tmp_path):
    bad = ast.parse("import os\nfrom hf_nas import x\nfrom . import y\n")
    assert _imported_modules(bad) == ["os", "hf_nas", "."]
