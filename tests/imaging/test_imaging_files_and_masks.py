"""NIfTI / NRRD / MHA readers and writers, and mask loading onto a CT grid (synthetic images)."""

from __future__ import annotations

import gzip
import json
import struct

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from vascalc.anatomy.taxonomy import (
    ARTERIES,
    BONES,
    CORONARY_ARTERIES,
    category,
    is_bone,
    is_landmark,
    is_scored_artery,
    totalseg_total_v2,
)
from vascalc.errors import GeometryError, InputError, MaskError
from vascalc.imaging import Grid, Volume, load_labelmap, load_volume, save_labels_nifti, save_volume_nifti

# An LPS grid, not axis-aligned with RAS, with unequal spacings and a non-zero origin.
LPS_GRID = Grid(shape=(5, 6, 7), spacing_mm=(2.0, 0.8, 0.6), origin_lps_mm=(-10.0, 20.0, -30.0))


def ball_labels(grid: Grid) -> np.ndarray:
    """Label 1 = a ball of radius 2.5 mm in the middle of ``grid``, label 2 = one corner voxel."""
    zyx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    lps = grid.index_to_lps(zyx)
    centre = grid.index_to_lps(np.array(grid.shape, float) / 2 - 0.5)
    labels = (np.linalg.norm(lps - centre, axis=-1) <= 2.5).astype(np.uint8)
    labels[0, 0, 0] = 2
    return labels


def ras_twin(grid: Grid, array: np.ndarray) -> tuple[Grid, np.ndarray]:
    """The same object stored with x and y axes reversed (RAS-style): other corner, flipped array."""
    far = grid.index_to_lps(np.array([0, grid.shape[1] - 1, grid.shape[2] - 1]))
    twin = Grid(
        shape=grid.shape,
        spacing_mm=grid.spacing_mm,
        origin_lps_mm=tuple(far),
        direction=tuple((grid.direction_matrix @ np.diag([-1.0, -1.0, 1.0])).ravel()),
    )
    return twin, np.ascontiguousarray(array[:, ::-1, ::-1])


def test_volume_nifti_round_trip_and_affine(tmp_path):
    hu = np.arange(np.prod(LPS_GRID.shape), dtype=np.int16).reshape(LPS_GRID.shape) - 100
    path = save_volume_nifti(Volume(hu=hu, grid=LPS_GRID), tmp_path / "ct.nii.gz")
    back = load_volume(path)
    np.testing.assert_array_equal(back.hu, hu)
    assert back.grid.spacing_mm == pytest.approx(LPS_GRID.spacing_mm)
    assert back.grid.origin_lps_mm == pytest.approx(LPS_GRID.origin_lps_mm)
    assert back.grid.direction == pytest.approx(LPS_GRID.direction)
    header = nib.load(str(path)).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    # LPS (-10, 20, -30) is RAS (10, -20, -30); nibabel's own reading of both forms agrees
    np.testing.assert_allclose(header.get_sform()[:3, 3], [10.0, -20.0, -30.0])
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-5)
    # independent reader: SimpleITK's NIfTI-1 geometry is LPS
    image = sitk.ReadImage(str(path))
    assert image.GetOrigin() == pytest.approx(LPS_GRID.origin_lps_mm, abs=1e-5)
    assert image.GetSpacing() == pytest.approx(LPS_GRID.spacing_mm[::-1])


def test_labels_nifti_round_trip_bool_and_dtype(tmp_path):
    labels = ball_labels(LPS_GRID)
    path = save_labels_nifti(labels == 1, LPS_GRID, tmp_path / "ball.nii.gz")
    assert nib.load(str(path)).get_data_dtype() == np.uint8
    back = load_labelmap(path, LPS_GRID, names={1: "aorta"})
    np.testing.assert_array_equal(back.mask("aorta"), labels == 1)
    wide = labels.astype(np.int32) * 300
    path = save_labels_nifti(wide, LPS_GRID, tmp_path / "wide.nii")
    assert nib.load(str(path)).get_data_dtype() == np.uint16


def test_same_object_lps_and_ras_give_same_labels(tmp_path):
    labels = ball_labels(LPS_GRID)
    ras_grid, ras_array = ras_twin(LPS_GRID, labels)
    path = save_labels_nifti(ras_array, ras_grid, tmp_path / "ras.nii.gz")
    loaded = load_labelmap(path, LPS_GRID, names={1: "aorta", 2: "marker"})
    np.testing.assert_array_equal(loaded.labels, labels)
    assert any("reoriented" in n for n in loaded.load_notes)
    # and the other way round: LPS mask onto the RAS grid; world positions of the marker agree
    path = save_labels_nifti(labels, LPS_GRID, tmp_path / "lps.nii.gz")
    other = load_labelmap(path, ras_grid, names={1: "aorta", 2: "marker"})
    marker = np.argwhere(other.mask("marker"))
    assert ras_grid.index_to_lps(marker) == pytest.approx(LPS_GRID.index_to_lps(np.zeros((1, 3))))
    assert other.mask("aorta").sum() == (labels == 1).sum()


def test_permuted_axes_map_exactly(tmp_path):
    labels = ball_labels(LPS_GRID)
    # store with the x and z index axes swapped: array (x, y, z) order, direction columns swapped
    swapped = Grid(
        shape=LPS_GRID.shape[::-1],
        spacing_mm=LPS_GRID.spacing_mm[::-1],
        origin_lps_mm=LPS_GRID.origin_lps_mm,
        direction=tuple(LPS_GRID.direction_matrix[:, ::-1].ravel()),
    )
    path = tmp_path / "swapped.nrrd"
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
    image.SetSpacing(swapped.spacing_mm[::-1])
    image.SetOrigin(swapped.origin_lps_mm)
    image.SetDirection(swapped.direction)
    sitk.WriteImage(image, str(path))
    loaded = load_labelmap(path, LPS_GRID, names={1: "aorta", 2: "marker"})
    np.testing.assert_array_equal(loaded.labels, labels)


def test_shifted_grid_refused_then_nearest_neighbour(tmp_path):
    labels = ball_labels(LPS_GRID)
    shifted = Grid(
        shape=LPS_GRID.shape,
        spacing_mm=LPS_GRID.spacing_mm,
        origin_lps_mm=tuple(np.add(LPS_GRID.origin_lps_mm, (0.6, 0.0, 0.0))),  # one voxel along x
    )
    path = save_labels_nifti(labels, shifted, tmp_path / "shifted.nii.gz")
    with pytest.raises(GeometryError, match=r"origin .* bounding boxes differ by up to 0\.60 mm.*--resample-masks"):
        load_labelmap(path, LPS_GRID, names={1: "aorta", 2: "marker"})
    moved = load_labelmap(path, LPS_GRID, names={1: "aorta", 2: "marker"}, resample=True)
    expected = np.zeros_like(labels)
    expected[:, :, 1:] = labels[:, :, :-1]  # reference voxel i holds the mask's voxel i - 1
    np.testing.assert_array_equal(moved.labels, expected)
    assert any("nearest neighbour" in n for n in moved.load_notes)
    # within an explicit tolerance the shift is accepted as the same grid
    same = load_labelmap(path, LPS_GRID, names={1: "aorta", 2: "marker"}, tolerance_mm=0.61)
    np.testing.assert_array_equal(same.labels, labels)
    assert any("offset by up to 0.600 mm" in n and "0.610 mm tolerance" in n for n in same.load_notes)


def test_coarser_grid_refused_then_resampled(tmp_path):
    fine = Grid(shape=(8, 8, 8), spacing_mm=(1.0, 1.0, 1.0), origin_lps_mm=(0.5, 0.5, 0.5))
    coarse = Grid(shape=(4, 4, 4), spacing_mm=(2.0, 2.0, 2.0), origin_lps_mm=(1.0, 1.0, 1.0))
    block = np.zeros(coarse.shape, np.uint8)
    block[1:3, 1:3, 1:3] = 1  # covers fine voxels 2..5 on every axis
    path = save_labels_nifti(block, coarse, tmp_path / "coarse.nii.gz")
    with pytest.raises(GeometryError, match=r"shape \(4, 4, 4\) vs \(8, 8, 8\)"):
        load_labelmap(path, fine, names={1: "aorta"})
    up = load_labelmap(path, fine, names={1: "aorta"}, resample=True)
    assert int(up.mask("aorta").sum()) == 4**3
    assert up.mask("aorta")[2:6, 2:6, 2:6].all()


def _nifti_bytes(grid: Grid, data: np.ndarray) -> bytearray:
    image = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), grid.affine_ras())
    return bytearray(image.to_bytes())


def test_truncated_nifti_refused(tmp_path):
    raw = _nifti_bytes(LPS_GRID, np.ones(LPS_GRID.shape, np.int16))
    (tmp_path / "cut.nii").write_bytes(bytes(raw[:-50]))
    with pytest.raises(InputError, match="cut.nii"):
        load_volume(tmp_path / "cut.nii")
    packed = gzip.compress(bytes(raw))
    (tmp_path / "cut.nii.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError, match="cut.nii.gz"):
        load_volume(tmp_path / "cut.nii.gz")


def test_zero_voxel_size_refused(tmp_path):
    raw = _nifti_bytes(LPS_GRID, np.ones(LPS_GRID.shape, np.int16))
    struct.pack_into("<f", raw, 80, 0.0)  # pixdim[1]
    struct.pack_into("<4f", raw, 280, 0.0, 0.0, 0.0, 10.0)  # srow_x: a zero x axis
    (tmp_path / "zero.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(GeometryError, match="zero"):
        load_volume(tmp_path / "zero.nii.gz")
    mha = tmp_path / "zero.mha"
    image = sitk.GetImageFromArray(np.ones((3, 3, 3), np.int16))
    sitk.WriteImage(image, str(mha))
    mha.write_bytes(mha.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 0 1 1"))
    with pytest.raises(GeometryError, match="zero"):
        load_volume(mha)


def test_zero_pixdim_refused_when_it_is_the_voxel_size(tmp_path):
    # qform-only file: pixdim is the voxel size; nibabel's loader quietly makes a 0 into 1 mm
    image = nib.Nifti1Image(np.ones((4, 5, 6), np.int16), None)
    image.set_qform(np.diag([0.7, 0.9, 2.0, 1.0]), code=1)
    image.set_sform(None, code=0)
    raw = bytearray(image.to_bytes())
    struct.pack_into("<f", raw, 80, 0.0)  # pixdim[1]
    (tmp_path / "qzero.nii").write_bytes(bytes(raw))
    with pytest.raises(GeometryError, match=r"voxel size in the header is \(0\.0, 0\.9"):
        load_volume(tmp_path / "qzero.nii")
    # with a valid sform the geometry does not depend on pixdim: the sform's 0.7 mm is used
    image.set_sform(np.diag([0.7, 0.9, 2.0, 1.0]), code=2)
    raw = bytearray(image.to_bytes())
    struct.pack_into("<f", raw, 80, 0.0)
    (tmp_path / "szero.nii").write_bytes(bytes(raw))
    assert load_volume(tmp_path / "szero.nii").grid.spacing_mm == pytest.approx((2.0, 0.9, 0.7))


def test_nifti2_and_float_data(tmp_path):
    data = np.linspace(-50, 50, np.prod(LPS_GRID.shape)).reshape(LPS_GRID.shape).astype(np.float32)
    image = nib.Nifti2Image(np.ascontiguousarray(data.transpose(2, 1, 0)), LPS_GRID.affine_ras())
    nib.save(image, str(tmp_path / "two.nii"))
    v = load_volume(tmp_path / "two.nii")
    assert v.hu.dtype == np.float32
    np.testing.assert_allclose(v.hu, data)
    assert v.grid.origin_lps_mm == pytest.approx(LPS_GRID.origin_lps_mm)


def test_not_three_d_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), str(tmp_path / "four.nii.gz"))
    with pytest.raises(InputError, match="3-D image is needed"):
        load_volume(tmp_path / "four.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 1), np.int16), np.eye(4)), str(tmp_path / "single.nii.gz"))
    assert load_volume(tmp_path / "single.nii.gz").shape == (4, 4, 4)
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="junk.nii.gz"):
        load_labelmap(tmp_path / "junk.nii.gz", LPS_GRID, names={1: "aorta"})


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_formats_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(1)
    hu = rng.integers(-1024, 2000, size=(4, 5, 6)).astype(np.int16)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated 90° in-plane
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((1.0, -2.0, 3.0))
    image.SetDirection(direction)
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    v = load_volume(path)
    np.testing.assert_array_equal(v.hu, hu)
    assert v.grid.spacing_mm == pytest.approx((2.5, 0.9, 0.7))
    assert v.grid.origin_lps_mm == pytest.approx((1.0, -2.0, 3.0))
    assert v.grid.direction == pytest.approx(direction)
    assert v.info.source_format in ("nrrd", "metaimage")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_truncated_itk_files_refused(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((10, 20, 30), np.int16)), str(path), useCompression=True)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match=f"cut{suffix}: unreadable, truncated"):
        load_volume(path)


def test_names_tables_json_csv_and_missing_ids(tmp_path):
    labels = ball_labels(LPS_GRID)
    path = save_labels_nifti(labels, LPS_GRID, tmp_path / "seg.nii.gz")
    (tmp_path / "names.json").write_text(json.dumps({"1": "aorta", "2": "marker"}))
    (tmp_path / "names.csv").write_text("id,name\n0,background\n1,aorta\n2,marker\n")
    (tmp_path / "names.tsv").write_text("1\taorta\n2\tmarker\n3\tunused\n")
    for table in ("names.json", "names.csv", "names.tsv"):
        loaded = load_labelmap(path, LPS_GRID, names=tmp_path / table)
        np.testing.assert_array_equal(loaded.mask("aorta"), labels == 1)
    assert load_labelmap(path, LPS_GRID, names=tmp_path / "names.tsv").absent_names() == ["unused"]
    with pytest.raises(MaskError, match=r"label ids \[2\] have no name"):
        load_labelmap(path, LPS_GRID, names={1: "aorta"})


def test_name_inference_without_table(tmp_path):
    labels = ball_labels(LPS_GRID)
    single = save_labels_nifti(labels == 1, LPS_GRID, tmp_path / "iliac_artery_left.nii.gz")
    assert load_labelmap(single, LPS_GRID).names == {1: "iliac_artery_left"}
    ts = save_labels_nifti(np.where(labels == 1, 52, 0), LPS_GRID, tmp_path / "multilabel.nii.gz")
    loaded = load_labelmap(ts, LPS_GRID)
    assert loaded.names[52] == "aorta" and loaded.present_names() == ["aorta"]
    assert any("TotalSegmentator v2" in n for n in loaded.load_notes)
    odd = save_labels_nifti(np.where(labels == 1, 200, 0), LPS_GRID, tmp_path / "odd.nii.gz")
    with pytest.raises(MaskError, match=r"\[200\] are not TotalSegmentator"):
        load_labelmap(odd, LPS_GRID)


def test_mask_folder_overlap_and_non_binary(tmp_path):
    labels = ball_labels(LPS_GRID)
    folder = tmp_path / "masks"
    save_labels_nifti(labels == 1, LPS_GRID, folder / "aorta.nii.gz")
    save_labels_nifti(labels == 2, LPS_GRID, folder / "my_plaque_marker.nii.gz")
    save_labels_nifti(np.zeros_like(labels), LPS_GRID, folder / "heart.nii.gz")
    (folder / "statistics.json").write_text("{}")
    loaded = load_labelmap(folder, LPS_GRID)
    assert loaded.names == {51: "heart", 52: "aorta", 118: "my_plaque_marker"}
    assert loaded.absent_names() == ["heart"]
    np.testing.assert_array_equal(loaded.mask("my_plaque_marker"), labels == 2)
    save_labels_nifti(labels >= 1, LPS_GRID, folder / "aorta_and_more.nii.gz")
    with pytest.raises(MaskError, match="overlap"):
        load_labelmap(folder, LPS_GRID)
    (folder / "aorta_and_more.nii.gz").unlink()
    save_labels_nifti(labels, LPS_GRID, folder / "two_values.nii.gz")
    with pytest.raises(MaskError, match="not a binary mask"):
        load_labelmap(folder, LPS_GRID)
    with pytest.raises(InputError, match="no mask files"):
        load_labelmap(tmp_path / "masks" / ".." / "masks" / "..", LPS_GRID)


def test_taxonomy_tables():
    table = totalseg_total_v2()
    assert len(table) == 117 and table[52] == "aorta" and table[65] == "iliac_artery_left"
    assert table[31] == "vertebrae_L1" and table[117] == "costal_cartilages"
    assert {"aorta", "iliac_artery_left", "renal_artery_right", "celiac_trunk"} <= set(ARTERIES)
    assert CORONARY_ARTERIES == ("rca", "lad", "lcx", "left_main")
    assert "vertebrae_L3" in BONES and "sacrum" in BONES and "aorta" not in BONES
    assert [category(n) for n in ("aorta", "lad", "femur_left", "inferior_vena_cava", "heart", "liver")] == [
        "artery", "coronary", "bone", "vein", "heart", "other"
    ]
    assert is_bone("rib_left_12") and not is_bone("aorta")
    assert is_scored_artery("lcx") and is_scored_artery("femoral_artery_right") and not is_scored_artery("heart")
    assert is_landmark("vertebrae_T12") and is_landmark("heart") and not is_landmark("liver")
    # every TotalSegmentator artery name is one we score
    assert {n for n in table.values() if "arter" in n or n == "aorta" or n.endswith("trunk")} <= set(ARTERIES)


def test_nifti_qform_only_and_sheared_affine(tmp_path):
    data = np.zeros((4, 5, 6), np.int16)
    affine = np.diag([-0.7, 0.9, 2.0, 1.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    image = nib.Nifti1Image(data, None)
    image.set_qform(affine, code=1)
    image.set_sform(None, code=0)
    nib.save(image, str(tmp_path / "qform.nii.gz"))
    v = load_volume(tmp_path / "qform.nii.gz")
    # RAS origin (10, -20, 30) is LPS (-10, 20, 30); x axis points to RAS -x = LPS +x
    assert v.grid.origin_lps_mm == pytest.approx((-10.0, 20.0, 30.0), abs=1e-4)
    assert v.grid.spacing_mm == pytest.approx((2.0, 0.9, 0.7), abs=1e-6)
    assert v.grid.axis_codes() == "LAS"
    sheared = np.eye(4)
    sheared[0, 1] = 0.3
    nib.save(nib.Nifti1Image(data, sheared), str(tmp_path / "shear.nii.gz"))
    with pytest.raises(GeometryError, match="sheared"):
        load_volume(tmp_path / "shear.nii.gz")
    with pytest.raises(InputError, match="series_uid only applies to DICOM"):
        load_volume(tmp_path / "qform.nii.gz", series_uid="1.2")
