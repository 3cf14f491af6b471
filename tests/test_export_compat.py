"""Exported per-layer subnets keep loading under the oldest transformers that setup.cfg allows.

The test suite itself runs on the newest installed transformers; here the oldest allowed release (the floor of
`transformers>=X` in setup.cfg) is installed into a separate folder, and per-layer BERT, ViT and BEiT exports are
reloaded with it, in a fresh interpreter that cannot import hf-nas, with `trust_remote_code=True`; the outputs must
equal the supernet's to 1e-5. If this fails, raise the floor in setup.cfg.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import BeitConfig, BertConfig, ViTConfig

from hf_nas.models.families import FAMILIES
from tests.conftest import randomize_parameters

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64)
CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=99, num_labels=3, **SIZES),
    "vit": lambda: ViTConfig(image_size=32, patch_size=8, num_labels=3, **SIZES),
    "beit": lambda: BeitConfig(
        image_size=32, patch_size=8, num_labels=3, use_relative_position_bias=True, layer_scale_init_value=0.1, **SIZES
    ),
}
TASKS = {"bert": "sequence-classification", "vit": "image-classification", "beit": "image-classification"}


def transformers_floor() -> str:
    """The lower bound of transformers in setup.cfg (`HF_NAS_COMPAT_TRANSFORMERS` overrides it, to probe a release)."""
    if os.environ.get("HF_NAS_COMPAT_TRANSFORMERS"):
        return os.environ["HF_NAS_COMPAT_TRANSFORMERS"]
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    requirement = next(r for r in parser["options"]["install_requires"].split("\n") if r.startswith("transformers"))
    match = re.search(r">=\s*([0-9][0-9.]*)", requirement)
    assert match, f"setup.cfg states no lower bound for transformers: {requirement!r}"
    version = match.group(1)
    return version if version.count(".") >= 2 else version + ".0" * (2 - version.count("."))


@pytest.fixture(scope="module")
def old_transformers(tmp_path_factory) -> tuple[str, str]:
    """A folder holding the oldest allowed transformers and its dependencies (torch comes from this environment)."""
    version = transformers_floor()
    cache = Path(os.environ.get("HF_NAS_COMPAT_CACHE", Path.home() / ".cache" / "hf_nas_compat")) / version
    if not (cache / "transformers" / "__init__.py").is_file():
        target = tmp_path_factory.mktemp("transformers-old")
        command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), f"transformers=={version}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"could not install transformers=={version}:\n{result.stderr[-2000:]}"
        cache.parent.mkdir(parents=True, exist_ok=True)
        if not cache.exists():  # another run may have filled it meanwhile
            os.replace(target, cache)
    return version, str(cache)


def _export(name: str, folder: Path) -> tuple[dict, torch.Tensor]:
    family = FAMILIES[name]
    supernet = randomize_parameters(family.elastic_class(TASKS[name])(CONFIGS[name]()), seed=1).eval()
    space = supernet.search_space
    subnet = space.subnet(2, (4, 2), (64, 32), 32)  # per-layer sizes: saved with its own modeling file
    torch.manual_seed(0)
    if family.is_image:
        inputs = {"pixel_values": torch.randn(2, 3, 32, 32)}
    else:
        inputs = {"input_ids": torch.randint(0, 99, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    with torch.no_grad(), supernet.subnet(subnet):
        expected = supernet(**inputs).logits
    supernet.extract_subnet(subnet).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == family.subnet_model_type
    torch.save({k: v for k, v in inputs.items()}, folder / "inputs.pt")
    return inputs, expected


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_per_layer_export_loads_under_the_oldest_allowed_transformers(name, old_transformers, tmp_path):
    version, site = old_transformers
    folder = tmp_path / name
    _, expected = _export(name, folder)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {site!r})
        sys.modules["hf_nas"] = None  # a machine without hf-nas
        # nor the optional `kernels` package: releases newer than the old transformers break its import there
        sys.modules["kernels"] = None
        import torch, transformers
        assert transformers.__version__ == {version!r}, transformers.__version__
        from transformers import AutoModelFor{"ImageClassification" if FAMILIES[name].is_image else "SequenceClassification"} as Auto
        model = Auto.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        inputs = torch.load({str(folder / "inputs.pt")!r})
        with torch.no_grad():
            torch.save(model(**inputs).logits, {str(folder / "logits.pt")!r})
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (
        f"transformers=={version} could not load the {name} export:\n{result.stderr[-3000:]}"
    )
    torch.testing.assert_close(torch.load(folder / "logits.pt"), expected, rtol=0, atol=1e-5)
