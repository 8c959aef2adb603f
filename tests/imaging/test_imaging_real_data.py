"""Readers on the real TotalSegmentator sample scans in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from vascalc.imaging import load_labelmap, load_volume

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DICOM = DATA / "ct" / "totalseg_dicom" / "example_ct_dicom"
SEG_DICOM = DATA / "ct" / "totalseg_dicom" / "example_seg_dicom.nii.gz"
NIFTI = DATA / "ct" / "totalseg_example"

pytestmark = pytest.mark.skipif(not DICOM.is_dir(), reason="shared sample data not available")


@pytest.fixture(scope="module")
def dicom_volume():
    return load_volume(DICOM)


def test_dicom_jpeg2000_series_geometry_and_hu(dicom_volume):
    v = dicom_volume
    assert v.grid.shape == (20, 512, 512)
    assert v.grid.spacing_mm == pytest.approx((2.0, 0.9765625, 0.9765625))
    # z increases with slice index: origin is the most inferior slice (z = -804.5)
    assert v.grid.origin_lps_mm == pytest.approx((-249.51171875, -437.51171875, -804.5))
    assert v.grid.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert v.hu.dtype == np.int16
    assert int(v.hu.min()) == -1024 and int(v.hu.max()) == 1839


def test_dicom_hu_match_simpleitk_series_reader(dicom_volume):
    # independent reader: GDCM's own file ordering and rescale, on SimpleITK's default pixel type
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(DICOM))
    reader.SetFileNames(files)
    image = reader.Execute()
    reference = sitk.GetArrayFromImage(image)
    # GDCM sorts this series top-down (direction z = -1); ours runs bottom-up
    if image.GetDirection()[8] < 0:
        reference = reference[::-1]
    np.testing.assert_array_equal(dicom_volume.hu, reference)


def test_dicom_hu_match_pydicom_decoder(dicom_volume):
    # fully independent of GDCM: pydicom + pylibjpeg-openjpeg decode, own sort by z, own rescale
    pydicom = pytest.importorskip("pydicom")
    from pydicom.pixels import apply_rescale

    datasets = [pydicom.dcmread(p) for p in sorted(DICOM.iterdir())]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    stack = np.stack([apply_rescale(ds.pixel_array, ds) for ds in datasets])
    np.testing.assert_array_equal(dicom_volume.hu, stack)


def test_dicom_pydicom_fallback_when_gdcm_fails(dicom_volume, monkeypatch):
    # a transfer syntax GDCM cannot decode falls back to pydicom's decoders, with the same HU
    def refuse(self):
        raise RuntimeError("GDCM cannot decode this")

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", refuse)
    v = load_volume(DICOM)
    assert v.hu.dtype == np.int16
    np.testing.assert_array_equal(v.hu, dicom_volume.hu)


def test_dicom_scan_info(dicom_volume):
    info = dicom_volume.info
    assert info.source_format == "dicom" and info.modality == "CT"
    assert info.kvp == 120.0
    assert info.contrast_agent == "APPLIED"
    assert "Br38f" in info.convolution_kernel
    assert info.slice_thickness_mm == 3.0 and info.slice_increment_mm == pytest.approx(2.0)
    assert info.manufacturer == "SIEMENS" and info.n_slices == 20
    assert info.series_uid is None  # the sample's UIDs are all empty strings
    assert any("thickness 3 mm differs from the slice increment 2 mm" in n for n in info.load_notes)


def test_single_dicom_file_loads_its_series(dicom_volume):
    one_file = sorted(DICOM.iterdir())[5]
    v = load_volume(one_file)
    np.testing.assert_array_equal(v.hu, dicom_volume.hu)


def test_seg_on_dicom_grid_by_exact_flip(dicom_volume):
    labels = load_labelmap(SEG_DICOM, dicom_volume.grid)
    assert any("LAS → LPS" in n for n in labels.load_notes)
    aorta = labels.mask("aorta")
    assert labels.ids_by_name["aorta"] == 52
    assert int(aorta.sum()) == 11723
    assert aorta.sum() * dicom_volume.grid.voxel_volume_mm3 / 1000 == pytest.approx(22.36, abs=0.005)
    # independent: nibabel array, j (A→P) axis flipped to the DICOM's row direction, to (z, y, x)
    raw = np.asanyarray(nib.load(str(SEG_DICOM)).dataobj)
    assert int((raw == 52).sum()) == 11723
    np.testing.assert_array_equal(labels.labels, raw[:, ::-1, :].transpose(2, 1, 0))
    # contrast-enhanced lumen (portal-venous phase, README: ~150 HU eroded lumen)
    mean_hu = float(dicom_volume.hu[aorta].mean())
    assert 120 < mean_hu < 250


def test_seg_on_dicom_grid_as_stored_would_be_wrong(dicom_volume):
    # pairing by array index without the flip puts the aorta elsewhere: lumen HU is no longer contrast-like
    raw = np.asanyarray(nib.load(str(SEG_DICOM)).dataobj).transpose(2, 1, 0)
    assert float(dicom_volume.hu[raw == 52].mean()) < 100


def test_nifti_int32_sform_only_ras():
    v = load_volume(NIFTI / "example_ct.nii.gz")
    assert v.grid.shape == (112, 101, 122)
    assert v.grid.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    assert v.grid.origin_lps_mm == pytest.approx((177.956, -11.319, 94.302), abs=1e-3)
    assert v.grid.axis_codes() == "RAS"
    assert v.hu.dtype == np.int16 and int(v.hu.min()) == -1207 and int(v.hu.max()) == 3382
    # same geometry as SimpleITK reports for this file (it reads NIfTI-1 itself)
    image = sitk.ReadImage(str(NIFTI / "example_ct.nii.gz"))
    assert image.GetOrigin() == pytest.approx(v.grid.origin_lps_mm, abs=1e-4)
    assert image.GetDirection() == pytest.approx(v.grid.direction)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), v.hu)


@pytest.fixture(scope="module")
def small_ct():
    return load_volume(NIFTI / "example_ct_sm.nii.gz")


def test_mask_folder_matches_totalsegmentator_statistics(small_ct):
    labels = load_labelmap(NIFTI / "example_seg_fast", small_ct.grid)
    stats = json.loads((NIFTI / "example_seg_fast" / "statistics.json").read_text())
    assert len(labels.names) == 10
    for name in labels.names.values():
        mask = labels.mask(name)
        assert mask.sum() * small_ct.grid.voxel_volume_mm3 == pytest.approx(stats[name]["volume"], abs=1e-6)
        if mask.any():
            assert float(small_ct.hu[mask].mean()) == pytest.approx(stats[name]["intensity"], abs=1e-4)
    assert labels.voxel_counts()["aorta"] == 1174
    # empty masks are kept as known-but-absent structures
    assert set(labels.absent_names()) == {"heart", "iliac_artery_left", "iliac_artery_right"}
    assert labels.has("heart") and not labels.mask("heart").any()
    assert "heart" not in labels.present_names()


def test_multilabel_file_gives_identical_masks(small_ct):
    folder = load_labelmap(NIFTI / "example_seg_fast", small_ct.grid)
    multi = load_labelmap(NIFTI / "example_seg_fast.nii.gz", small_ct.grid)
    assert multi.names[52] == "aorta" and multi.names[65] == "iliac_artery_left"
    for name in folder.names.values():
        np.testing.assert_array_equal(folder.mask(name), multi.mask(name))
    assert not multi.mask("iliac_artery_left").any()
