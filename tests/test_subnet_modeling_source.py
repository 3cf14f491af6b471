"""The per-layer subnet modeling files share one source: their shared block is up to date with
`hf_nas/models/subnet_common.py` (a hand edit of one copy fails here), and each file stays self-contained: copied alone
into an empty folder, it imports and builds a tiny model in a fresh interpreter that cannot import hf_nas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_nas.models import generate_subnet_modeling as gen
from hf_nas.models.families import FAMILIES

MODELS_DIR = Path(gen.__file__).parent
FILES = {name: MODELS_DIR / name / family.subnet_modeling_file for name, family in FAMILIES.items()}
# family -> (config class, model classes, config kwargs); a model with `vocab_size` takes `input_ids`
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
IMAGE = {"image_size": 32, "patch_size": 8}
BUILDS = {
    "bert": ("BertSubnetConfig", ["BertSubnetModel", "BertSubnetForMaskedLM"], {**TINY, "vocab_size": 99}),
    "vit": ("ViTSubnetConfig", ["ViTSubnetModel", "ViTSubnetForImageClassification"], {**TINY, **IMAGE}),
    "beit": (
        "BeitSubnetConfig",
        ["BeitSubnetModel", "BeitSubnetForImageClassification"],
        {**TINY, **IMAGE, "use_relative_position_bias": True, "use_shared_relative_position_bias": True},
    ),
}


def test_the_generator_covers_every_family():
    assert sorted(gen.default_targets()) == sorted(FILES.values())
    assert set(BUILDS) == set(FAMILIES)


def test_shared_blocks_are_up_to_date(capsys):
    assert gen.main(["--check"]) == 0, (
        f"A subnet modeling file differs from {gen.SOURCE.name}: edit the shared block there and run `{gen.COMMAND}`. "
        + capsys.readouterr().err
    )


def test_the_source_block_is_valid_and_defines_the_source_api():
    from hf_nas.models import subnet_common

    block = gen.shared_block(gen.SOURCE.read_text())
    gen.check_block(block)
    defined = {
        line.split("(")[0].split(":")[0].split()[1]
        for line in block.splitlines()
        if line.startswith(("def ", "class "))
    }
    assert set(subnet_common.__all__) <= defined


def test_check_fails_on_a_hand_edited_copy_and_the_generator_repairs_it(tmp_path, capsys):
    target = tmp_path / "modeling_vit_subnet.py"
    original = FILES["vit"].read_text()
    target.write_text(original.replace(gen.END, "EDITED_BY_HAND = True\n" + gen.END))
    assert gen.main(["--check", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert gen.main([str(target)]) == 0
    assert target.read_text() == original


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda text: text.replace(gen.END + "\n", ""), "must have exactly one line"),
        (lambda text: text.replace("from dataclasses import dataclass\n", ""), r"must import \['dataclass'\]"),
    ],
)
def test_a_target_without_markers_or_imports_is_refused(tmp_path, edit, pattern):
    target = tmp_path / "modeling_bert_subnet.py"
    target.write_text(edit(FILES["bert"].read_text()))
    with pytest.raises(ValueError, match=pattern):
        gen.main(["--check", str(target)])


def test_a_block_that_imports_or_names_the_package_is_refused():
    with pytest.raises(ValueError, match="must not import"):
        gen.check_block("import os\n")
    with pytest.raises(ValueError, match="must not mention 'hf_nas'"):
        gen.check_block("x = 'hf_nas'\n")


STANDALONE_SCRIPT = textwrap.dedent(
    """
    import importlib, json, os, sys
    module_name, build = sys.argv[1], json.loads(sys.argv[2])
    # this folder, the standard library and site-packages; no folder holding the package
    sys.path[:] = [os.getcwd(), *(p for p in sys.path if p and not os.path.isdir(os.path.join(p, "hf_nas")))]
    sys.modules["hf_nas"] = None  # the editable install's finder would find it otherwise
    import torch

    module = importlib.import_module(module_name)
    config_class, model_classes, kwargs = build
    config = getattr(module, config_class)(
        **kwargs, layer_num_attention_heads=[1, 3], layer_intermediate_sizes=[16, 48]
    )
    inputs = {"input_ids": torch.tensor([[1, 2, 3]])} if "vocab_size" in kwargs else {"pixel_values": torch.randn(1, 3, 32, 32)}
    results = {}
    for name in model_classes:
        model = getattr(module, name)(config).eval()
        layout = model.layer_layout
        layer = model.base_model.get_submodule(layout.layers)[1]
        with torch.no_grad():
            output = model(**inputs)
        results[name] = {
            "query": layer.get_submodule(layout.qkv[0]).out_features,
            "ffn": layer.get_submodule(layout.ffn_input).out_features,
            "finite": all(bool(torch.isfinite(v).all()) for v in output.values() if isinstance(v, torch.Tensor)),
        }
    results["hf_nas"] = sorted(m for m in sys.modules if m.split(".")[0] == "hf_nas" and sys.modules[m])
    results["file"] = module.__file__
    print("RESULTS" + json.dumps(results))
    """
)


@pytest.mark.parametrize("family", list(BUILDS))
def test_each_file_imports_and_builds_standalone(family, tmp_path):
    source = FILES[family]
    assert "hf_nas" not in source.read_text()
    (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "check.py").write_text(STANDALONE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-I", "check.py", source.stem, json.dumps(BUILDS[family])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS"))[7:])
    assert results.pop("hf_nas") == [] and results.pop("file") == str(tmp_path / source.name)
    for name, result in results.items():
        assert result == {"query": 3 * 8, "ffn": 48, "finite": True}, name
