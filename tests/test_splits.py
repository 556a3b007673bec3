import csv

import numpy as np
import pytest
from PIL import Image

from brainml import datasets, evaluate
from brainml.datasets import discover
from brainml.splits import (SplitPlan, duplicate_clusters, group_split, manifest_groups, same_patient,
                            split_samples, thumbnails)

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def head(seed, size=64):
    """A lopsided bright blob on black: its mirror is a different image, unless the check knows about mirrors."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size))
    centre = rng.uniform(18, 46, 2)
    image = ((rows - centre[0]) ** 2 + (cols - centre[1] * 0.7) ** 2 < rng.uniform(80, 300)) * rng.uniform(0.5, 1.0)
    image = image + rng.uniform(0, 0.4, (size, size)) * (image > 0)
    return np.clip(image, 0, 1).astype(np.float32)


def save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).astype(np.uint8)).save(path)


def test_mirrored_copy_is_clustered_with_its_original_and_others_stay_apart():
    originals = [head(seed) for seed in range(12)]
    images = originals + [originals[3][:, ::-1], originals[7][:, ::-1]]
    clusters = duplicate_clusters(thumbnails(images))
    assert clusters[12] == clusters[3] and clusters[13] == clusters[7]
    assert len(set(clusters[:12])) == 12  # unrelated images are never merged


def test_slightly_changed_copy_is_a_duplicate_and_an_unrelated_slice_is_not():
    image = head(1)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.02, image.shape), 0, 1)
    clusters = duplicate_clusters(thumbnails([image, noisy, head(2)]))
    assert clusters[0] == clusters[1] != clusters[2]


def test_group_split_keeps_each_group_on_one_side_and_every_class_on_both():
    groups = np.repeat(np.arange(40), 5)  # 40 patients, 5 slices each
    strata = np.repeat(np.arange(40) % 4, 5)
    keep, held = group_split(strata, groups, 0.25, seed=3)
    assert set(groups[keep]).isdisjoint(groups[held])
    assert set(strata[held]) == set(strata[keep]) == {0, 1, 2, 3}
    assert 0.15 < len(held) / len(groups) < 0.35
    again = group_split(strata, groups, 0.25, seed=3)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(group_split(strata, groups, 0.25, seed=4)[1], held)


def test_same_patient_folds_ids_that_differ_in_a_final_letter():
    assert same_patient("patient:MR024780B") == same_patient("patient:MR024780G") == "patient:MR024780"
    assert same_patient("dup:12") == "dup:12"


def make_set(root, with_manifest=True, mirrored_twins=True):
    """Training/ and Testing/ with 4 classes; patients of 3 slices; a mirrored twin of each patient's first slice in
    the other official split (as in the public merge). Returns the rows written."""
    rows = []
    for patient in range(24):
        label = CLASSES[patient % 4]
        for k in range(3):
            split = "Training" if patient % 3 else "Testing"
            image = head(1000 * patient + k)
            path = f"{split}/{label}/p{patient}_{k}.png"
            save(root / path, image)
            rows.append({"file": path, "split": split, "class": label, "source": "figshare" if patient % 2 else "br35h",
                         "group": f"patient:MR{patient:04d}" + ("B" if k == 2 else "")})
        if mirrored_twins:
            other = "Testing" if split == "Training" else "Training"
            path = f"{other}/{label}/p{patient}_mirror.png"
            save(root / path, head(1000 * patient)[:, ::-1].copy())
            rows.append({"file": path, "split": other, "class": label, "source": "figshare",
                         "group": f"patient:MR{patient:04d}"})
    if with_manifest:
        with open(root / "manifest.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


@pytest.mark.parametrize("with_manifest", [True, False])
def test_primary_split_is_group_disjoint_and_mirrored_copies_land_with_their_original(tmp_path, with_manifest):
    make_set(tmp_path, with_manifest=with_manifest)
    index = discover(tmp_path)
    splits, facts = split_samples(index, SplitPlan(mode="groups", seed=0, val_fraction=0.2, test_fraction=0.2))
    side_of = {s.path.name: name for name, samples in splits.items() for s in samples}
    for patient in range(24):
        assert side_of[f"p{patient}_mirror.png"] == side_of[f"p{patient}_0.png"]
    if with_manifest:  # the manifest's patients are whole on one side; without it only copies are known
        patient_of = {name: {s.path.name.split("_")[0] for s in samples} for name, samples in splits.items()}
        assert patient_of["train"].isdisjoint(patient_of["test"])
        assert patient_of["train"].isdisjoint(patient_of["validation"])
        assert patient_of["validation"].isdisjoint(patient_of["test"])
    assert sum(len(samples) for samples in splits.values()) == len(index.samples)
    assert facts["test_images_sharing_a_group_with_train"] == 0
    if with_manifest:
        # Every official test patient also has a (mirrored) slice in official training.
        assert facts["official_test_images_sharing_a_group_with_official_training"] == facts["official_test_images"]
        assert "manifest" in facts["groups_from"]
    else:
        assert "mirror-aware" in facts["groups_from"]


def test_official_split_keeps_the_published_test_and_counts_its_leaks(tmp_path):
    make_set(tmp_path)
    index = discover(tmp_path)
    splits, facts = split_samples(index, SplitPlan(mode="official", seed=0, val_fraction=0.2))
    assert all(sample.split == "test" for sample in splits["test"])
    assert len(splits["test"]) == sum(s.split == "test" for s in index.samples)
    assert facts["test_images_sharing_a_group_with_train"] > 0


def test_manifest_groups_fold_revisits_and_unlisted_files_are_groups_of_their_own(tmp_path):
    rows = make_set(tmp_path, mirrored_twins=False)
    save(tmp_path / "Training/glioma/unlisted.png", head(5))
    index = discover(tmp_path)
    groups = dict(zip((s.path.name for s in index.samples), manifest_groups(tmp_path, index.samples)))
    assert groups["p1_0.png"] == groups["p1_2.png"] == "patient:MR0001"
    assert groups["unlisted.png"].startswith("file:")
    assert len(rows) == len(index.samples) - 1


def test_masks_named_by_stem_are_found_and_tumor_slices_without_one_are_unknown(tmp_path):
    for name in ("a", "b"):
        save(tmp_path / f"Training/glioma/{name}.jpg", head(1))
    save(tmp_path / "Training/notumor/n.jpg", head(2))
    mask = np.zeros((64, 64), np.float32)
    mask[10:20, 10:20] = 1
    save(tmp_path / "masks/Training/glioma/a.png", mask)
    samples = discover(tmp_path).samples
    by_name = {s.path.stem: s for s in samples}
    assert datasets.mask_path(by_name["a"]).name == "a.png" and datasets.mask_path(by_name["a"]).is_file()
    assert datasets.has_masks(samples)
    assert [datasets.mask_known(by_name[n]) for n in ("a", "b", "n")] == [True, False, True]
    loaded = datasets.load_images(samples, datasets.PrepSpec(size=32), with_masks=True)
    known = dict(zip((s.path.stem for s in loaded.samples), loaded.masks_known))
    assert known == {"a": True, "b": False, "n": True}


def test_lesion_map_loss_weighs_nothing_where_the_mask_is_unknown():
    inputs = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)
    masks = np.zeros((4, 32, 32), np.float32)
    masks[:, 4:12, 4:12] = 1
    known = np.array([True, False, True, False])
    batch = next(iter(datasets.tf_dataset(inputs, np.arange(4), 4, training=False, masks=masks, mask_grid=8,
                                          masks_known=known)))
    cell_weights = batch[2]["lesion_map"].numpy()
    assert cell_weights.shape == (4, 8, 8)
    assert np.all(cell_weights[[0, 2]] == 1) and np.all(cell_weights[[1, 3]] == 0)
    assert batch[1]["lesion_map"].numpy()[0, 1, 1, 0] == 1  # the known lesion is still a target


def test_by_patient_resamples_whole_patients_and_names_the_most_wrong():
    class Card:
        task, threshold = "classify", None
    # Six patients of four slices, classes 0/1; patient "p5" is wrong on every slice, "p4" on one.
    groups = np.repeat([f"p{i}" for i in range(6)], 4)
    labels = np.tile([0, 1], 12)
    predicted = labels.copy()
    predicted[groups == "p5"] = 1 - labels[groups == "p5"]
    predicted[np.flatnonzero(groups == "p4")[0]] ^= 1
    report = evaluate.by_patient(Card(), labels, np.eye(2)[predicted], groups)
    accuracy = report["measures"]["accuracy"]
    assert accuracy["rate"] == pytest.approx(19 / 24) and accuracy["n_groups"] == 6
    assert accuracy["ci"][0] < 19 / 24 < accuracy["ci"][1]
    assert report["wrong"] == 5
    assert report["most_wrong"] == [{"group": "p5", "wrong": 4, "n": 4}, {"group": "p4", "wrong": 1, "n": 4}]

    Card.task, Card.threshold = "detect", 0.5
    detected = evaluate.by_patient(Card(), labels, np.where(groups == "p5", 1 - labels, labels) * 0.8 + 0.1, groups)
    assert detected["measures"]["recall"]["rate"] == pytest.approx(10 / 12)
    assert detected["measures"]["specificity"]["rate"] == pytest.approx(10 / 12)


def test_mixup_blends_each_image_with_its_targets_weights_and_lesion_cells_alike():
    # Sample k is the constant image k, of class k, loss weight k + 1, with a lesion in cell (0, 0) when k < 2 and
    # an unknown mask when k == 3: every blended quantity must then be the same mixture of the same two samples.
    n = 4
    inputs = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 16, 16, 1)).copy()
    masks = np.zeros((n, 16, 16), np.float32)
    masks[:2, :4, :4] = 1
    targets = np.eye(n, dtype=np.float32)
    batch = next(iter(datasets.tf_dataset(inputs, targets, n, training=True, seed=3, weights=np.arange(1, n + 1),
                                          masks=masks, mask_grid=2, augment=False, mixup=0.4,
                                          masks_known=np.arange(n) != 3)))
    image, y, w = batch[0].numpy(), batch[1]["probability"].numpy(), batch[2]["probability"].numpy()
    shares = y  # each row: how much of each sample the blend holds
    assert np.allclose(shares.sum(axis=1), 1) and np.all(shares.max(axis=1) >= 0.5 - 1e-6)
    assert np.any(shares.max(axis=1) < 1 - 1e-3)  # something was blended
    assert np.allclose(image[:, 0, 0, 0], shares @ np.arange(n))
    assert np.allclose(image.std(axis=(1, 2, 3)), 0, atol=1e-5)
    assert np.allclose(w, shares @ np.arange(1, n + 1))
    lesion = batch[1]["lesion_map"].numpy()[:, 0, 0, 0]
    assert np.allclose(lesion, shares[:, :2].sum(axis=1))
    # A blend that holds any of the unknown-mask sample teaches the lesion map nothing; the others weigh fully.
    cell_weights = batch[2]["lesion_map"].numpy()[:, 0, 0]
    assert np.array_equal(cell_weights, np.where(shares[:, 3] > 0, 0.0, 1.0))


def test_mixup_is_off_for_validation_and_testing():
    inputs = np.random.default_rng(0).random((4, 16, 16, 1)).astype(np.float32)
    batch = next(iter(datasets.tf_dataset(inputs, np.eye(4, dtype=np.float32), 4, training=False, mixup=0.4)))
    assert np.array_equal(batch[0].numpy(), inputs) and np.array_equal(batch[1].numpy(), np.eye(4))


def test_by_source_breakdown_on_a_tiny_manifest(tmp_path):
    make_set(tmp_path, mirrored_twins=False)
    index = discover(tmp_path)
    sources = datasets.slice_sources(tmp_path, index.samples)
    assert set(sources) == {"figshare", "br35h"}

    class Card:
        task, threshold = "detect", 0.5
    labels = np.array([s.label != "notumor" for s in index.samples], dtype=np.int64)
    scores = np.where(sources == "figshare", 0.9, 0.1)
    table = evaluate.by_category(Card(), labels, scores, sources)
    recall = dict(zip(table["groups"], table["measures"]["recall"]))
    assert recall["figshare"]["rate"] == 1.0 and recall["br35h"]["rate"] == 0.0
    assert recall["figshare"]["n"] + recall["br35h"]["n"] == labels.sum()
