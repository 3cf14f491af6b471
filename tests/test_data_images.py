"""Image-classification data: imagefolder folders and archives, the shipped CIFAR-10 sample, transforms, errors."""

from __future__ import annotations

import json
import os
import tarfile

import datasets
import pytest
import torch
from PIL import Image
from transformers import BertConfig, ViTConfig, ViTImageProcessor

from hf_nas.data import (
    ImageClassificationCollator,
    ImageClassificationTransform,
    ImageDataArguments,
    TextDataArguments,
    argument_from_command_line,
    checkpoint_modality,
    data_arguments_class,
    extract_archive,
    image_label_names,
    load_image_datasets,
    load_image_processor,
    needs_interpolate_pos_encoding,
    pick_image_column,
    prepare_image_datasets,
    processor_image_size,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "cifar10_sample")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_imagefolder(root, splits=("train", "validation"), classes=("cat", "dog"), per_class=3, size=(20, 12)):
    """Small RGB PNGs in the imagefolder layout root/<split>/<class>/<n>.png, a different colour per image."""
    for s, split in enumerate(splits):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", size, (40 * c, 30 * i, 100 + 50 * s)).save(folder / f"{i}.png")
    return root


@pytest.fixture
def imagefolder(tmp_path):
    return make_imagefolder(tmp_path / "images")


@pytest.fixture
def processor_path(tmp_path):
    """A saved ViT image processor (224 px) and tiny ViT config, as in a checkpoint folder."""
    path = tmp_path / "checkpoint"
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(path)
    ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64).save_pretrained(path)
    return path


def test_data_dir_with_split_folders(imagefolder):
    raw = load_image_datasets(ImageDataArguments(data_dir=str(imagefolder)))
    assert set(raw) == {"train", "validation"}
    assert len(raw["train"]) == 6 and len(raw["validation"]) == 6
    assert image_label_names(raw["train"]) == ["cat", "dog"]
    assert isinstance(raw["train"].features["image"], datasets.Image)


def test_train_and_validation_dirs(imagefolder):
    raw = load_image_datasets(
        ImageDataArguments(train_dir=str(imagefolder / "train"), validation_dir=str(imagefolder / "validation"))
    )
    assert len(raw["train"]) == 6 and len(raw["validation"]) == 6
    assert image_label_names(raw["validation"]) == ["cat", "dog"]


def test_only_a_validation_dir(imagefolder):
    raw = load_image_datasets(ImageDataArguments(validation_dir=str(imagefolder / "validation")))
    assert set(raw) == {"validation"}


def test_archive_is_extracted_once_and_loads(imagefolder, tmp_path):
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(imagefolder / "train", arcname="train")
        tar.add(imagefolder / "validation", arcname="test")  # `test` is the validation split when alone
    cache = tmp_path / "cache"
    raw = load_image_datasets(ImageDataArguments(data_dir=str(archive), cache_dir=str(cache)))
    assert len(raw["train"]) == 6 and len(raw["validation"]) == 6
    (folder,) = os.listdir(cache)
    assert folder.startswith("images-")
    assert extract_archive(archive, cache) == str(cache / folder)  # reused, not extracted again
    assert os.listdir(cache) == [folder]


def test_shipped_cifar10_sample():
    raw = load_image_datasets(ImageDataArguments(data_dir=SAMPLE))
    assert len(raw["train"]) == 200 and len(raw["validation"]) == 100
    assert image_label_names(raw["train"]) == CIFAR10_CLASSES
    image = raw["validation"][0]["image"]
    assert image.size == (32, 32)
    counts = torch.bincount(torch.tensor(raw["train"]["label"]), minlength=10)
    assert counts.tolist() == [20] * 10


def test_seeded_subsets():
    args = ImageDataArguments(data_dir=SAMPLE, max_train_samples=30, max_eval_samples=10)
    first = load_image_datasets(args, seed=3)
    again = load_image_datasets(args, seed=3)
    other = load_image_datasets(args, seed=4)
    assert len(first["train"]) == 30 and len(first["validation"]) == 10
    assert first["train"]["label"] == again["train"]["label"]
    assert first["train"]["image"][0].tobytes() == again["train"]["image"][0].tobytes()
    assert [im.tobytes() for im in first["train"]["image"]] != [im.tobytes() for im in other["train"]["image"]]


@pytest.mark.parametrize("image_size", [None, 24, 56])
def test_transform_shape_follows_image_size(imagefolder, processor_path, image_size):
    processor = load_image_processor(processor_path, image_size)
    side = 224 if image_size is None else image_size
    assert processor_image_size(processor) == side
    raw = load_image_datasets(ImageDataArguments(data_dir=str(imagefolder)))
    splits = prepare_image_datasets(raw, processor, ImageDataArguments(data_dir=str(imagefolder)))
    example = splits["train"][0]
    assert example["pixel_values"].shape == (3, side, side)
    assert example["pixel_values"].dtype == torch.float32
    assert example["labels"] in (0, 1)
    # the resized processor is saved with its new size
    if image_size is not None:
        out = processor_path.parent / f"saved-{image_size}"
        processor.save_pretrained(out)
        saved = json.loads((out / "preprocessor_config.json").read_text())
        assert saved["size"] == {"height": image_size, "width": image_size}


def test_labels_are_mapped_through_the_model_label2id(imagefolder, processor_path):
    raw = load_image_datasets(ImageDataArguments(data_dir=str(imagefolder)))
    processor = load_image_processor(processor_path, 16)
    splits = prepare_image_datasets(
        raw, processor, ImageDataArguments(data_dir=str(imagefolder)), label2id={"dog": 0, "cat": 1}
    )
    names = image_label_names(raw["train"])
    expected = [1 - label for label in raw["train"]["label"]]  # cat <-> dog swapped
    assert [splits["train"][i]["labels"] for i in range(len(raw["train"]))] == expected
    assert names == ["cat", "dog"]
    wrong = prepare_image_datasets(raw, processor, ImageDataArguments(data_dir="x"), label2id={"bird": 0})
    with pytest.raises(ValueError, match="'cat' is not one of the model's labels"):
        wrong["train"][0]


def test_random_flip_is_seeded_and_only_for_training(processor_path):
    image = Image.new("RGB", (8, 8))
    image.putpixel((0, 0), (255, 255, 255))  # a white top-left pixel: flipped, it moves to the top right
    processor = load_image_processor(processor_path, 8)
    batch = {"image": [image] * 32, "label": [0] * 32}

    def flips(seed):
        out = ImageClassificationTransform(processor, "image", random_flip=True, seed=seed)(batch)["pixel_values"]
        return [bool(p[0, 0, -1] > p[0, 0, 0]) for p in out]

    assert flips(0) == flips(0)
    assert 0 < sum(flips(0)) < 32
    assert flips(0) != flips(1)
    plain = ImageClassificationTransform(processor, "image")(batch)["pixel_values"]
    assert all(p[0, 0, 0] > p[0, 0, -1] for p in plain)


def test_collator_stacks_and_carries_the_flag():
    rows = [{"pixel_values": torch.full((3, 4, 4), float(i)), "labels": i} for i in range(3)]
    batch = ImageClassificationCollator()(rows)
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].shape == (3, 3, 4, 4) and batch["labels"].tolist() == [0, 1, 2]
    assert ImageClassificationCollator(interpolate_pos_encoding=True)(rows)["interpolate_pos_encoding"] is True
    with pytest.raises(ValueError, match="empty"):
        ImageClassificationCollator()([])


def test_needs_interpolate_pos_encoding():
    config = ViTConfig(image_size=224)
    assert needs_interpolate_pos_encoding(config, 56)
    assert not needs_interpolate_pos_encoding(config, 224)
    assert not needs_interpolate_pos_encoding(config, None)


def test_modality_and_arguments_by_checkpoint(tmp_path, processor_path):
    bert = tmp_path / "bert"
    BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4).save_pretrained(bert)
    assert checkpoint_modality(bert) == "text" and data_arguments_class(bert) is TextDataArguments
    assert (
        checkpoint_modality(processor_path) == "image" and data_arguments_class(processor_path) is ImageDataArguments
    )


def test_argument_from_command_line(tmp_path):
    assert argument_from_command_line("supernet", ["--supernet", "out/x", "--data_dir", "d"]) == "out/x"
    assert argument_from_command_line("supernet", ["--supernet=out/y"]) == "out/y"
    assert argument_from_command_line("supernet", ["--data_dir", "d"]) is None
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"supernet": "out/z", "data_dir": "d"}))
    assert argument_from_command_line("supernet", [str(args)]) == "out/z"


# ------------------------------------------------------------------------------------------------------------------
# errors
def test_arguments_need_a_source():
    with pytest.raises(ValueError, match="--dataset_name"):
        ImageDataArguments()
    with pytest.raises(ValueError, match="not both"):
        ImageDataArguments(dataset_name="cifar10", train_dir="x")
    with pytest.raises(ValueError, match="not both"):
        ImageDataArguments(data_dir="x", train_dir="y")
    with pytest.raises(ValueError, match="--image_size must be a positive"):
        ImageDataArguments(data_dir="x", image_size=0)
    with pytest.raises(ValueError, match="--max_train_samples"):
        ImageDataArguments(data_dir="x", max_train_samples=0)


def test_unknown_folder(tmp_path):
    with pytest.raises(ValueError, match="--train_dir .*nowhere.* is neither a folder nor"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "nowhere")))


def test_data_dir_without_split_folders(imagefolder):
    with pytest.raises(ValueError, match=r"has the folders \['cat', 'dog'\]; expected split folders"):
        load_image_datasets(ImageDataArguments(data_dir=str(imagefolder / "train")))


def test_split_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "0.png")
    with pytest.raises(ValueError, match="has no class folders"):
        load_image_datasets(ImageDataArguments(train_dir=str(tmp_path / "flat")))


def test_unsupported_archive(tmp_path):
    archive = tmp_path / "images.zip"
    archive.write_bytes(b"PK")
    with pytest.raises(ValueError, match="unsupported archive type"):
        extract_archive(archive)
    with pytest.raises(ValueError, match="is neither a folder nor"):
        load_image_datasets(ImageDataArguments(data_dir=str(archive)))


def test_missing_and_non_image_columns(imagefolder):
    with pytest.raises(ValueError, match=r"Columns \['nope'\] not in the train data"):
        load_image_datasets(ImageDataArguments(data_dir=str(imagefolder), label_column="nope"))
    with pytest.raises(ValueError, match="Column 'label' of the train data holds ClassLabel.*not images"):
        load_image_datasets(ImageDataArguments(data_dir=str(imagefolder), image_column="label"))
    text = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1]})
    with pytest.raises(ValueError, match="No image column found"):
        pick_image_column(text)


def test_transform_rejects_non_images(processor_path):
    transform = ImageClassificationTransform(load_image_processor(processor_path, 8), "image")
    with pytest.raises(ValueError, match="holds str, not a PIL image"):
        transform({"image": ["not an image"], "label": [0]})
