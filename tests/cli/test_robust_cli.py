"""The commands on hostile inputs: batches that must go on, folders that must stay untouched, bugs
that must still end in one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from vascalc.errors import OutputError
from vascalc.imaging import Grid, ScanInfo, Volume, save_labels_nifti
from vascalc.imaging.dicom_writer import write_dicom_series


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """A lateral DRR of the vascular phantom (the model-free pipeline grades it) as a 16-bit PNG."""
    from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph

    xr = project_lateral_radiograph(make_vascular_phantom(3, plaque_rate=2), seed=3)
    path = tmp_path_factory.mktemp("films") / "drr.png"
    Image.fromarray((xr.image * 65535).astype(np.uint16)).save(path)
    return path, xr.pixel_spacing_mm[0]


def test_xray_batch_goes_on_past_bad_films_and_records_why(tmp_path, film):
    from vascalc.cli.xray import app

    good, spacing = film
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "black.png")
    out = tmp_path / "out"
    run = CliRunner().invoke(app, ["score", str(good), str(tmp_path / "black.png"), str(tmp_path / "gone.png"),
                                   "--model", "baseline", "--pixel-spacing", str(spacing), "--no-qc", "-o", str(out)])
    assert run.exit_code == 0, run.output  # some films were scored
    cohort = pd.read_csv(out / "cohort.csv")
    failed = cohort[cohort.status == "failed"].set_index("case_id")["error"]
    assert sorted(failed.index) == ["black", "gone"]
    assert "blank" in failed["black"] and "not found" in failed["gone"]
    scored = json.loads((out / "drr" / "result.json").read_text())
    grades = cohort[(cohort.case_id == "drr") & (cohort.name != "total")]["grade"]
    assert grades.sum() == scored["total"]["aac24"] and len(grades) == 8
    assert sorted(p.name for p in out.iterdir()) == ["cohort.csv", "drr"]  # nothing for the failed films
    # one film that fails: one error line, exit code 2, and no result folder
    single = CliRunner().invoke(app, ["score", str(tmp_path / "black.png"), "--model", "baseline", "-o",
                                      str(tmp_path / "o2")])
    assert single.exit_code == 2 and "blank" in single.output and not (tmp_path / "o2").exists()


def test_output_inside_the_folder_of_a_dicom_file_input_is_refused(tmp_path):
    from vascalc.api import score_ct_cohort

    hu = np.full((3, 16, 16), 40, dtype=np.int16)
    hu[:, :2] = -1000
    grid = Grid(shape=hu.shape, spacing_mm=(3.0, 0.5, 0.5))
    files = write_dicom_series(Volume(hu=hu, grid=grid, info=ScanInfo(kvp=120.0)), tmp_path / "series")
    aorta = np.zeros(hu.shape, np.uint8)
    aorta[:, 4:12, 4:12] = 1
    save_labels_nifti(aorta, grid, tmp_path / "aorta.nii.gz")
    before = sorted(p.name for p in (tmp_path / "series").iterdir())
    # one file of the series stands for its whole folder, which must stay untouched
    with pytest.raises(OutputError, match="inside the input folder"):
        score_ct_cohort([files[0]], tmp_path / "series" / "results", vessels=[str(tmp_path / "aorta.nii.gz")],
                        vessel_names={1: "aorta"}, qc=False)
    assert sorted(p.name for p in (tmp_path / "series").iterdir()) == before
    # the same input with the output outside the series folder is scored
    scored = score_ct_cohort([files[0]], tmp_path / "results", vessels=[str(tmp_path / "aorta.nii.gz")],
                             vessel_names={1: "aorta"}, qc=False)
    assert scored[0].status == "ok" and scored[0].result["total"]["agatston_raw"] == 0.0


def test_an_unexpected_exception_ends_in_one_line_and_exit_1(monkeypatch, capsys, tmp_path):
    import vascalc.api
    import vascalc.cli as cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(vascalc.api, "score_cases", broken)
    monkeypatch.delenv("VASCALC_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["vascalc", "ct", "score", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("internal error: ZeroDivisionError: float division by zero")


@pytest.mark.parametrize("option, fragment", [(["--method", "hu=abc"], "must be a number"),
                                              (["--region", "chest"], "unknown region 'chest'")])
def test_a_bad_option_fails_once_before_any_case_of_a_cohort(monkeypatch, capsys, tmp_path, option, fragment):
    import vascalc.cli as cli

    monkeypatch.setattr(sys, "argv", ["vascalc", "ct", "score", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"),
                                      *option, "-o", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
    assert not (tmp_path / "out").exists()  # no cohort folder with two identical failures
