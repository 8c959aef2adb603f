"""Round 7: the scan reader, the coronary bench's primary reference (coronary.noisefloor.scan_reader_agatston)
— hand-built scans with hand-computed Agatston, a chest phantom with and without noise, and the bench
summary read against it first."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from vascalc.bench.coronary import summarise
from vascalc.coronary.noisefloor import scan_reader_agatston
from vascalc.coronary.training import truth_image_agatston
from vascalc.errors import MethodError
from vascalc.imaging import Grid, ScanInfo, Volume
from vascalc.phantoms import make_chest_phantom
from vascalc.phantoms.types import PlaqueSpec

# one 16 × 16 slice between two empty ones, 1 mm pixels, contiguous 3 mm slices: the A.4.3 slice
# convention is "none", so agatston_3mm = raw = Σ area·weight (1 mm² per pixel)
SHAPE, SPACING = (3, 16, 16), (3.0, 1.0, 1.0)
LAD, RCA, AORTA = (slice(2, 4), slice(2, 4)), (slice(2, 4), slice(12, 14)), (slice(12, 14), slice(2, 4))
DISTRACTOR, SPECK = (slice(12, 14), slice(12, 14)), (slice(8, 10), slice(8, 10))


def hand_scan(noisy: bool) -> SimpleNamespace:
    """A phantom-like object (the attributes the reference reads): a 2 × 2 LAD plaque at 250 HU,
    a 2 × 2 RCA plaque at 125 HU noise-free and 140 HU in the scan, a 2 × 2 aortic plaque at 300 HU
    and a 2 × 2 distractor at 400 HU (not a plaque), all on slice 1 in 40 HU tissue. The scan also
    has a 2 × 2 noise speck of 200 HU 4 pixels from every plaque, inside the plaques' box, and one
    noise pixel of 135 HU touching the LAD plaque in-plane."""
    hu = np.full(SHAPE, 40.0)
    ids = np.zeros(SHAPE, dtype=np.int32)
    for pid, where, value in ((1, LAD, 250.0), (2, RCA, 140.0 if noisy else 125.0), (3, AORTA, 300.0)):
        hu[(1, *where)] = value
        ids[(1, *where)] = pid
    hu[(1, *DISTRACTOR)] = 400.0
    if noisy:
        hu[(1, *SPECK)] = 200.0
        hu[1, 2, 4] = 135.0
    volume = Volume(hu=hu, grid=Grid(shape=SHAPE, spacing_mm=SPACING), info=ScanInfo(slice_thickness_mm=3.0))
    truth = {"plaques": [{"id": 1, "vessel": "lad"}, {"id": 2, "vessel": "rca"}, {"id": 3, "vessel": "aorta"}]}
    return SimpleNamespace(volume=volume, plaque_ids=ids, truth=truth)


def agatston(scores: dict) -> dict[str, float]:
    return {a: scores[a]["agatston_3mm"] for a in ("rca", "lad", "lcx", "total")}


def test_scan_reader_by_hand():
    scan = hand_scan(noisy=True)
    clean = hand_scan(noisy=False).volume.hu
    # LAD: the plaque and the touching noise pixel are one 2-D lesion of 5 mm², peak 250 HU (weight 2)
    # → 10; RCA: 4 mm² at 140 HU (weight 1) → 4. The aortic plaque (300 HU), the distractor (400 HU)
    # and the noise speck (200 HU, on no plaque) are ≥ 130 HU but never coronary.
    assert agatston(scan_reader_agatston(scan)) == {"rca": 4.0, "lad": 10.0, "lcx": 0.0, "total": 14.0}
    # the noise-free reference of the same case: the RCA plaque stays below 130 HU, no noise pixel
    assert agatston(truth_image_agatston(scan, clean)) == {"rca": 0.0, "lad": 8.0, "lcx": 0.0, "total": 8.0}


def test_scan_reader_ignores_calcium_on_no_coronary_plaque():
    scan = hand_scan(noisy=True)
    base = agatston(scan_reader_agatston(scan))
    # brighter aortic plaque, distractor and speck change nothing; the same speck on the RCA's edge does
    scan.volume.hu[(1, *AORTA)] = 900.0
    scan.volume.hu[(1, *DISTRACTOR)] = 900.0
    scan.volume.hu[(1, *SPECK)] = 900.0
    assert agatston(scan_reader_agatston(scan)) == base
    scan.volume.hu[1, 4, 12] = 450.0  # one pixel below the RCA plaque: its 2-D lesion, now peak 450 HU
    assert agatston(scan_reader_agatston(scan))["rca"] == 5 * 4.0


def test_scan_reader_slice_convention():
    """1.5 mm increment with 3 mm slices: A.4.3 "increment" → agatston_3mm = raw · 1.5 / 3."""
    scan = hand_scan(noisy=True)
    scan.volume = Volume(hu=scan.volume.hu, grid=Grid(shape=SHAPE, spacing_mm=(1.5, 1.0, 1.0)),
                         info=ScanInfo(slice_thickness_mm=3.0))
    scores = scan_reader_agatston(scan)
    assert scores["lad"]["agatston_raw"] == 10.0 and scores["lad"]["agatston_3mm"] == pytest.approx(5.0)
    assert scan_reader_agatston(scan, normalisation_mode="none")["lad"]["agatston_3mm"] == 10.0


def test_scan_reader_kv_band():
    """The scorer's kV row: unknown and 120 kVp → 130 HU; 100 kVp (145/222/334/446 HU) has other weight
    edges than the reference's classic ones → refused, unless a fixed threshold is given."""
    scan = hand_scan(noisy=True)
    unknown = agatston(scan_reader_agatston(scan))
    scan.volume = Volume(hu=scan.volume.hu, grid=scan.volume.grid, info=ScanInfo(slice_thickness_mm=3.0, kvp=120.0))
    assert agatston(scan_reader_agatston(scan)) == unknown
    scan.volume = Volume(hu=scan.volume.hu, grid=scan.volume.grid, info=ScanInfo(slice_thickness_mm=3.0, kvp=100.0))
    with pytest.raises(MethodError, match="100-kVp"):
        scan_reader_agatston(scan)
    # at 141 HU the RCA plaque (140 HU) drops out; the LAD lesion loses its 135 HU pixel: 4 mm² × 2
    assert agatston(scan_reader_agatston(scan, threshold_hu=141.0)) == {"rca": 0.0, "lad": 8.0, "lcx": 0.0,
                                                                          "total": 8.0}


def lad_phantom(noise_sd_hu: float):
    """Fixed-layout chest phantom with one dense LAD plaque and one aortic plaque, no other calcium
    (same anatomy and plaques for every noise level: the phantom draws each from its own random stream)."""
    return make_chest_phantom(6, vary_anatomy=False, distractors="none", motion_blur_mm=0.0, noise_sd_hu=noise_sd_hu,
                              plaques=[PlaqueSpec("lad", 25.0, 6.0, 180.0, 0.0, 1.0, 700.0),
                                       PlaqueSpec("aorta", 10.0, 8.0, 120.0, 0.0, 1.5, 700.0)])


def test_chest_phantom_scan_reader_with_and_without_noise():
    clean = lad_phantom(0.0)
    noisy = lad_phantom(25.0)
    reference = agatston(truth_image_agatston(noisy, clean.volume.hu))
    # noise 0: the scan reader is the noise-free reference, exactly
    assert agatston(scan_reader_agatston(clean)) == reference
    assert reference["lad"] > 0 and reference["rca"] == 0.0 and reference["lcx"] == 0.0
    assert reference["total"] == reference["lad"]
    aortic = clean.plaque_ids == 2  # the aortic plaque is bright in the image, but not coronary
    assert clean.truth["plaques"][1]["vessel"] == "aorta" and clean.volume.hu[aortic].max() >= 300
    # 25 HU noise: noise voxels ≥ 130 HU lie in the plaques' box (which spans the aortic plaque too)
    plaque = noisy.plaque_ids > 0
    box = tuple(slice(max(0, b.start - 2), b.stop + 2) for b in ndi.find_objects(plaque.astype(np.uint8))[0])
    near = ndi.binary_dilation(plaque, structure=np.ones((3, 3, 3), dtype=bool))
    # one 1.25 mm pixel (1.56 mm²) is a lesion: these specks would count if the reader took any bright voxel
    assert ((noisy.volume.hu >= 130) & ~near)[box].sum() > 0
    # the dense LAD plaque keeps its area and its ≥ 400 HU weight under noise, so the scan reader gives
    # exactly the noise-free scores: no speck and no aortic calcium added anywhere
    assert agatston(scan_reader_agatston(noisy)) == reference


def bench_rows() -> pd.DataFrame:
    """Six cases: the RCA present in the scan for cases 0–2, in the noise-free image for 0–1 only (case 2
    lifted by noise); the scorer calls it present in 0–2. Other arteries absent everywhere."""
    scan, clean, pred = [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]
    rows = []
    for s, c, p in zip(scan, clean, pred):
        row = {"runtime_s": 1.0, "distractors_counted": 0, "n_truth_distractors": 1, "noise_or_bone_counted": 0,
               "wrong_artery_counted": 0, "scan_band": "1-99" if s else "0", "truth_band": "1-99" if c else "0",
               "band": "1-99" if p else "0"}
        for a in ("rca", "lad", "lcx", "total"):
            ss, cc, pp = (s, c, p) if a in ("rca", "total") else (0, 0, 0)
            row.update({f"{a}_scan_present": ss, f"{a}_truth_present": cc, f"{a}_present": pp,
                        f"{a}_scan_agatston": 10.0 * ss, f"{a}_truth_agatston": 10.0 * cc, f"{a}_agatston": 11.0 * pp,
                        f"{a}_truth_volume_mm3": 5.0 * cc, f"{a}_volume_mm3": 6.0 * pp})
        rows.append(row)
    return pd.DataFrame(rows)


def test_bench_summary_reads_the_scan_reader_first():
    summary, text = summarise(bench_rows())
    scan = summary[(summary.artery == "rca") & (summary.reference == "scan_reader")].iloc[0]
    clean = summary[(summary.artery == "rca") & (summary.reference == "noise_free")].iloc[0]
    assert (scan.tp, scan.fn, scan.fp, scan.tn) == (3, 0, 0, 3) and scan.specificity == 1.0
    assert (clean.tp, clean.fn, clean.fp, clean.tn) == (2, 0, 1, 3) and clean.specificity == pytest.approx(0.75)
    assert scan.agatston_mae == pytest.approx(3 * 1.0 / 6) and clean.agatston_mae == pytest.approx((1 + 1 + 11) / 6)
    assert summary.reference.iloc[0] == "scan_reader"  # primary rows first
    band = summary[summary.artery == "risk_band"].set_index("reference")
    assert band.loc["scan_reader", "accuracy"] == 1.0 and band.loc["noise_free", "accuracy"] == pytest.approx(5 / 6)
    assert band.loc["noise_free", "confusion"] == "3 1 0 0 | 0 2 0 0 | 0 0 0 0 | 0 0 0 0"
    assert text.index("Against the scan reader") < text.index("Against the noise-free image")
    # the targets row reads the primary: specificity per artery (min) 100 % there, 75 % against the image
    target = next(line for line in text.splitlines() if line.startswith("| specificity per artery (min)"))
    assert target.split("|")[2].strip() == "100.0 %" and target.split("|")[3].strip() == "75.0 %"


def test_bench_writes_the_scan_reader_tables(tmp_path, monkeypatch):
    """run_coronary_bench on six stand-in rows (no phantom scored): the files carry both references."""
    import vascalc.bench.coronary as bench

    table = bench_rows()
    seeds = bench.bench_seeds(len(table), 0)
    by_seed = {s: dict(table.iloc[i]) | {"seed": s} for i, s in enumerate(seeds)}
    monkeypatch.setattr(bench, "case_row", lambda seed, model=None: by_seed[seed])
    result = bench.run_coronary_bench(tmp_path, len(table), 0, model="rules", command="test")
    cases = pd.read_csv(tmp_path / "cases.csv", keep_default_na=False)
    assert {"rca_scan_present", "rca_scan_agatston", "scan_band", "rca_truth_present", "truth_band"} <= set(cases)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary.reference[:4]) == ["scan_reader"] * 4 and list(summary.artery[:4]) == ["rca", "lad", "lcx", "any"]
    assert list(summary.reference[4:8]) == ["noise_free"] * 4
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == result.markdown
