"""``vascalc bench accuracy``: a tiny cohort end to end, the insert-phantom mass (issue item 4) and
calcium-free vessels."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from vascalc.bench.accuracy import (CohortCase, build_cohort, detection_table, make_case_phantom, plaque_detection,
                                    score_case, summarise)
from vascalc.calcium import score_calcium
from vascalc.calcium.options import CalibrationReference
from vascalc.cli.bench import app
from vascalc.errors import OutputError
from vascalc.phantoms import make_insert_phantom, make_vascular_phantom


def _read(path):
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_cli_tiny_cohort_writes_sane_tables(tmp_path):
    out = tmp_path / "acc"
    result = CliRunner().invoke(app, ["accuracy", "-o", str(out), "--cases", "1", "--seed", "3",
                                      "--slice-thickness", "3", "--noise", "15", "--methods", "agatston"])
    assert result.exit_code == 0, result.output
    for name in ("cases.csv", "summary.csv", "summary.md", "detection.csv", "agreement_vascular_agatston.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = _read(out / "cases.csv")
    assert {r["method"] for r in rows} == {"agatston"}
    assert {r["slice_thickness_mm"] for r in rows} == {"3"}
    aorta = next(r for r in rows if r["structure"] == "aorta")
    truth_mass = float(aorta["truth_mass_mg"])
    assert truth_mass > 50
    # the threshold volume and the PV mass are both measured, and the PV mass is the closer one
    assert float(aorta["classic_volume_mm3"]) > 0
    assert abs(float(aorta["integrated_mass_mg"]) / truth_mass - 1) < 0.10
    assert abs(float(aorta["integrated_mass_mg"]) - truth_mass) < abs(float(aorta["classic_mass_mg"]) - truth_mass)
    for r in rows:
        if float(r["truth_volume_mm3"]) == 0.0:
            assert float(r["integrated_volume_mm3"]) <= 5.0, r["structure"]
    summary = _read(out / "summary.csv")
    pooled = {r["quantity"]: r for r in summary if r["pooled"] == "thickness<=3mm,noise"}
    n = sum(1 for r in rows if float(r["truth_volume_mm3"]) >= 5)
    assert int(pooled["integrated_mass"]["n"]) == n >= 2
    mape = np.mean([abs(float(r["integrated_mass_mg"]) / float(r["truth_mass_mg"]) - 1) for r in rows
                    if float(r["truth_volume_mm3"]) >= 5]) * 100
    assert float(pooled["integrated_mass"]["mape_percent"]) == pytest.approx(mape, rel=1e-4)
    det = _read(out / "detection.csv")
    assert sum(int(d["n_plaques"]) for d in det) == len(make_case_phantom(
        build_cohort(1, 3, (3.0,), (15.0,))[0]).truth["plaques"])
    assert all(0 <= float(d["detection_rate"]) <= 1 for d in det if d["detection_rate"])
    assert "vascalc bench accuracy" in (out / "summary.md").read_text(encoding="utf-8")


def test_cli_refuses_a_non_empty_output(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = CliRunner().invoke(app, ["accuracy", "-o", str(tmp_path), "--cases", "1", "--slice-thickness", "3"])
    assert result.exit_code != 0
    assert isinstance(result.exception, OutputError)


def test_cohort_is_deterministic_and_alternates_contrast():
    a = build_cohort(2, 7, (1.0, 3.0), (10.0,), "both")
    assert a == build_cohort(2, 7, (1.0, 3.0), (10.0,), "both")
    assert [c.contrast for c in a if c.kind == "vascular"] == [False, True, False, True]
    assert sum(c.kind == "inserts" for c in a) == 2
    assert len({c.seed for c in a}) == len(a)
    # growing the grid keeps the existing cases' seeds
    assert set(a) <= set(build_cohort(2, 7, (1.0, 2.0, 3.0), (10.0,), "both"))


@pytest.mark.parametrize("dz", [0.5, 3.0])
def test_insert_phantom_pv_mass_within_5_percent(dz):
    """Issue item 4: the PV-aware mass of an insert phantom (rods calibrate it) is within 5 % of truth,
    while the 130 HU threshold mass is not."""
    nz = int(math.ceil(14.0 / dz)) + 2
    ph = make_insert_phantom(1, shape=(nz, 224, 224), spacing_mm=(dz, 0.8, 0.8))
    lm = ph.labels
    ins = {i: n for i, n in lm.names.items() if n.startswith("insert_")}
    rods = ph.truth["rods"]
    cal = CalibrationReference(tuple(r["density_mg_cm3"] for r in rods), tuple(r["hu_mean_measured"] for r in rods))
    vessels = np.where(np.isin(lm.labels, list(ins)), lm.labels, 0)
    res = score_calcium(ph.volume.hu, vessels, ins, ph.volume.grid, "hu=130", calibration=cal,
                        slice_thickness_mm=dz)
    truth = ph.truth["total"]["mass_mg"]
    assert res.total.integrated_mass_mg == pytest.approx(truth, rel=0.05)
    assert abs(res.total.mass_mg / truth - 1) > 0.05       # the threshold mass misses the blurred rim


def test_zero_calcium_vessels_stay_below_5_mm3():
    for contrast, method in ((False, "agatston"), (True, "adaptive")):
        case = CohortCase("zero", "vascular", 5, contrast, 3.0, 20.0)
        ph = make_vascular_phantom(5, shape=(80, 256, 256), spacing_mm=(3.0, 0.8, 0.8), noise_sd_hu=20.0,
                                   lumen_hu=350.0 if contrast else 40.0, plaques="none")
        rows, detected = score_case(case, ph, method)
        assert detected.size == 0
        assert rows and all(r.truth_volume_mm3 == 0 for r in rows)
        assert max(r.integrated_volume_mm3 for r in rows) <= 5.0
        assert max(r.classic_volume_mm3 for r in rows) <= 5.0


def test_plaque_detection_and_table_by_size():
    ids = np.zeros((1, 4, 4), dtype=np.int32)
    ids[0, 0, :2] = 1
    ids[0, 3, :] = 2
    calcium = np.zeros_like(ids, dtype=bool)
    calcium[0, 0, 1] = True
    det = plaque_detection(ids, calcium, 3)
    assert det.tolist() == [True, False, False]
    table = detection_table([("vascular", "agatston", 1.0, np.array([3.0, 50.0, 500.0]), det)])
    by_bin = {d.size_bin_mm3: (d.n_plaques, d.n_detected) for d in table}
    assert by_bin == {"0-5": (1, 1), "5-20": (0, 0), "20-100": (1, 0), ">100": (1, 0)}


def test_summary_statistics_match_hand_computation():
    from vascalc.bench.accuracy import VesselRow

    def row(name, tv, cv, iv):
        return VesselRow("c", "vascular", 1, False, 1.0, 10.0, "agatston", name, tv, tv, 1, cv, cv, 0.0, iv, iv,
                         iv, "default")

    rows = [row("a", 10.0, 15.0, 11.0), row("b", 20.0, 30.0, 18.0), row("c", 40.0, 50.0, 40.0),
            row("z", 0.0, 0.0, 2.0)]
    s = {(r.quantity, r.pooled): r for r in summarise(rows)}
    iv = s[("integrated_volume", "")]
    assert iv.n == 3
    assert iv.mape_percent == pytest.approx(100 * (0.1 + 0.1 + 0.0) / 3)
    d = np.array([1.0, -2.0, 0.0])
    assert iv.ba_bias == pytest.approx(d.mean())
    assert iv.ba_loa_high == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert iv.pearson_r == pytest.approx(np.corrcoef([10, 20, 40], [11, 18, 40])[0, 1])
    assert iv.zero_n == 1 and iv.zero_max == 2.0
    assert s[("classic_volume", "")].mape_percent == pytest.approx(100 * (0.5 + 0.5 + 0.25) / 3)


def test_summary_of_a_two_vessel_cell_has_no_pearson_but_does_not_fail():
    """Pearson needs 3 pairs; a cell with 2 calcified vessels reports r = NaN and still its MAPE."""
    import math

    from vascalc.bench.accuracy import VesselRow, summarise

    def row(structure, truth, measured):
        return VesselRow("c0", "vascular", 1, False, 1.0, 10.0, "agatston", structure, truth, truth, 1,
                         measured, measured, 0.0, measured, measured, measured, "default")

    out = summarise([row("aorta", 100.0, 110.0), row("renal_artery_left", 10.0, 8.0)])
    cell = [s for s in out if s.quantity == "integrated_volume" and s.pooled == ""][0]
    assert cell.n == 2 and math.isnan(cell.pearson_r)
    assert cell.mape_percent == pytest.approx((10.0 + 20.0) / 2)
