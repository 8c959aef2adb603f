"""DICOM series reader on tiny synthetic series written with pydicom (8×8 pixels)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import SimpleITK as sitk
from imaging_fixtures import PATIENT_ID, PATIENT_NAME, write_series

from vascalc.errors import GeometryError, InputError
from vascalc.imaging import load_volume
from vascalc.imaging.dicom import hu_array


def ramp(n: int, rows: int = 8, cols: int = 8, base: int = 1024, step: int = 10) -> np.ndarray:
    """Stored values: slice k holds ``base + step*k`` everywhere (HU = step*k with intercept -1024)."""
    return np.broadcast_to((base + step * np.arange(n, dtype=np.uint16))[:, None, None], (n, rows, cols)).copy()


def test_two_series_most_slices_chosen_and_selectable(tmp_path):
    write_series(tmp_path, ramp(6), series_uid="1.2.3.6", names=[f"a{k}.dcm" for k in range(6)])
    write_series(tmp_path / "sub", ramp(4, step=100), series_uid="1.2.3.4", names=[f"b{k}.dcm" for k in range(4)])
    v = load_volume(tmp_path)
    assert v.shape == (6, 8, 8) and v.info.series_uid == "1.2.3.6"
    assert "2 series found; took 1.2.3.6 (6 slices, CT" in v.info.load_notes[0]
    assert "1.2.3.4 (4 slices" in v.info.load_notes[0]
    other = load_volume(tmp_path, series_uid="1.2.3.4")
    assert other.shape == (4, 8, 8) and other.info.series_uid == "1.2.3.4"
    np.testing.assert_array_equal(other.hu[:, 0, 0], [0, 100, 200, 300])
    with pytest.raises(InputError, match="no series with UID 9.9"):
        load_volume(tmp_path, series_uid="9.9")


def test_shuffled_files_sorted_along_normal(tmp_path):
    rng = np.random.default_rng(3)
    names = [f"x{int(v):03d}.dcm" for v in rng.permutation(7)]
    write_series(tmp_path, ramp(7), names=names, origin=(-2.0, -2.0, 10.0), spacing_mm=(2.5, 0.5, 0.5))
    v = load_volume(tmp_path)
    np.testing.assert_array_equal(v.hu[:, 3, 3], 10 * np.arange(7))
    assert v.grid.origin_lps_mm == pytest.approx((-2.0, -2.0, 10.0))
    assert v.grid.spacing_mm == pytest.approx((2.5, 0.5, 0.5))
    assert v.hu.dtype == np.int16


def test_coronal_series_stacks_along_its_normal(tmp_path):
    # rows run along +x, columns along -z (head at the top): normal = row × column = +y (posterior)
    orientation = (1, 0, 0, 0, 0, -1)
    positions = np.array([[0.0, 5.0 - 3.0 * k, 100.0] for k in range(5)])  # written anterior-last
    write_series(tmp_path, ramp(5), positions=positions, orientation=orientation, spacing_mm=(3.0, 0.5, 0.5))
    v = load_volume(tmp_path)
    assert v.grid.origin_lps_mm == pytest.approx((0.0, -7.0, 100.0))
    np.testing.assert_array_equal(v.hu[:, 0, 0], [40, 30, 20, 10, 0])
    assert v.grid.axis_codes() == "LIP"
    # voxel (k, j, i) lies at origin + i·dx·row + j·dy·col + k·dz·normal
    assert v.grid.index_to_lps(np.array([1, 2, 3])) == pytest.approx((1.5, -4.0, 99.0))


def test_rescale_slope_intercept_per_slice(tmp_path):
    stored = np.full((3, 8, 8), 600, dtype=np.uint16)
    write_series(tmp_path, stored, slope=2.0, intercept=-1000.0, per_slice={2: {"RescaleIntercept": "-1100"}})
    v = load_volume(tmp_path)
    np.testing.assert_array_equal(v.hu[:, 0, 0], [200, 200, 100])
    assert v.hu.dtype == np.int16


def test_fractional_slope_gives_float_hu(tmp_path):
    stored = np.full((3, 8, 8), 101, dtype=np.uint16)
    write_series(tmp_path, stored, slope=0.5, intercept=-10.0)
    v = load_volume(tmp_path)
    assert v.hu.dtype == np.float32
    assert float(v.hu[0, 0, 0]) == pytest.approx(40.5)


def test_missing_slice_refused_then_interpolated(tmp_path):
    stored = ramp(6)
    positions = np.array([[0.0, 0.0, z] for z in (0.0, 2.0, 4.0, 8.0, 10.0, 12.0)])  # 6.0 missing
    write_series(tmp_path, stored, positions=positions)
    with pytest.raises(GeometryError, match=r"4 mm between 4\.00 and 8\.00 mm.*missing slice.*resample_uneven"):
        load_volume(tmp_path)
    v = load_volume(tmp_path, resample_uneven=True)
    assert v.shape == (7, 8, 8) and v.grid.spacing_mm[0] == pytest.approx(2.0)
    # slice at z = 6 is the mean of its neighbours at 4 (HU 20) and 8 (HU 30)
    np.testing.assert_allclose(v.hu[:, 0, 0], [0, 10, 20, 25, 30, 40, 50])
    assert any("interpolated linearly onto a regular 2 mm grid" in n for n in v.info.load_notes)


def test_rounded_positions_give_the_mean_increment(tmp_path):
    # 0.625 mm slices with positions written to 2 decimals: steps 0.62 / 0.63 are even within
    # tolerance, and the increment is the mean over the stack (the median 0.62 would drift)
    z = np.round(0.625 * np.arange(9), 2)
    write_series(tmp_path, ramp(9), positions=np.array([[0.0, 0.0, v] for v in z]), spacing_mm=(0.625, 0.5, 0.5))
    v = load_volume(tmp_path)
    assert v.grid.spacing_mm[0] == pytest.approx((z[-1] - z[0]) / 8)
    assert v.grid.index_to_lps(np.array([8, 0, 0]))[2] == pytest.approx(z[-1])


def test_duplicate_positions_refused(tmp_path):
    positions = np.array([[0.0, 0.0, z] for z in (0.0, 2.0, 2.0, 4.0)])
    write_series(tmp_path, ramp(4), positions=positions)
    with pytest.raises(GeometryError, match="repeat the position"):
        load_volume(tmp_path)


def test_gantry_tilt_refused_then_resampled(tmp_path):
    n, rows, cols, dz, dy, dx = 6, 8, 8, 2.0, 0.5, 0.5
    shift = 0.5  # mm along +y per slice: tan(tilt) = 0.25, 14.04°
    positions = np.array([[0.0, k * shift, k * dz] for k in range(n)])
    # HU = 20·y_world + 100 everywhere: linear in space, so trilinear resampling reproduces it exactly
    y_world = positions[:, 1][:, None] + dy * np.arange(rows)[None, :]
    hu = (20 * y_world + 100)[:, :, None] * np.ones(cols)
    write_series(
        tmp_path, (hu + 1024).astype(np.uint16), positions=positions, spacing_mm=(dz, dy, dx),
        extra={"GantryDetectorTilt": "14.04"},
    )
    with pytest.raises(GeometryError, match=r"gantry tilt.*14\.04°.*resample_tilt"):
        load_volume(tmp_path)
    v = load_volume(tmp_path, resample_tilt=True)
    assert v.grid.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert v.grid.spacing_mm == pytest.approx((dz, dy, dx))
    # the untilted grid covers the whole sheared stack: 7 rows + 5 × 0.5 mm drift = 13 rows
    assert v.shape == (6, 13, 8)
    centres = v.grid.index_to_lps(np.stack(np.meshgrid(*[np.arange(s) for s in v.shape], indexing="ij"), -1))
    inside = v.hu > -1024
    expected = 20 * centres[..., 1] + 100
    np.testing.assert_allclose(v.hu[inside], expected[inside], atol=1e-3)
    # every slice keeps all 8 of its original rows of data
    assert inside.sum() == n * rows * cols
    assert any("resampled linearly onto an untilted grid" in n for n in v.info.load_notes)


def test_tilt_tag_without_shear_is_only_noted(tmp_path):
    write_series(tmp_path, ramp(3), extra={"GantryDetectorTilt": "12"})
    v = load_volume(tmp_path)
    assert any("GantryDetectorTilt is 12°" in n for n in v.info.load_notes)


def test_mixed_orientation_refused(tmp_path):
    write_series(tmp_path, ramp(4), per_slice={2: {"ImageOrientationPatient": ["1", "0", "0", "0", "0", "-1"]}})
    with pytest.raises(GeometryError, match="mixes slice orientations"):
        load_volume(tmp_path)


def test_mr_refused_and_ct_preferred(tmp_path):
    write_series(tmp_path / "mr", ramp(5), modality="MR", series_uid="1.2.9")
    with pytest.raises(InputError, match="no CT series"):
        load_volume(tmp_path)
    with pytest.raises(InputError, match="series 1.2.9 is MR, not CT"):
        load_volume(tmp_path, series_uid="1.2.9")
    write_series(tmp_path / "ct", ramp(3), series_uid="1.2.8")
    v = load_volume(tmp_path)  # the MR series has more slices, but only CT is measured
    assert v.info.series_uid == "1.2.8"


def test_corrupt_and_foreign_files(tmp_path):
    paths = write_series(tmp_path, ramp(4, rows=64, cols=64))
    (tmp_path / "README.txt").write_text("not a DICOM file")
    v = load_volume(tmp_path)
    assert "1 non-DICOM files ignored" in v.info.load_notes
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 4000])  # cut into the pixel data
    with pytest.raises(InputError, match=paths[2].name):
        load_volume(tmp_path)
    paths[2].write_bytes(data)
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(InputError, match="junk.dcm: named like a DICOM file but is not one"):
        load_volume(tmp_path)


def test_empty_and_non_dicom_folders(tmp_path):
    with pytest.raises(InputError, match="folder is empty"):
        load_volume(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM images found"):
        load_volume(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        load_volume(tmp_path / "missing")


def test_no_patient_identifiers_anywhere(tmp_path):
    write_series(tmp_path, ramp(3), extra={"ContrastBolusAgent": "Iomeprol", "SliceThickness": "3"})
    v = load_volume(tmp_path)
    assert v.info.contrast_agent == "Iomeprol"
    assert v.info.convolution_kernel == "B30f, 2" and v.info.kvp == 120.0
    text = repr(v) + repr(v.info) + json.dumps(asdict(v.info))
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID, "98765", "19420101", "ACC-555", "20240102"):
        assert secret not in text


def test_oblique_non_square_series_matches_simpleitk(tmp_path):
    # rotated 30° about z, rows ≠ columns, dy ≠ dx: every axis convention shows up in the result
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    orientation = (c, s, 0.0, -s, c, 0.0)
    rng = np.random.default_rng(7)
    stored = rng.integers(0, 2000, size=(5, 6, 9)).astype(np.uint16)
    write_series(tmp_path, stored, orientation=orientation, spacing_mm=(1.5, 0.6, 0.8), origin=(5.0, -3.0, 40.0),
                 names=[f"f{k}.dcm" for k in (3, 0, 4, 1, 2)])
    v = load_volume(tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    assert v.shape == (5, 6, 9) and v.grid.spacing_mm == pytest.approx((1.5, 0.6, 0.8))
    assert v.grid.spacing_mm[::-1] == pytest.approx(image.GetSpacing())
    assert v.grid.origin_lps_mm == pytest.approx(image.GetOrigin(), abs=1e-5)
    assert v.grid.direction == pytest.approx(image.GetDirection(), abs=1e-6)
    np.testing.assert_array_equal(v.hu, sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(v.hu, stored.astype(int) - 1024)


def test_empty_series_uids_grouped_by_series_number(tmp_path):
    write_series(tmp_path, ramp(4), series_uid="", extra={"SeriesNumber": 2})
    write_series(tmp_path / "b", ramp(3), series_uid="", extra={"SeriesNumber": 5})
    v = load_volume(tmp_path)
    assert v.shape[0] == 4 and v.info.series_uid is None
    assert "(no SeriesInstanceUID, series number 5) (3 slices" in v.info.load_notes[0]


def test_truncated_header_is_corrupt_not_skipped(tmp_path):
    paths = write_series(tmp_path, ramp(4))
    paths[1].write_bytes(paths[1].read_bytes()[:300])
    with pytest.raises(InputError, match=f"{paths[1].name}: .*truncated or corrupt"):
        load_volume(tmp_path)


def test_hu_array_types():
    assert hu_array(np.array([1.0, -2.0])).dtype == np.int16
    assert hu_array(np.array([1.5, -2.0])).dtype == np.float32
    assert hu_array(np.array([40000], dtype=np.int32)).dtype == np.float32
    assert hu_array(np.array([-3024, 3071], dtype=np.int32)).dtype == np.int16
