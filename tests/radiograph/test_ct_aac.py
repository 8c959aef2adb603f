"""CT-derived AAC-24 (SCORING.md B.2 step 6) on the vascular phantom (truth) and on the real example CT."""

import numpy as np
import pytest

from vascalc.errors import GeometryError, MaskError
from vascalc.imaging.grid import Grid
from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph
from vascalc.radiograph.ct_aac import VERTEBRA_NAMES, ct_aac24, ct_aac24_from_volume
from vascalc.radiograph.kauppila import to_image_coords


@pytest.fixture(scope="module")
def fine_phantoms():
    """1 mm slices so that partial volume along z stays below a millimetre."""
    return [make_vascular_phantom(seed, shape=(200, 140, 100), spacing_mm=(1.0, 1.5, 2.5), plaque_rate=2,
                                  supersample=2, noise_sd_hu=5) for seed in (3, 7)]


def phantom_inputs(ph):
    aorta_ids = [p["id"] for p in ph.truth["plaques"] if p["vessel"] == "aorta"]
    calcium = np.isin(ph.plaque_ids, aorta_ids) & (ph.calcium_fraction > 0)
    verts = {lv: ph.labels.mask(name) for lv, name in VERTEBRA_NAMES.items()}
    return calcium, ph.labels.mask("aorta"), verts


def test_ct_aac24_matches_phantom_truth(fine_phantoms):
    for ph in fine_phantoms:
        truth = project_lateral_radiograph(ph).truth["kauppila"]
        calcium, aorta, verts = phantom_inputs(ph)
        result = ct_aac24(calcium, aorta, verts, ph.volume.grid)
        g = result.kauppila.geometry
        # level boundaries from the vertebra masks equal the analytic disc mid-points (±0.6 mm)
        rows, _ = to_image_coords(g, np.array(g.boundaries_mm), np.zeros(5))
        z = ph.volume.grid.origin_lps_mm[2] + rows * ph.volume.grid.spacing_mm[0]
        assert z == pytest.approx(list(truth["level_boundaries_mm"].values()), abs=0.6)
        # AAC-24 within one point: voxels add up to half a slice at each plaque end, and the wall
        # split uses the mask centroid per slice instead of the analytic centreline
        assert abs(result.aac24 - truth["aac24"]) <= 1
        f_truth = np.array([truth["segments"][k]["fraction"] for k in result.kauppila.fractions])
        assert np.abs(np.array(list(result.kauppila.fractions.values())) - f_truth).max() < 0.15
        assert result.warnings == ()


def test_ct_aac24_is_orientation_free(fine_phantoms):
    ph = fine_phantoms[0]
    calcium, aorta, verts = phantom_inputs(ph)
    reference = ct_aac24(calcium, aorta, verts, ph.volume.grid)
    # the same scan stored with y and z reversed (direction −1 on those axes)
    flip = (slice(None, None, -1), slice(None, None, -1), slice(None))
    g = ph.volume.grid
    flipped_grid = Grid(shape=g.shape, spacing_mm=g.spacing_mm, origin_lps_mm=g.origin_lps_mm,
                        direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0))
    result = ct_aac24(calcium[flip], aorta[flip], {k: v[flip] for k, v in verts.items()}, flipped_grid)
    assert result.kauppila.grades == reference.kauppila.grades
    assert result.kauppila.fractions == pytest.approx(reference.kauppila.fractions, abs=1e-6)


def test_ct_aac24_refuses_missing_masks(fine_phantoms):
    ph = fine_phantoms[0]
    calcium, aorta, verts = phantom_inputs(ph)
    with pytest.raises(MaskError, match="L2"):
        ct_aac24(calcium, aorta, {k: v for k, v in verts.items() if k != "L2"}, ph.volume.grid)
    with pytest.raises(MaskError, match="aorta"):
        ct_aac24(calcium, np.zeros_like(aorta), verts, ph.volume.grid)
    oblique = Grid(shape=ph.volume.grid.shape, spacing_mm=ph.volume.grid.spacing_mm,
                   direction=(0.7071, -0.7071, 0.0, 0.7071, 0.7071, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(GeometryError, match="oblique"):
        ct_aac24(calcium, aorta, verts, oblique)
    no_t12 = ct_aac24(calcium, aorta, {k: v for k, v in verts.items() if k != "T12"}, ph.volume.grid)
    assert any("T12" in w for w in no_t12.warnings)


def test_real_ct_small_aac_at_l3_l4(shared_data):
    from vascalc.imaging import load_labelmap, load_volume

    folder = shared_data / "ct" / "totalseg_example"
    volume = load_volume(folder / "example_ct.nii.gz")
    labels = load_labelmap(folder / "example_seg_fast_force_split.nii.gz", volume.grid)
    result = ct_aac24_from_volume(volume, labels)
    grades = result.kauppila.grades
    low = sum(grades[f"{lv}_{w}"] for lv in ("L3", "L4") for w in ("anterior", "posterior"))
    assert 0 < result.aac24 <= 10
    assert low >= 3 and low > result.aac24 - low  # the plaques sit at L3–L4
    assert result.kauppila.geometry.extrapolated == ()


def test_aac_agreement_on_hand_results():
    from vascalc.phantoms.types import VertebraLandmark
    from vascalc.radiograph.ct_aac import aac_agreement
    from vascalc.radiograph.kauppila import score_intervals, spine_geometry

    verts = [VertebraLandmark(n, ((t, 50.0), (t, 80.0), (t + 20, 80.0), (t + 20, 50.0)), (t + 10, 65.0))
             for n, t in (("L1", 10.0), ("L2", 40.0), ("L3", 70.0), ("L4", 100.0))]
    g = spine_geometry(verts, (1.0, 1.0))

    def result(covered_mm):  # one posterior run from the L1/L2 boundary (t = 15) downwards
        return score_intervals(g, {"posterior": (np.array([15.0]), np.array([15.0 + covered_mm]))})

    ref = [result(5), result(20), result(60)]   # grades L2p 1 | L2p 3 | L2p 3 + L3p 3 → 1, 3, 6
    other = [result(5), result(10), result(60)]  # 1, 2 (f = 1/3), 6
    assert [r.aac24 for r in ref] == [1, 3, 6] and [r.aac24 for r in other] == [1, 2, 6]
    same = aac_agreement(ref, ref)
    assert same.aac24_mae == 0 and same.segment_accuracy == 1 and same.aac24_icc_a1 == pytest.approx(1.0)
    diff = aac_agreement(ref, other)
    assert diff.aac24_mae == pytest.approx(1 / 3) and diff.aac24_mean_difference == pytest.approx(-1 / 3)
    assert diff.segment_accuracy == pytest.approx(23 / 24)
    assert diff.severity_agreement == 1.0  # 1 low / 1 low, 3 and 2 both moderate, 6 high / 6 high
    with pytest.raises(MaskError):
        aac_agreement(ref, other[:2])
