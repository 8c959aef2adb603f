"""The ``vascalc`` command as a user meets it: one clear line and a non-zero exit for every user error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from vascalc.imaging import Grid, ScanInfo, Volume, save_labels_nifti, save_volume_nifti
from vascalc.imaging.dicom_writer import write_dicom_series


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vascalc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and fragment.lower() in lines[0].lower(), lines[0]


@pytest.fixture()
def tiny_case(tmp_path):
    """A 6×24×24 CT with a 10×10-pixel aorta holding one 450 HU lesion, and its mask, as NIfTI."""
    hu = np.full((6, 24, 24), 40, dtype=np.int16)
    vessels = np.zeros(hu.shape, dtype=np.uint8)
    vessels[:, 7:17, 7:17] = 1
    hu[2, 10:14, 10:14] = 450
    grid = Grid(shape=hu.shape, spacing_mm=(3.0, 0.5, 0.5))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    save_volume_nifti(Volume(hu=hu, grid=grid, info=ScanInfo()), inputs / "ct.nii.gz")
    masks = inputs / "masks"
    masks.mkdir()
    save_labels_nifti(vessels, grid, masks / "aorta.nii.gz")
    save_labels_nifti(np.zeros_like(vessels), grid, masks / "iliac_artery_left.nii.gz")
    return inputs / "ct.nii.gz", masks, Volume(hu=hu, grid=grid, info=ScanInfo(kvp=120.0))


def test_score_writes_a_report_and_leaves_inputs_alone(tiny_case, tmp_path):
    ct, masks, _ = tiny_case
    before = sorted((p.name, p.stat().st_mtime_ns) for p in ct.parent.rglob("*"))
    proc = run_cli("ct", "score", ct, "--vessels", masks, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    aorta = next(s for s in data["structures"] if s["name"] == "aorta")
    assert aorta["agatston_raw"] == pytest.approx(16.0)  # 16 px × 0.25 mm² × weight 4
    iliac = next(s for s in data["structures"] if s["name"] == "iliac_artery_left")
    assert iliac["present"] is False and iliac["calcium_volume_mm3"] == 0.0
    assert sorted((p.name, p.stat().st_mtime_ns) for p in ct.parent.rglob("*")) == before


def test_missing_input_file(tmp_path, tiny_case):
    _, masks, _ = tiny_case
    assert_one_line_error(run_cli("ct", "score", tmp_path / "nope.nii.gz", "--vessels", masks, "-o", tmp_path / "o"),
                          "nope.nii.gz")
    assert not (tmp_path / "o").exists()


def test_unreadable_dicom(tmp_path, tiny_case):
    _, masks, _ = tiny_case
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "IM0001.dcm").write_bytes(b"DICM" + b"\x00" * 300)
    assert_one_line_error(run_cli("ct", "score", folder, "--vessels", masks, "-o", tmp_path / "o"), "dicom")


def test_not_a_ct(tmp_path, tiny_case):
    _, masks, volume = tiny_case
    folder = tmp_path / "mr"
    for path in write_dicom_series(volume, folder):
        dataset = pydicom.dcmread(path)
        dataset.Modality = "MR"
        dataset.save_as(path)
    assert_one_line_error(run_cli("ct", "score", folder, "--vessels", masks, "-o", tmp_path / "o"), "MR")


def test_geometry_mismatch(tmp_path, tiny_case):
    ct, _, _ = tiny_case
    other = tmp_path / "other"
    other.mkdir()
    shifted = Grid(shape=(6, 24, 24), spacing_mm=(3.0, 0.5, 0.5), origin_lps_mm=(40.0, 0.0, 0.0))
    save_labels_nifti(np.ones((6, 24, 24), np.uint8), shifted, other / "aorta.nii.gz")
    assert_one_line_error(run_cli("ct", "score", ct, "--vessels", other, "-o", tmp_path / "o"), "resample")


def test_empty_mask(tmp_path, tiny_case):
    ct, _, volume = tiny_case
    empty = tmp_path / "empty"
    empty.mkdir()
    save_labels_nifti(np.zeros(volume.shape, np.uint8), volume.grid, empty / "aorta.nii.gz")
    assert_one_line_error(run_cli("ct", "score", ct, "--vessels", empty, "-o", tmp_path / "o"), "empty")


def test_output_not_empty(tmp_path, tiny_case):
    ct, masks, _ = tiny_case
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    assert_one_line_error(run_cli("ct", "score", ct, "--vessels", masks, "-o", out), "not empty")
    assert (out / "precious.txt").read_text() == "keep"


def test_output_not_writable(tmp_path, tiny_case):
    ct, masks, _ = tiny_case
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run_cli("ct", "score", ct, "--vessels", masks, "-o", blocker / "out"), "cannot create")


def test_output_inside_input_folder(tmp_path, tiny_case):
    ct, masks, _ = tiny_case
    assert_one_line_error(run_cli("ct", "score", ct, "--vessels", masks, "-o", masks / "results"), "inside the input")


def test_unknown_method(tmp_path, tiny_case):
    ct, masks, _ = tiny_case
    proc = run_cli("ct", "score", ct, "--vessels", masks, "-o", tmp_path / "o", "--method", "magic")
    assert_one_line_error(proc, "magic")


def test_demo_writes_a_real_report(tmp_path):
    proc = run_cli("demo", "-o", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "demo" / "result" / "result.json").read_text())
    truth = json.loads((tmp_path / "demo" / "phantom" / "truth.json").read_text())
    aorta = next(s for s in data["structures"] if s["name"] == "aorta")
    assert aorta["calcium_volume_mm3"] > 0 and truth["structures"]["aorta"]["calcium_volume_mm3"] > 0
    assert (tmp_path / "demo" / "result" / "qc_coronal_mip.png").stat().st_size > 10_000


def test_stats_agreement_through_the_root_command(tmp_path):
    """Bland & Altman 1986 PEFR (SCORING.md E.4): bias of mini-Wright − Wright = 2.117647."""
    wright = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
    mini = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]
    csv = tmp_path / "pefr.csv"
    csv.write_text("wright,mini\n" + "\n".join(f"{w},{m}" for w, m in zip(wright, mini)) + "\n")
    proc = run_cli("stats", "agreement", csv, "--reference", "wright", "--predicted", "mini", "-o", tmp_path / "st")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "st" / "agreement.json").read_text())
    assert json.dumps(data).count("2.1176470588") >= 1
    assert_one_line_error(run_cli("stats", "agreement", csv, "--reference", "nope", "--predicted", "mini",
                                  "-o", tmp_path / "st2"), "nope")
