"""``vascalc stats …`` through Typer's CliRunner: tables, files, plots and one-line user errors."""

import csv
import hashlib
import json

import numpy as np
import pytest
from stats_data import MINI_1, WRIGHT_1, WRIGHT_2
from typer.testing import CliRunner

from vascalc.cli.stats import app
from vascalc.errors import GeometryError, InputError, OutputError
from vascalc.imaging.grid import Grid
from vascalc.imaging.image_files import write_nifti

runner = CliRunner()


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def pefr_csv(tmp_path):
    return write_csv(tmp_path / "pefr.csv", ["subject", "mini", "wright", "wright_2"],
                     [(i + 1, m, w, w2) for i, (m, w, w2) in enumerate(zip(MINI_1, WRIGHT_1, WRIGHT_2))])


def test_agreement_json_reproduces_bland_altman(pefr_csv):
    result = runner.invoke(app, ["agreement", str(pefr_csv), "-r", "mini", "-p", "wright", "--format", "json",
                                 "--loa-multiplier", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    method = data["methods"][0]
    assert method["bland_altman"]["bias"] == pytest.approx(-2.117647, abs=5e-7)
    assert method["bland_altman"]["loa_lower"] == pytest.approx(-79.647907, abs=5e-7)
    assert method["pearson"]["r"] == pytest.approx(0.943279, abs=5e-7)
    assert method["errors"]["mae"] == pytest.approx(28.941176, abs=5e-7)


def test_agreement_writes_tables_and_plots(pefr_csv, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["agreement", str(pefr_csv), "-r", "mini", "-p", "wright", "-p", "wright_2",
                                 "--category-bands", "0,300,450", "-o", str(out), "--format", "md"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    for stem in ("bland_altman_wright", "bland_altman_percent_wright_2", "scatter_wright", "confusion_wright_2"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert {"agreement.md", "agreement.csv", "agreement.json", "agreement_comparisons.md"} <= names
    rows = list(csv.reader((out / "agreement.csv").read_text().splitlines()))
    assert [r[0] for r in rows[1:]] == ["wright", "wright_2"] and "ICC(A,1) (95 % CI)" in rows[0]
    assert "| wright |" in result.stdout and "Pairwise comparison" in result.stdout
    assert (out / "bland_altman_wright.png").read_bytes()[:4] == b"\x89PNG"
    # never overwrite
    again = runner.invoke(app, ["agreement", str(pefr_csv), "-r", "mini", "-p", "wright", "-o", str(out)])
    assert isinstance(again.exception, OutputError)


def test_plots_are_deterministic(pefr_csv, tmp_path):
    digests = []
    for name in ("a", "b"):
        result = runner.invoke(app, ["agreement", str(pefr_csv), "-r", "mini", "-p", "wright", "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / name).iterdir()})
    assert digests[0] == digests[1]


def test_agreement_user_errors(pefr_csv, tmp_path):
    missing = runner.invoke(app, ["agreement", str(pefr_csv), "-r", "mini", "-p", "nope"])
    assert isinstance(missing.exception, InputError) and "'nope' is not in" in str(missing.exception)
    text = write_csv(tmp_path / "text.csv", ["ref", "pred"], [(1, 2), (2, "abc"), (3, 4)])
    bad = runner.invoke(app, ["agreement", str(text), "-r", "ref", "-p", "pred"])
    assert isinstance(bad.exception, InputError) and "not a number" in str(bad.exception)
    short = write_csv(tmp_path / "short.csv", ["ref", "pred"], [(1, 2), (2, "")])
    few = runner.invoke(app, ["agreement", str(short), "-r", "ref", "-p", "pred"])
    assert isinstance(few.exception, InputError) and "at least" in str(few.exception)
    fmt = runner.invoke(app, ["agreement", str(pefr_csv), "-r", "mini", "-p", "wright", "--format", "xml"])
    assert isinstance(fmt.exception, InputError)


def test_detection_table_and_roc(tmp_path):
    rng = np.random.default_rng(1)
    ref = np.r_[np.ones(40), np.zeros(60)].astype(int)
    score = np.round(ref * 1.5 + rng.normal(size=100), 3)
    decision = (score > 0.75).astype(int)
    path = write_csv(tmp_path / "det.csv", ["truth", "score", "decision"], zip(ref, score, decision))
    out = tmp_path / "det"
    result = runner.invoke(app, ["detection", str(path), "-r", "truth", "-p", "decision", "-p", "score",
                                 "--threshold", "0.75", "-o", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "detection.json").read_text())
    decision_row, score_row = data["methods"]
    assert decision_row["diagnostic"]["tp"] == score_row["diagnostic"]["tp"] == int((ref & decision).sum())
    d = decision_row["diagnostic"]
    assert decision_row["auc"]["auc"] == pytest.approx((d["sensitivity"]["estimate"] + d["specificity"]["estimate"]) / 2)
    assert {"roc.png", "roc.svg", "confusion_score.png"} <= {p.name for p in out.iterdir()}
    no_threshold = runner.invoke(app, ["detection", str(path), "-r", "truth", "-p", "score"])
    assert isinstance(no_threshold.exception, InputError) and "--threshold" in str(no_threshold.exception)


def test_segmentation_folders_and_files(tmp_path):
    grid = Grid(shape=(8, 16, 16), spacing_mm=(2.0, 0.5, 0.5))
    ref = np.zeros(grid.shape, np.uint8)
    ref[2:6, 4:10, 4:10] = 1
    pred = np.zeros_like(ref)
    pred[2:6, 4:10, 5:11] = 1
    for folder, aorta in (("gt", ref), ("pred", pred)):
        write_nifti(aorta, grid, tmp_path / folder / "aorta.nii.gz")
    write_nifti(ref, grid, tmp_path / "gt" / "iliac_artery_left.nii.gz")  # no prediction file
    write_nifti(ref, grid, tmp_path / "pred" / "heart.nii.gz")  # no reference file
    result = runner.invoke(app, ["segmentation", str(tmp_path / "pred"), str(tmp_path / "gt"), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {s["structure"]: s for s in data["structures"]}
    assert by_name["aorta"]["overlap"]["dice"] == pytest.approx(2 * 120 / 288)
    assert by_name["aorta"]["distances"]["hausdorff_mm"] == pytest.approx(0.5)
    assert "missing_prediction_file" in by_name["iliac_artery_left"]["overlap"]["flags"]
    assert by_name["iliac_artery_left"]["distances"]["hausdorff_mm"] is None  # NaN → null, flagged
    assert "heart" not in by_name and any("heart" in note for note in data["table"]["notes"])
    files = runner.invoke(app, ["segmentation", str(tmp_path / "pred" / "aorta.nii.gz"),
                                str(tmp_path / "gt" / "aorta.nii.gz"), "--hd95", "medpy"])
    assert files.exit_code == 0 and "aorta" in files.stdout and "medpy" in files.stdout
    other = Grid(shape=(8, 16, 16), spacing_mm=(1.0, 0.5, 0.5))
    write_nifti(pred, other, tmp_path / "odd.nii.gz")
    mismatch = runner.invoke(app, ["segmentation", str(tmp_path / "odd.nii.gz"), str(tmp_path / "gt" / "aorta.nii.gz")])
    assert isinstance(mismatch.exception, GeometryError)
    mixed = runner.invoke(app, ["segmentation", str(tmp_path / "pred"), str(tmp_path / "gt" / "aorta.nii.gz")])
    assert isinstance(mixed.exception, InputError)


def test_ordinal_command_matches_the_api(tmp_path):
    from vascalc.stats import proportional_odds

    rng = np.random.default_rng(4)
    volume = np.round(rng.gamma(2, 0.05, 120), 4)
    severity = np.digitize(30 * volume + rng.logistic(size=120), [2, 4]) + 1
    path = write_csv(tmp_path / "ord.csv", ["severity", "volume_ml"], zip(severity, volume))
    result = runner.invoke(app, ["ordinal", str(path), "--outcome", "severity", "--predictor", "volume_ml",
                                 "--unit", "mL", "--format", "json"])
    assert result.exit_code == 0, result.output
    coefficient = json.loads(result.stdout)["results"][0]["coefficients"][0]
    expected = proportional_odds(severity, {"volume_ml": volume}).coefficients[0]
    assert coefficient["b"] == pytest.approx(expected.b) and coefficient["unit"] == "mL"
    assert coefficient["b"] > 0 and coefficient["p_value"] < 0.001


def test_raters_command_reproduces_fleiss_1971(tmp_path):
    from stats_data import FLEISS_1971

    names = [f"rater_{i}" for i in range(6)]
    path = write_csv(tmp_path / "raters.csv", names, FLEISS_1971.tolist())
    args = ["raters", str(path), *sum((["--rater", n] for n in names), []), "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    fleiss, randolph = json.loads(result.stdout)["results"]
    assert fleiss["kappa"] == pytest.approx(0.4302445, abs=5e-8)
    assert randolph["kappa"] == pytest.approx(0.4444444, abs=5e-8)
    # declaring a sixth, never-used category changes Randolph's q (chance 1/6), not Fleiss' κ
    more = runner.invoke(app, args + ["--categories", "1,2,3,4,5,6"])
    fleiss6, randolph6 = json.loads(more.stdout)["results"]
    assert fleiss6["kappa"] == pytest.approx(fleiss["kappa"])
    assert randolph6["kappa"] == pytest.approx((0.555556 - 1 / 6) / (5 / 6), abs=1e-6)


def test_raters_with_a_missing_rating(tmp_path):
    rows = [[1, 1, 2], [2, 2, 2], [3, 3, ""], [1, 2, 1], [3, 3, 3]]
    path = write_csv(tmp_path / "gap.csv", ["a", "b", "c"], rows)
    result = runner.invoke(app, ["raters", str(path), "--rater", "a", "--rater", "b", "--rater", "c",
                                 "--categories", "1,2,3", "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "1 subject(s) with a missing rating left out" in result.stdout and "| 4 |" in result.stdout
