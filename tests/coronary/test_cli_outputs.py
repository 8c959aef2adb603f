"""``vascalc coronary score`` as a user meets it: files written, one-line errors, batches that go on."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from vascalc.bench.coronary import summarise
from vascalc.imaging import Grid, ScanInfo, Volume, save_volume_nifti
from vascalc.phantoms import make_chest_phantom
from vascalc.phantoms.types import PlaqueSpec


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vascalc", *map(str, args)], capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and fragment.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    import inspect

    fixed = {k: v for k, v in {"vary_anatomy": False, "distractors": "none", "motion_blur_mm": 0.0}.items()
             if k in inspect.signature(make_chest_phantom).parameters}
    chest = make_chest_phantom(6, plaques=[PlaqueSpec("lad", 25.0, 6.0, 180.0, 0.0, 1.0, 700.0)], noise_sd_hu=10.0,
                               **fixed)
    save_volume_nifti(chest.volume, folder / "chest.nii.gz")
    hu = np.full((12, 48, 48), 40, dtype=np.int16)
    save_volume_nifti(Volume(hu=hu, grid=Grid(shape=hu.shape, spacing_mm=(5.0, 4.0, 4.0)), info=ScanInfo()),
                      folder / "belly.nii.gz")
    contrast = make_chest_phantom(2, plaques="none", lumen_hu=320.0, noise_sd_hu=10.0, **fixed)
    save_volume_nifti(contrast.volume, folder / "cta.nii.gz")
    return folder


def test_missing_input_one_line(tmp_path):
    assert_one_line_error(run_cli("coronary", "score", tmp_path / "nope.nii.gz", "-o", tmp_path / "out"), "nope")


def test_contrast_without_force_one_line(inputs, tmp_path):
    proc = run_cli("coronary", "score", inputs / "cta.nii.gz", "-o", tmp_path / "out", "--no-qc")
    assert_one_line_error(proc, "--force")
    assert not (tmp_path / "out").exists()                  # nothing written for a refused case


def test_batch_goes_on_past_a_bad_case(inputs, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("coronary", "score", inputs / "chest.nii.gz", inputs / "belly.nii.gz", "-o", out)
    assert proc.returncode == 0, proc.stderr
    cohort = pd.read_csv(out / "cohort.csv")
    bad = cohort[cohort.case_id == "belly"]
    assert bad.status.tolist() == ["failed"] and "chest" in bad.error.iloc[0]
    good = cohort[cohort.case_id == "chest"]
    assert set(good.name) == {"rca", "lad", "lcx", "total"}
    case = out / "chest"
    for name in ("result.json", "arteries.csv", "lesions.csv", "coronary_lesions.nii.gz", "heart_mask.nii.gz",
                 "qc_lesions.png", "qc_heart_mip.png", "report.html"):
        assert (case / name).is_file(), name
    data = json.loads((case / "result.json").read_text())
    assert data["kind"] == "coronary" and data["schema_version"]
    lad = next(s for s in data["structures"] if s["name"] == "lad")
    assert lad["agatston_3mm"] > 0 and data["total"]["agatston_3mm"] == pytest.approx(lad["agatston_3mm"])
    lesions = pd.read_csv(case / "lesions.csv")
    assert {"artery", "method", "confidence"} <= set(lesions.columns)
    labels = np.asarray(nib.load(case / "coronary_lesions.nii.gz").dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, 4} and (labels == 2).any()
    # the LAD voxels of the map are the LAD volume of the result
    voxel = float(np.prod(data["input"]["geometry"]["spacing_mm_zyx"]))
    assert (labels == 2).sum() * voxel == pytest.approx(lad["calcium_volume_mm3"])


def test_bench_summary_numbers():
    """Se/Sp/PPV/NPV/κ of a hand-made 6-case table: RCA TP 2, FN 1, FP 0, TN 3."""
    rows = []
    truth = [1, 1, 1, 0, 0, 0]
    pred = [1, 1, 0, 0, 0, 0]
    for t, p in zip(truth, pred):
        row = {"runtime_s": 1.0, "distractors_counted": 0, "n_truth_distractors": 1, "noise_or_bone_counted": 0,
               "wrong_artery_counted": 0, "truth_band": "1-99" if t else "0", "band": "1-99" if p else "0"}
        for a in ("rca", "lad", "lcx", "total"):
            tt, pp = (t, p) if a in ("rca", "total") else (0, 0)
            row.update({f"{a}_truth_present": tt, f"{a}_present": pp, f"{a}_truth_agatston": 10.0 * tt,
                        f"{a}_agatston": 12.0 * pp, f"{a}_truth_volume_mm3": 5.0 * tt, f"{a}_volume_mm3": 6.0 * pp})
        rows.append(row)
    summary, text = summarise(pd.DataFrame(rows))
    rca = summary[summary.artery == "rca"].iloc[0]
    assert (rca.tp, rca.fn, rca.fp, rca.tn) == (2, 1, 0, 3)
    assert rca.sensitivity == pytest.approx(2 / 3) and rca.specificity == 1.0 and rca.npv == pytest.approx(0.75)
    # κ = (po − pe)/(1 − pe), po = 5/6, pe = 0.5·(2/6) + 0.5·(4/6) = 0.5 → 2/3
    assert rca.kappa == pytest.approx(2 / 3)
    assert rca.agatston_mae == pytest.approx((2 + 2 + 10) / 6)
    band = summary[summary.artery == "risk_band"].iloc[0]
    assert band.accuracy == pytest.approx(5 / 6)
    assert "| rca |" in text and "S5" in text
