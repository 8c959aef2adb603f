"""The CT job end to end on the real sample scans and on hand-built volumes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

import vascalc
from vascalc.errors import GeometryError, InputError, MaskError, MethodError, OutputError
from vascalc.imaging import Grid, LabelMap, ScanInfo, Volume, load_labelmap, load_volume


def _example(shared_data):
    folder = shared_data / "ct" / "totalseg_example"
    return folder / "example_ct.nii.gz", folder / "example_seg_fast_force_split.nii.gz"


def test_real_non_contrast_aorta_matches_an_independent_count(shared_data):
    """README of the sample: 19 aorta voxels ≥ 130 HU in 6 clusters (3 mm voxels, 27 mm³ each)."""
    ct_path, seg_path = _example(shared_data)
    only_aorta = vascalc.ScoringOptions(wall_mm=0.0)
    result = vascalc.score_ct(ct_path, seg_path, options=only_aorta)
    aorta = next(s for s in result.calcium.structures if s.name == "aorta")

    hu = np.asarray(nib.load(ct_path).dataobj)
    seg = np.asarray(nib.load(seg_path).dataobj)
    calcium = (seg == 52) & (hu >= 130)
    expected_voxels = int(calcium.sum())
    assert expected_voxels == 19
    # bone exclusion (3 mm) may only remove voxels, never add any
    assert aorta.calcium_volume_mm3 <= expected_voxels * 27.0
    assert aorta.calcium_volume_mm3 >= 0.6 * expected_voxels * 27.0
    assert aorta.calcium_volume_mm3 % 27.0 == pytest.approx(0.0, abs=1e-6)
    # iliac arteries have no voxel ≥ 130 HU (max 123 HU): exactly zero
    for side in ("left", "right"):
        iliac = next(s for s in result.calcium.structures if s.name == f"iliac_artery_{side}")
        assert iliac.present and iliac.calcium_volume_mm3 == 0.0 and iliac.agatston_raw == 0.0


def test_real_scan_without_bone_gives_the_hand_count_and_hand_agatston(shared_data):
    """Aorta alone (no bone masks, no wall): volume and Agatston recomputed slice by slice by hand."""
    ct_path, seg_path = _example(shared_data)
    volume = load_volume(ct_path)
    labels = load_labelmap(seg_path, volume.grid).subset(["aorta"])
    result = vascalc.score_ct(volume, labels, options=vascalc.ScoringOptions(wall_mm=0.0))
    aorta = next(s for s in result.calcium.structures if s.name == "aorta")
    mask = labels.mask("aorta") & (volume.hu >= 130)
    assert aorta.calcium_volume_mm3 == pytest.approx(mask.sum() * 27.0)
    # Agatston by hand: per axial slice, 8-connected components, area 9 mm² per pixel, weight by peak
    expected = 0.0
    for k in range(volume.hu.shape[0]):  # (z, y, x): axial slices along axis 0
        components, n = ndimage.label(mask[k], structure=np.ones((3, 3)))
        for c in range(1, n + 1):
            pixels = components == c
            peak = volume.hu[k][pixels].max()
            weight = 1 if peak < 200 else 2 if peak < 300 else 3 if peak < 400 else 4
            expected += pixels.sum() * 9.0 * weight
    assert aorta.agatston_raw == pytest.approx(expected)
    assert expected > 0


def test_outputs_are_written_and_identical_across_runs(shared_data, tmp_path):
    ct_path, seg_path = _example(shared_data)
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        vascalc.score_ct_cohort([ct_path], out, vessels=[str(seg_path)])
        outputs.append(out)
    names = sorted(p.name for p in outputs[0].iterdir())
    for expected in ("result.json", "vessels.csv", "lesions.csv", "calcium_lesions.nii.gz",
                     "vessel_masks.nii.gz", "qc_coronal_mip.png", "qc_sagittal_mip.png", "qc_axial_mosaic.png",
                     "report.html"):
        assert expected in names
    for name in names:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name

    data = json.loads((outputs[0] / "result.json").read_text())
    assert data["schema_version"] == "1.0" and data["tool"]["name"] == "vascalc"
    assert data["method"]["policy"] == "agatston"
    rows = pd.read_csv(outputs[0] / "vessels.csv")
    assert "aorta" in set(rows["name"]) and "total" in set(rows["name"])
    lesion_map = nib.load(outputs[0] / "calcium_lesions.nii.gz")
    ct = nib.load(ct_path)
    assert lesion_map.shape == ct.shape
    np.testing.assert_allclose(lesion_map.affine, ct.affine, atol=1e-4)
    lesions = pd.read_csv(outputs[0] / "lesions.csv")
    assert len(lesions) == int(np.asarray(lesion_map.dataobj).max())


def test_contrast_scan_is_refused_by_agatston_and_scored_by_adaptive(shared_data):
    folder = shared_data / "ct" / "totalseg_dicom"
    with pytest.raises(MethodError, match="contrast"):
        vascalc.score_ct(folder / "example_ct_dicom", folder / "example_seg_dicom.nii.gz")
    result = vascalc.score_ct(folder / "example_ct_dicom", folder / "example_seg_dicom.nii.gz", method="adaptive")
    threshold = result.calcium.thresholds["aorta"]["threshold_hu"]
    assert 153 + 2 * 16 <= threshold <= 400  # above the ≈150 HU lumen, far below the plaques
    aorta = next(s for s in result.calcium.structures if s.name == "aorta")
    # heavy calcification: the README counts 700 voxels ≥ 400 HU in the (undilated) aorta mask
    voxel_mm3 = 0.9765625 ** 2 * 2.0
    assert aorta.calcium_volume_mm3 >= 700 * voxel_mm3
    assert result.volume.info.contrast_agent == "APPLIED"


def _tiny_case(spacing=(3.0, 0.5, 0.5)):
    hu = np.full((4, 20, 20), 40, dtype=np.int16)
    vessels = np.zeros(hu.shape, dtype=np.uint8)
    vessels[:, 5:15, 5:15] = 1
    hu[1, 8:12, 8:12] = 450  # one 4×4-pixel lesion = 4 mm² at 0.5 mm, weight 4
    grid = Grid(shape=hu.shape, spacing_mm=spacing)
    volume = Volume(hu=hu, grid=grid, info=ScanInfo(kvp=120.0, slice_thickness_mm=3.0, slice_increment_mm=3.0))
    return volume, LabelMap(labels=vessels, grid=grid, names={1: "aorta"})


def test_hand_built_volume_through_the_api():
    volume, labels = _tiny_case()
    result = vascalc.score_ct(volume, labels, options=vascalc.ScoringOptions(wall_mm=0.0))
    total = result.calcium.total
    assert total.agatston_raw == pytest.approx(16.0)  # 4 mm² × weight 4
    assert total.calcium_volume_mm3 == pytest.approx(16 * 0.25 * 3.0)


def test_empty_artery_masks_are_refused():
    volume, labels = _tiny_case()
    empty = LabelMap(labels=np.zeros_like(labels.labels), grid=labels.grid, names={1: "aorta"})
    with pytest.raises(MaskError, match="empty"):
        vascalc.score_ct(volume, empty)


def test_masks_without_arteries_are_refused():
    volume, labels = _tiny_case()
    with pytest.raises(MaskError, match="no artery"):
        vascalc.score_ct(volume, LabelMap(labels=labels.labels, grid=labels.grid, names={1: "liver"}))


def test_missing_inputs_are_refused(tmp_path):
    with pytest.raises(InputError):
        vascalc.score_ct(tmp_path / "nope.nii.gz", tmp_path / "masks")


def test_geometry_mismatch_is_refused(shared_data):
    folder = shared_data / "ct" / "totalseg_example"
    with pytest.raises(GeometryError):
        vascalc.score_ct(folder / "example_ct.nii.gz", folder / "example_seg_fast")


def test_cohort_goes_on_past_a_bad_case(shared_data, tmp_path):
    ct_path, seg_path = _example(shared_data)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    out = tmp_path / "cohort"
    outcomes = vascalc.score_ct_cohort([ct_path, broken], out, vessels=[str(seg_path)])
    assert [o.status for o in outcomes] == ["ok", "failed"]
    table = pd.read_csv(out / "cohort.csv")
    assert set(table["case_id"]) == {"example_ct", "broken"}
    assert table.loc[table["case_id"] == "broken", "status"].item() == "failed"
    assert (out / "example_ct" / "result.json").is_file()
    assert not (out / "broken").exists()


def test_non_empty_output_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputError):
        vascalc.score_ct_cohort([tmp_path / "whatever.nii.gz"], out, vessels=["m.nii.gz"])
    assert (out / "keep.txt").read_text() == "x"
