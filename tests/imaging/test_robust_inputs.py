"""Inputs the loaders had not met: values that are not HU, copied or foreign DICOM files, blank films.

Each test builds its input by hand and checks a known answer (exact HU, a refusal naming the cause).
"""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import BasicTextSRStorage, generate_uid

from vascalc.errors import InputError
from vascalc.imaging import Grid, ScanInfo, Volume, load_volume, save_volume_nifti
from vascalc.imaging.load import checked_hu
from vascalc.imaging.masks import read_names_table
from vascalc.imaging.radiograph import radiograph_from_array

from imaging_fixtures import write_series


def _body(shape=(3, 8, 8)) -> np.ndarray:
    """HU of a tiny 'body': air border, soft tissue, one calcium voxel."""
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[:, 2:-2, 2:-2] = 40
    hu[1, 4, 4] = 700
    return hu


# ---- values that are not HU ---------------------------------------------------------------------

def test_nan_and_inf_voxels_become_air_and_are_counted():
    hu = _body().astype(np.float32)
    hu[0, 0, 0], hu[2, 7, 7] = np.nan, np.inf
    out, notes = checked_hu(hu, "scan")
    assert out[0, 0, 0] == -1024 and out[2, 7, 7] == -1024
    assert np.array_equal(out[1], hu[1])  # nothing else changes
    assert notes == ("2 voxels were NaN or infinite (outside the scanned field?) and were set to -1024 HU (air)",)


def test_int16_padding_outside_the_field_becomes_air():
    hu = _body()
    hu[:, 0, 0] = -32768  # the padding value of some exports
    out, notes = checked_hu(hu, "scan")
    assert out.dtype == np.int16 and (out[:, 0, 0] == -1024).all() and out[1, 4, 4] == 700
    assert notes == ("3 voxels below -10000 HU (padding, lowest -32768) were set to -1024 HU (air)",)


def test_plain_hu_pass_unchanged():
    hu = _body()
    out, notes = checked_hu(hu, "scan")
    assert out is hu and notes == ()


@pytest.mark.parametrize("offset_values, fragment", [
    (lambda hu: hu.astype(np.int32) + 1024, "rescale intercept"),    # stored values, intercept lost
    (lambda hu: hu.astype(np.float32) * 1e6, "beyond any CT scale"),  # not HU at all
])
def test_values_that_cannot_be_hu_are_refused(offset_values, fragment):
    with pytest.raises(InputError, match=fragment):
        checked_hu(offset_values(_body()), "scan")


def test_noise_free_water_phantom_with_dense_inserts_is_hu():
    """Water at exactly 0 HU and small 1200 HU inserts: no negative value, yet plainly HU."""
    hu = np.zeros((4, 20, 20), dtype=np.int16)
    hu[:, 5:8, 5:8] = 1200  # 9 of 400 voxels per slice
    out, notes = checked_hu(hu, "phantom")
    assert out is hu and notes == ()


def test_nifti_with_scl_inter_gives_exact_hu_and_without_it_is_refused(tmp_path):
    hu = _body()
    stored = (hu.astype(np.int32) + 1024).astype(np.uint16).transpose(2, 1, 0)  # (x, y, z) on disk
    affine = np.diag([-0.5, -0.5, 2.0, 1.0])
    with_inter = nib.Nifti1Image(stored, affine)
    with_inter.header.set_slope_inter(1.0, -1024.0)
    nib.save(with_inter, tmp_path / "ok.nii.gz")
    assert np.array_equal(load_volume(tmp_path / "ok.nii.gz").hu, hu)
    nib.save(nib.Nifti1Image(stored, affine), tmp_path / "lost.nii.gz")
    with pytest.raises(InputError, match="rescale intercept .usually −1024. was lost"):
        load_volume(tmp_path / "lost.nii.gz")


def test_nifti_nan_padding_is_read_as_air(tmp_path):
    hu = _body().astype(np.float32)
    hu[:, 0, :] = np.nan  # a resampling tool's "outside the field"
    save_volume_nifti(Volume(hu=hu, grid=Grid(shape=hu.shape, spacing_mm=(2.0, 0.5, 0.5)), info=ScanInfo()),
                      tmp_path / "nan.nii.gz")
    volume = load_volume(tmp_path / "nan.nii.gz")
    assert np.isfinite(volume.hu).all()
    assert (volume.hu[:, 0, :] == -1024).all() and volume.hu[1, 4, 4] == 700
    assert any(note.startswith("24 voxels were NaN") for note in volume.info.load_notes)


def test_dicom_series_without_rescale_tags_is_refused(tmp_path):
    write_series(tmp_path / "s", (_body().astype(np.int32) + 1024).astype(np.uint16))
    for path in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(path)
        del ds.RescaleIntercept, ds.RescaleSlope
        ds.save_as(path)
    with pytest.raises(InputError, match="no voxel is below 0 HU"):
        load_volume(tmp_path / "s")


# ---- DICOM folders as users leave them ----------------------------------------------------------

def test_a_copied_slice_file_is_ignored_not_a_duplicate_position(tmp_path):
    paths = write_series(tmp_path / "s", (_body().astype(np.int32) + 1024).astype(np.uint16))
    shutil.copy(paths[1], tmp_path / "s" / "copy of s001.dcm")
    volume = load_volume(tmp_path / "s")
    assert volume.shape == (3, 8, 8) and volume.hu[1, 4, 4] == 700
    assert "1 repeated copies of the same image (same SOPInstanceUID) ignored" in volume.info.load_notes


def test_an_sr_that_copies_the_image_tags_is_not_stacked(tmp_path):
    paths = write_series(tmp_path / "s", (_body().astype(np.int32) + 1024).astype(np.uint16))
    ds = pydicom.dcmread(paths[0])  # same series, Rows and position: only its class says "report"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.save_as(tmp_path / "s" / "report.dcm")
    volume = load_volume(tmp_path / "s")
    assert volume.shape == (3, 8, 8)
    assert "1 non-image DICOM objects ignored" in volume.info.load_notes


# ---- names tables and films ---------------------------------------------------------------------

def test_a_names_table_with_no_entry_is_refused(tmp_path):
    (tmp_path / "names.txt").write_text("hello\n")
    with pytest.raises(InputError, match="holds no 'id, name' entry"):
        read_names_table(tmp_path / "names.txt")


@pytest.mark.parametrize("value", [0, 255])
def test_a_blank_film_is_refused(value):
    with pytest.raises(InputError, match="blank"):
        radiograph_from_array(np.full((64, 64), value, dtype=np.uint8), 0.5)


def test_an_8_bit_image_given_as_the_ct_is_refused(tmp_path):
    windowed = np.clip((_body().astype(np.int32) + 160) * 255 // 400, 0, 255).astype(np.uint8)
    nib.save(nib.Nifti1Image(windowed.transpose(2, 1, 0), np.diag([-0.5, -0.5, 2.0, 1.0])), tmp_path / "w.nii.gz")
    with pytest.raises(InputError, match="8-bit voxels .uint8. cannot hold HU"):
        load_volume(tmp_path / "w.nii.gz")


def test_coronal_slices_first_are_reordered_to_axial_exactly():
    from vascalc.imaging.geometry import axial_first_order, permute_axes
    from vascalc.imaging.load import axial_slices_first

    hu = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # (z, y, x) of an axial grid
    grid = Grid(shape=hu.shape, spacing_mm=(3.0, 0.5, 0.7), origin_lps_mm=(1.0, 2.0, 3.0))
    # the same voxels stored with the anterior–posterior axis first (coronal slices)
    coronal, coronal_grid = permute_axes(hu, grid, (1, 0, 2))
    assert coronal_grid.shape == (3, 2, 4) and axial_first_order(coronal_grid) == (1, 0, 2)
    back = axial_slices_first(Volume(hu=coronal, grid=coronal_grid, info=ScanInfo(slice_thickness_mm=0.5)))
    assert np.array_equal(back.hu, hu) and back.grid.shape == grid.shape and back.grid.spacing_mm == grid.spacing_mm
    assert np.allclose(back.grid.direction_matrix, grid.direction_matrix)
    assert back.info.slice_increment_mm == 3.0 and back.info.slice_thickness_mm is None
    # every voxel keeps its position in space
    index = np.array([[1, 2, 3]])
    assert np.allclose(coronal_grid.index_to_lps(index[:, [1, 0, 2]]), grid.index_to_lps(index))
    already = Volume(hu=hu, grid=grid)
    assert axial_slices_first(already) is already
