import io

import numpy as np
import pytest
from PIL import Image

from brainml import datasets
from brainml.datasets import DatasetError, discover, near_duplicates, perceptual_hash, task_classes


def write_image(path, seed, size=80):
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size))
    centre = rng.uniform(25, 55, 2)
    image = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < rng.uniform(200, 500)) * rng.uniform(0.4, 1.0)
    image = image + rng.uniform(0, 0.3, (size, size)) * (image > 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def make_tree(root, layout, per_class=3):
    for split, classes in layout.items():
        for name in classes:
            for i in range(per_class):
                folder = root / split / name if split else root / name
                write_image(folder / f"{name}_{i}.png", hash((split, name, i)) % 10_000)
    return root


def test_kaggle_layout(tmp_path):
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    index = discover(make_tree(tmp_path, {"Training": classes, "Testing": classes}))
    assert index.layout == "kaggle-4class"
    assert index.counts() == {"test": {c: 3 for c in classes}, "train": {c: 3 for c in classes}}
    assert task_classes(index, "classify") == tuple(classes)
    assert task_classes(index, "detect") == ("notumor", "tumor")


def test_sartaj_layout_maps_names(tmp_path):
    folders = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    index = discover(make_tree(tmp_path, {"Training": folders, "Testing": folders}, per_class=2))
    assert index.layout == "sartajbhuvaji"
    assert set(index.counts()["train"]) == {"glioma", "meningioma", "notumor", "pituitary"}


def test_yes_no_layout_ignores_pred(tmp_path):
    root = make_tree(tmp_path, {"": ["yes", "no", "pred"]}, per_class=2)
    index = discover(root)
    assert index.layout == "yes-no"
    assert index.counts() == {"train": {"notumor": 2, "tumor": 2}}
    assert any(path.endswith("pred") for path in index.ignored)
    with pytest.raises(DatasetError, match="cannot train a type classifier"):
        task_classes(index, "classify")


def test_folder_per_class_layout(tmp_path):
    index = discover(make_tree(tmp_path, {"": ["astrocytoma", "notumor"]}, per_class=2))
    assert index.layout == "folder-per-class"
    assert task_classes(index, "classify") == ("astrocytoma", "notumor")


def test_empty_or_missing_folder_says_what_layout_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="No labelled images found"):
        discover(tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        discover(tmp_path / "missing")


def test_duplicate_check_finds_resized_reencoded_copies_and_nothing_else(tmp_path):
    originals = []
    for seed in range(12):
        write_image(tmp_path / f"{seed}.png", seed, size=128)
        originals.append(np.asarray(Image.open(tmp_path / f"{seed}.png"), np.float32) / 255)
    copies = []
    for image in originals[:3]:
        buffer = io.BytesIO()
        Image.fromarray((image * 255).astype(np.uint8)).resize((200, 200)).save(buffer, "JPEG", quality=70)
        copies.append(np.asarray(Image.open(buffer), np.float32) / 255)
    held_out = np.stack([perceptual_hash(c) for c in copies])
    training = np.stack([perceptual_hash(o) for o in originals])
    assert near_duplicates(training, held_out).tolist() == [0, 1, 2]


def test_augmentation_is_in_training_pipeline_only():
    inputs = np.random.default_rng(0).uniform(size=(8, 32, 32, 1)).astype(np.float32)
    targets = np.arange(8, dtype=np.float32)
    plain = next(iter(datasets.tf_dataset(inputs, targets, 8, training=False)))
    assert np.array_equal(plain[0].numpy(), inputs)
    augmented = next(iter(datasets.tf_dataset(inputs, targets, 8, training=True, seed=1)))
    assert augmented[0].shape == (8, 32, 32, 1)
    assert not np.array_equal(np.sort(augmented[0].numpy().ravel()), np.sort(inputs.ravel()))
