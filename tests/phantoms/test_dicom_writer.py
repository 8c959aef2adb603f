import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from vascalc.imaging.dicom_writer import write_dicom_series
from vascalc.imaging.grid import Grid
from vascalc.imaging.volume import ScanInfo, Volume


def _volume(lo=-1024, hi=3071):
    rng = np.random.default_rng(0)
    hu = rng.integers(lo, hi + 1, size=(5, 12, 10)).astype(np.int16)
    grid = Grid(shape=(5, 12, 10), spacing_mm=(2.5, 0.7, 0.8), origin_lps_mm=(-3.5, 7.0, -100.0))
    return Volume(hu=hu, grid=grid, info=ScanInfo(slice_thickness_mm=3.0, kvp=120.0))


@pytest.mark.parametrize("lo, hi", [(-1024, 3071), (-2000, 6000)])
def test_round_trip_through_simpleitk_and_pydicom(tmp_path, lo, hi):
    vol = _volume(lo, hi)
    paths = write_dicom_series(vol, tmp_path / "d", uid_seed="t")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "d")))
    img = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(img), vol.hu)
    np.testing.assert_allclose(img.GetSpacing(), (0.8, 0.7, 2.5))
    np.testing.assert_allclose(img.GetOrigin(), (-3.5, 7.0, -100.0))
    ds = pydicom.dcmread(paths[2])
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(hu, vol.hu[2])
    assert float(ds.SliceThickness) == 3.0 and float(ds.SpacingBetweenSlices) == 2.5


def test_no_patient_identifiers_and_deterministic_uids(tmp_path):
    vol = _volume()
    a = write_dicom_series(vol, tmp_path / "a", uid_seed="same")
    b = write_dicom_series(vol, tmp_path / "b", uid_seed="same")
    c = write_dicom_series(vol, tmp_path / "c", uid_seed="other")
    da, db, dc = (pydicom.dcmread(p[0]) for p in (a, b, c))
    assert da.SOPInstanceUID == db.SOPInstanceUID and da.SeriesInstanceUID == db.SeriesInstanceUID
    assert da.SeriesInstanceUID != dc.SeriesInstanceUID
    assert a[0].read_bytes() == b[0].read_bytes()
    for tag in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        assert str(getattr(da, tag)) == ""
    assert da.PatientIdentityRemoved == "YES"
