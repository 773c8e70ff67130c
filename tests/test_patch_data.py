"""Patch datasets on the real BigEarthNet sample: the npz, the GeoTIFF folders, place splits, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cropcore.errors import DatasetFormatError
from cropcore.patches.augment import augment_batch, cutmix, dihedral, mixup
from cropcore.patches.data import AGRI19, BANDS, CLASSES19, labels_to_y19, read_folders, read_npz, read_source
from cropcore.patches.splits import fold_split, group_folds, parse_name, place_groups


@pytest.fixture(scope="module")
def npz():
    return read_npz()


def test_npz_holds_the_124_real_patches(npz) -> None:
    assert npz.x.shape == (124, 12, 120, 120) and npz.x.dtype == np.float32
    assert npz.y19.shape == (124, 19)
    assert int(npz.agri.sum()) == 70  # 70 agricultural, 54 not
    assert 0.0 <= float(npz.x.min()) and float(np.median(npz.x[:, 3])) < 0.3  # reflectance, not DN


def test_folders_match_the_npz_band_for_band(npz) -> None:
    folders = read_folders()
    assert len(folders) == 6
    index = [list(npz.names).index(n) for n in folders.names]
    np.testing.assert_array_equal(folders.x, npz.x[index])  # 20/60 m bands nearest-upsampled as in the npz
    np.testing.assert_array_equal(folders.y19, npz.y19[index])  # 43-class labels mapped to the 19 classes
    assert read_source("bigearthnet/BigEarthNet-S2-Example").names.tolist() == folders.names.tolist()


def test_labels_map_43_and_19_class_names() -> None:
    y = labels_to_y19(["Non-irrigated arable land", "Coniferous forest", "Arable land"])
    assert [CLASSES19[i] for i in np.flatnonzero(y)] == ["Arable land", "Coniferous forest"]
    assert set(AGRI19) == {2, 3, 4, 5, 6, 7} and len(BANDS) == 12


def test_bad_sources_are_refused(tmp_path) -> None:
    with pytest.raises(DatasetFormatError, match="no patch npz"):
        read_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", X=np.zeros((1, 12, 4, 4)))
    with pytest.raises(DatasetFormatError, match="lacks"):
        read_npz(tmp_path / "bad.npz")
    (tmp_path / "S2A_MSIL2A_20170613T101031_1_1").mkdir()
    with pytest.raises(DatasetFormatError, match="one GeoTIFF per band"):
        read_folders(tmp_path)


def test_names_parse_v1_and_v2() -> None:
    v1 = parse_name("S2B_MSIL2A_20180525T94030_35_58")
    v2 = parse_name("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_37_88")
    assert (v1.datatake, v1.tile, v1.position) == ("S2B_20180525T0940", None, (35, 58))
    assert (v2.datatake, v2.tile, v2.position) == ("S2A_20170613T1010", "33UUP", (37, 88))
    with pytest.raises(DatasetFormatError, match="not a BigEarthNet patch name"):
        parse_name("patch_0001")


def _close(a, b, gap: int) -> bool:
    pa, pb = parse_name(a), parse_name(b)
    if pa.datatake != pb.datatake or (pa.tile and pb.tile and pa.tile != pb.tile):
        return False
    orders = [pb.position] + ([pb.position[::-1]] if (pa.tile is None) != (pb.tile is None) else [])
    return any(max(abs(pa.position[0] - q[0]), abs(pa.position[1] - q[1])) <= gap for q in orders)


def test_no_place_group_and_no_neighbour_pair_is_on_both_sides(npz) -> None:
    groups = place_groups(npz.names, max_group=12, gap=2)
    folds = group_folds(groups, 5, strata=npz.agri)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1  # every group lies in one fold
    names = list(npz.names)
    for i in range(len(names)):  # brute force: no two patches that may be within 2 positions differ in fold
        for j in range(i + 1, len(names)):
            if _close(names[i], names[j], 2):
                assert folds[i] == folds[j], (names[i], names[j])
    for test_fold in range(5):
        train, val, test = fold_split(folds, test_fold)
        assert not set(groups[train]) & set(groups[test]) and not set(groups[val]) & set(groups[test])
        assert len(train) + len(val) + len(test) == 124
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 2  # balanced folds
    assert len(np.unique(groups)) >= 40  # the 33-patch datatake over 33UUP is split into spatial clusters


def test_too_few_groups_for_the_folds() -> None:
    with pytest.raises(DatasetFormatError, match="cannot make 5 folds"):
        group_folds(np.array([0, 0, 1, 1]), 5)


def test_augmentations_keep_shapes_and_label_mass(npz) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    x, y = torch.from_numpy(npz.x[:6]), torch.from_numpy(npz.y19[:6])
    turned = dihedral(x)
    assert turned.shape == x.shape
    assert torch.allclose(turned.sum(dim=(2, 3)), x.sum(dim=(2, 3)), rtol=1e-4)  # pixels move, none change
    for mix in (mixup, cutmix):
        mixed_x, mixed_y = mix(x, y, 0.4)
        assert mixed_x.shape == x.shape and mixed_y.shape == y.shape
        assert torch.all((mixed_y >= 0) & (mixed_y <= 1))
    ax, ay = augment_batch(x, y, mixup_alpha=0.2, cutmix_alpha=0.2)
    assert ax.shape == x.shape and ay.shape == y.shape
