"""`--help` of every `hf-nas` command: each option hf-nas defines (those of transformers' `TrainingArguments` aside)
has a help text, and shows its default at most once."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
from transformers import HfArgumentParser, TrainingArguments, ViTConfig

from hf_nas.commands import COMMANDS
from hf_nas.utils import default_text_checkpoint

TRANSFORMERS_OPTIONS = {f.name for f in dataclasses.fields(TrainingArguments)}


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> str:
    """A ViT config folder: commands that read the checkpoint from the command line then show the image options."""
    folder = tmp_path_factory.mktemp("vit")
    ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64).save_pretrained(folder)
    return str(folder)


def parsers(name: str, vit_folder: str) -> list[HfArgumentParser]:
    """The parsers of command `name`: one, or for commands whose options depend on the checkpoint in `argv`, the text
    one and the image one."""
    build_parser = importlib.import_module(COMMANDS[name].module).build_parser
    if "argv" not in inspect.signature(build_parser).parameters:
        return [build_parser(prog=f"hf-nas {name}")]
    image_argv = ["--model_name_or_path", vit_folder, "--supernet", vit_folder]
    return [build_parser([], prog=f"hf-nas {name}"), build_parser(image_argv, prog=f"hf-nas {name}")]


def hf_nas_options(parser: HfArgumentParser) -> dict[str, str]:
    """Each option hf-nas defines and its help as `--help` prints it (`None` when it has none)."""
    formatter = parser._get_formatter()
    return {
        action.option_strings[0]: formatter._expand_help(action) if action.help else None
        for action in parser._actions
        if action.option_strings and action.dest not in TRANSFORMERS_OPTIONS and action.dest != "help"
    }


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_and_one_default(name, vit_folder, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    problems = []
    for parser in parsers(name, vit_folder):
        for option, help_text in hf_nas_options(parser).items():
            if not help_text or not help_text.strip():
                problems.append(f"{option}: no help")
            elif help_text.count("(default:") > 1:
                problems.append(f"{option}: the default twice: {help_text!r}")
    assert not problems, f"hf-nas {name}:\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("name", ["train", "finetune", "distill", "gradient-search"])
def test_help_shows_where_the_default_checkpoint_lives(name, vit_folder):
    (parser, *_) = parsers(name, vit_folder)
    help_text = " ".join(parser.format_help().split())
    assert f"Default: sentence-transformers/all-MiniLM-L6-v2, installed at {default_text_checkpoint()}." in help_text
    assert "(default: None)" not in hf_nas_options(parser)["--model_name_or_path"]


def test_image_options_of_train_have_help(vit_folder):
    options = hf_nas_options(parsers("train", vit_folder)[1])
    assert {"--data_dir", "--image_size", "--label_column", "--image_column"} <= set(options)
    assert options["--label_column"] == "Column of the class labels. (default: label)"
