"""`vascalc bench …` with bad cohorts, seeds and methods: one error line before any work or folder."""

from __future__ import annotations


import pytest

from vascalc.bench.accuracy import parse_floats
from vascalc.errors import InputError


@pytest.mark.parametrize("args, fragment", [
    (["accuracy", "--seed", "-1"], "--seed must be 0 or a positive integer, got -1"),
    (["accuracy", "--methods", "agatston,agatston"], "names a policy twice"),
    (["accuracy", "--methods", ","], "--methods is empty"),
    (["accuracy", "--methods", "bogus"], "unknown method 'bogus'"),
    (["accuracy", "--noise", "inf"], "--noise must be positive finite numbers"),
    (["segmentation", "--seeds", "abc"], "--seeds must be comma-separated whole numbers"),
    (["segmentation", "--seeds", "0,-1"], "--seeds must be whole numbers ≥ 0"),
    (["coronary", "--cases", "1", "--model", "missing.json"], "coronary lesion model not found"),
])
def test_bad_bench_options_fail_before_any_output(vascalc_cli, tmp_path, args, fragment):
    out = tmp_path / "bench"
    code, _, err = vascalc_cli("bench", args[0], "-o", str(out), *args[1:])
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not out.exists()


def test_parse_floats_keeps_positive_finite_values_only():
    assert parse_floats("1, 2.5,,3", "noise") == (1.0, 2.5, 3.0)
    for text in ("0", "-1", "nan", "1,inf", ""):
        with pytest.raises(InputError, match="positive finite numbers"):
            parse_floats(text, "noise")
