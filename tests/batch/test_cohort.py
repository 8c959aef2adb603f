from pathlib import Path

import pandas as pd
import pytest

from vascalc.batch import run_cohort, unique_case_ids, vessels_for_inputs
from vascalc.errors import InputError


def test_case_ids_are_safe_and_unique():
    ids = unique_case_ids([Path("/a/scan 1.nii.gz"), Path("/b/scan 1.nii.gz"), Path("/c/x")],
                          lambda p: p.name.replace(".nii.gz", ""))
    assert ids == ["scan_1", "scan_1-2", "x"]


def test_vessels_pairing_rules(tmp_path):
    inputs = [Path("a.nii.gz"), Path("b.nii.gz")]
    assert vessels_for_inputs(inputs, [], ["a", "b"]) == [None, None]
    assert vessels_for_inputs(inputs, ["segs/{case}_seg.nii.gz"], ["a", "b"]) == [
        Path("segs/a_seg.nii.gz"), Path("segs/b_seg.nii.gz")]
    assert vessels_for_inputs(inputs, ["m.nii.gz"], ["a", "b"]) == [Path("m.nii.gz")] * 2
    with pytest.raises(InputError, match="one per input"):
        vessels_for_inputs(inputs, ["1", "2", "3"], ["a", "b"])
    with pytest.raises(InputError, match="3 --heart paths for 2 inputs"):
        vessels_for_inputs(inputs, ["1", "2", "3"], ["a", "b"], "--heart")


def test_failures_are_recorded_and_the_run_goes_on(tmp_path):
    from vascalc.errors import GeometryError

    def run_case(index, case_id):
        if case_id == "bad":
            raise GeometryError("mask grid differs from the CT")
        if case_id == "bug":
            raise ZeroDivisionError("oops")
        return [{"name": "aorta", "agatston_raw": 10.0 * (index + 1)}]

    outcomes = run_cohort(["good", "bad", "bug", "good2"], run_case, tmp_path / "cohort.csv")
    assert [o.status for o in outcomes] == ["ok", "failed", "failed", "ok"]
    table = pd.read_csv(tmp_path / "cohort.csv")
    assert list(table["case_id"]) == ["good", "bad", "bug", "good2"]
    assert table.loc[1, "error"] == "mask grid differs from the CT"
    assert "ZeroDivisionError" in table.loc[2, "error"]
    assert table.loc[3, "agatston_raw"] == 40.0
