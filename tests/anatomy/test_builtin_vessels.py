"""Built-in vessel segmenter (anatomy.builtin.vessels) against phantom truth and TotalSegmentator masks.

The Dice bars are the values measured when the segmenter was written, rounded down by a few
hundredths (see the report): they catch regressions, they are not the issue's targets (aorta
≥ 0.85, iliac ≥ 0.75 on real scans, ≥ 0.95 on phantoms), which are not all met.
"""

from __future__ import annotations

import numpy as np
import pytest

from vascalc.anatomy.builtin.vessels import (
    VESSEL_LABELS,
    VesselResult,
    _canonical_frame,
    _robust_radius,
    segment_vessels,
)
from vascalc.errors import InputError
from vascalc.imaging import Grid, Volume, load_labelmap, load_volume
from vascalc.phantoms import make_vascular_phantom

BONE_PREFIXES = ("vertebrae_", "sacrum", "hip_", "femur_")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 2.0 * float((a & b).sum()) / float(total) if total else 1.0


def _bone_truth(phantom) -> np.ndarray:
    ids = [i for i, n in phantom.labels.names.items() if n.startswith(BONE_PREFIXES)]
    return np.isin(phantom.labels.labels, ids)


@pytest.fixture(scope="module")
def cta_phantom():
    ph = make_vascular_phantom(5, lumen_hu=350)
    return ph, segment_vessels(ph.volume)


@pytest.fixture(scope="module")
def plain_phantom():
    ph = make_vascular_phantom(5, lumen_hu=40)
    return ph, segment_vessels(ph.volume)


# --- pure helpers --------------------------------------------------------------------------------

def test_robust_radius_ignores_rays_escaping_through_an_attachment():
    # 12 rays end on a 10-mm wall (±0.3 mm), 16 run on through an attached organ (scattered
    # 14–40 mm), 4 never end: the wall is the minority, but the only consistent group
    wall = 10.0 + 0.3 * np.sin(np.arange(12))
    r = np.concatenate([wall, np.linspace(14.0, 40.0, 16), [np.nan] * 4])
    assert _robust_radius(r) == pytest.approx(10.0, abs=0.3)
    # the median of all rays would have put the wall at 20+ mm
    assert np.nanmedian(np.where(np.isfinite(r), r, 1e6)) > 20.0


def test_canonical_frame_reads_flipped_and_permuted_grids():
    assert _canonical_frame(np.eye(3)) == ((0, 1, 2), (False, False, False))
    # RAS-stored NIfTI as SimpleITK reports it: x and y index axes run right and anterior
    perm, flips = _canonical_frame(np.diag([-1.0, -1.0, 1.0]))
    assert perm == (0, 1, 2) and flips == (False, True, True)
    # a sagittal-first array: index axes (z, y, x) hold (x, y, z) of the patient
    d = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    perm, flips = _canonical_frame(d)
    assert perm == (2, 1, 0) and flips == (False, False, False)


# --- phantoms ------------------------------------------------------------------------------------

def test_cta_phantom_aorta_and_iliacs(cta_phantom):
    ph, res = cta_phantom
    truth = ph.totalseg_labels()
    assert isinstance(res, VesselResult)
    assert set(res.labels.names.values()) == set(VESSEL_LABELS.values())
    assert res.contrast_detected
    assert 320.0 <= res.lumen_hu_median <= 380.0  # the phantom's lumen is 350 HU
    # measured 0.916 / 0.871 / 0.865 (seed 5, 100 × 128 × 128 at 3 × 3.2 × 3.2 mm)
    assert dice(res.labels.mask("aorta"), truth.mask("aorta")) >= 0.88
    assert dice(res.labels.mask("iliac_artery_left"), truth.mask("iliac_artery_left")) >= 0.84
    assert dice(res.labels.mask("iliac_artery_right"), truth.mask("iliac_artery_right")) >= 0.84


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_cta_phantom_aorta_other_seeds(seed):
    ph = make_vascular_phantom(seed, lumen_hu=350)
    res = segment_vessels(ph.volume)
    # measured 0.902 (seed 0), 0.909 (seed 3), 0.878 (seed 7)
    assert dice(res.labels.mask("aorta"), ph.totalseg_labels().mask("aorta")) >= 0.86
    assert not (res.labels.labels > 0)[_bone_truth(ph)].any()


def test_non_contrast_phantom_aorta(plain_phantom):
    ph, res = plain_phantom
    truth = ph.totalseg_labels()
    assert not res.contrast_detected
    assert 20.0 <= res.lumen_hu_median <= 70.0  # blood 40 HU, wall 45 HU
    # measured 0.924 (seed 5); other seeds: 0.654 (0), 0.555 (3; 0.350 before the swerve test
    # below), 0.842 (7) — see the report
    assert dice(res.labels.mask("aorta"), truth.mask("aorta")) >= 0.90
    # the visceral origins are not looked for without contrast: known, absent
    for name in ("renal_artery_left", "renal_artery_right", "celiac_trunk", "superior_mesenteric_artery"):
        assert name in res.labels.absent_names()


def test_non_contrast_bifurcation_found_where_the_track_swerves_into_an_iliac():
    """Seed 0 at the bench's grid: the right common iliac touches soft tissue with no fat plane,
    so the tube keeps an aortic calibre and the narrowing test never fires; the track used to
    run 16 slices (40 mm) down the iliac as "aorta" (Dice 0.811, 1.33 × the true volume)."""
    ph = make_vascular_phantom(0, lumen_hu=40, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5))
    truth = ph.totalseg_labels().mask("aorta")
    res = segment_vessels(ph.volume)
    aorta = res.labels.mask("aorta")
    lowest_truth = int(np.flatnonzero(truth.any(axis=(1, 2))).min())
    lowest = int(np.flatnonzero(aorta.any(axis=(1, 2))).min())
    assert lowest >= lowest_truth - 1  # measured 52 vs the true 48: it stops at the bifurcation
    assert dice(aorta, truth) >= 0.87  # measured 0.896
    assert any("aortic bifurcation at slice" in n for n in res.notes)


@pytest.mark.parametrize("which", ["cta", "plain"])
def test_no_bone_voxel_in_any_vessel_mask(which, cta_phantom, plain_phantom):
    ph, res = cta_phantom if which == "cta" else plain_phantom
    vessel = res.labels.labels > 0
    assert vessel.sum() > 1000
    assert not vessel[_bone_truth(ph)].any()


def test_posterior_plaques_next_to_the_spine_mostly_stay_in_the_aorta(cta_phantom):
    """The posterior aortic plaques 2–5 mm from the vertebral bodies (the aorta-to-patella
    study's failure mode). At 3.2-mm voxels the threshold skeleton fuses with part of such a
    plaque and bone wins: measured 0.78 of the plaque's voxels kept (seed 5; 0.14–0.84 over
    seeds 0, 3, 5 — see the report)."""
    ph, res = cta_phantom
    aorta = res.labels.mask("aorta")
    near = [p for p in ph.truth["plaques"] if p["vessel"] == "aorta" and p["next_to_bone"]]
    assert near, "the phantom always places plaques next to bone"
    kept = [aorta[ph.plaque_ids == p["id"]].mean() for p in near]
    assert min(kept) >= 0.7


def test_metal_streak_slices_are_uncertain_and_left_empty():
    """A pedicle screw at L4 (3071 HU) streaks the slices of the aortic bifurcation: the
    segmenter marks them uncertain for the vessels within reach and draws nothing there."""
    ph = make_vascular_phantom(5, lumen_hu=350, metal="screw")
    res = segment_vessels(ph.volume)
    metal = ph.volume.hu > 2000
    metal_z = set(np.flatnonzero(metal.any(axis=(1, 2))).tolist())
    assert metal_z
    unc = res.uncertain_slices.get("aorta", ())
    assert metal_z <= set(unc)  # every slice holding metal is uncertain for the aorta
    aorta = res.labels.mask("aorta")
    for name, slices in res.uncertain_slices.items():
        m = res.labels.mask(name)
        assert not any(m[z].any() for z in slices)
    assert res.labels.uncertain_slices == res.uncertain_slices
    assert not (res.labels.labels > 0)[metal].any()
    # the aorta above the streaks is still found (measured 0.857)
    assert dice(aorta, ph.totalseg_labels().mask("aorta")) >= 0.83


@pytest.mark.parametrize("seed", [0, 5])
def test_iliacs_are_reacquired_below_a_screw(seed):
    """The screw's streaks hide the aortic bifurcation: the iliacs are picked up again as two
    tubes on the first clear slices below, and the streaked gap is uncertain for them too."""
    ph = make_vascular_phantom(seed, lumen_hu=350, metal="screw")
    truth = ph.totalseg_labels()
    res = segment_vessels(ph.volume)
    # measured 0.837 / 0.827 (seed 5), 0.845 / 0.844 (seed 0); 0.0 before re-acquisition
    for name in ("iliac_artery_left", "iliac_artery_right"):
        assert dice(res.labels.mask(name), truth.mask(name)) >= 0.80
        gap = set(res.uncertain_slices.get(name, ()))
        assert gap, "the slices between the last aortic fit and the re-acquired iliacs are uncertain"
        assert not any(res.labels.mask(name)[z].any() for z in gap)
    assert not (res.labels.labels > 0)[ph.volume.hu > 2000].any()


def test_same_result_on_a_flipped_grid(cta_phantom):
    """Reading the array in the canonical frame makes the result independent of storage order."""
    ph, res = cta_phantom
    g = ph.volume.grid
    # store the x axis reversed: the first column is now the patient's leftmost one
    nx = g.shape[2]
    origin = np.asarray(g.origin_lps_mm) + np.array([(nx - 1) * g.spacing_mm[2], 0.0, 0.0])
    flipped = Volume(np.ascontiguousarray(ph.volume.hu[:, :, ::-1]),
                     Grid(g.shape, g.spacing_mm, tuple(origin), (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), ph.volume.info)
    res2 = segment_vessels(flipped)
    assert np.array_equal(res2.labels.labels[:, :, ::-1], res.labels.labels)


def test_deterministic(plain_phantom):
    ph, res = plain_phantom
    again = segment_vessels(ph.volume)
    assert np.array_equal(again.labels.labels, res.labels.labels)
    assert again.uncertain_slices == res.uncertain_slices


def test_given_bone_mask_is_never_overlapped(plain_phantom):
    ph, _ = plain_phantom
    bones = _bone_truth(ph)
    res = segment_vessels(ph.volume, bones=bones)
    assert not (res.labels.labels > 0)[bones].any()


def test_wrong_mask_shape_is_an_input_error(plain_phantom):
    ph, _ = plain_phantom
    with pytest.raises(InputError, match="bones mask shape"):
        segment_vessels(ph.volume, bones=np.zeros((3, 3, 3), bool))


def test_runtime_small_phantom(cta_phantom):
    _, res = cta_phantom
    assert res.elapsed_s < 10.0  # measured ≈ 1.5–2 s on the 2-core machine


# --- real scans ----------------------------------------------------------------------------------

def test_real_non_contrast_abdomen(shared_data):
    folder = shared_data / "ct" / "totalseg_example"
    vol = load_volume(folder / "example_ct.nii.gz")
    ref = load_labelmap(folder / "example_seg_fast_force_split.nii.gz", vol.grid)
    res = segment_vessels(vol)
    assert not res.contrast_detected
    # measured 0.914 vs TotalSegmentator (3 mm, non-contrast)
    assert dice(res.labels.mask("aorta"), ref.mask("aorta")) >= 0.88
    # both iliac arteries together (TotalSegmentator has no femoral label: its iliac runs on down
    # the groin): measured 0.312 — followed into the pelvis, then lost beside the iliac veins
    names = ("iliac_artery_left", "iliac_artery_right", "femoral_artery_left", "femoral_artery_right")
    mine = np.any([res.labels.mask(n) for n in names], axis=0)
    assert dice(mine, ref.mask("iliac_artery_left") | ref.mask("iliac_artery_right")) >= 0.28
    # no TotalSegmentator bone voxel in any vessel mask
    bone_ids = [i for i, n in ref.names.items() if n.startswith(BONE_PREFIXES)]
    assert not (res.labels.labels > 0)[np.isin(ref.labels, bone_ids)].any()
    # the left hip implant: nothing is drawn within reach of its streaks
    metal = vol.hu > 2000
    assert metal.any()
    mz = np.flatnonzero(metal.any(axis=(1, 2)))
    for name in ("iliac_artery_left", "femoral_artery_left"):
        m = res.labels.mask(name)
        assert not m[mz.min(): mz.max() + 1].any()
    assert res.elapsed_s < 10.0  # measured ≈ 1 s


def test_real_contrast_ct_aorta(shared_data):
    folder = shared_data / "ct" / "totalseg_dicom"
    vol = load_volume(folder)
    ref = load_labelmap(folder / "example_seg_dicom.nii.gz", vol.grid)
    res = segment_vessels(vol)
    assert res.contrast_detected
    # measured 0.865 (20 slices at T11–T12, lumen ≈ 150 HU)
    assert dice(res.labels.mask("aorta"), ref.mask("aorta")) >= 0.84
