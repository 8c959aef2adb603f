"""`vascalc stats …` on hostile CSVs: one error line and exit 2, or a result whose undefined statistics
are null with the reason as a flag (SCORING.md §D.4, §D.7, §D.9, §D.10), never NaN or a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vascalc.errors import InputError
from vascalc.stats.kappa import category_counts, multirater_kappa


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, fragment", [("", "is empty"), ("ref,a\n", "has a header but no rows"),
                                            ("ref,a\n1,1\n2,abc\n3,3\n", "not a number ('abc')"),
                                            ("ref,a\n1,2\n", "share 1 row(s) with both values")])
def test_unusable_csv_is_one_error_line(vascalc_cli, tmp_path, text, fragment):
    csv = write(tmp_path, "s.csv", text)
    code, _, err = vascalc_cli("stats", "agreement", str(csv), "-r", "ref", "-p", "a",
                           "-o", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not (tmp_path / "out").exists()


def test_constant_columns_give_null_icc_and_correlations_with_reasons(vascalc_cli, tmp_path):
    csv = write(tmp_path, "c.csv", "ref,a\n3,3\n3,3\n3,3\n3,3\n")
    code, out, err = vascalc_cli("stats", "agreement", str(csv), "-r", "ref", "-p", "a", "-f", "json")
    assert code == 0, err
    method = json.loads(out)["methods"][0]  # strict JSON: a NaN would not parse as null
    assert method["icc_agreement"]["icc"] is None and "constant_data" in method["icc_agreement"]["flags"]
    assert method["spearman"]["r"] is None and "constant_reference" in method["spearman"]["flags"]
    assert method["errors"]["mae"] == 0.0 and method["bland_altman"]["bias"] == 0.0


def test_detection_with_no_negative_reference_reports_auc_and_specificity_undefined(vascalc_cli, tmp_path):
    csv = write(tmp_path, "d.csv", "ref,a\n1,1\n1,1\n1,0\n")
    code, out, err = vascalc_cli("stats", "detection", str(csv), "-r", "ref", "-p", "a", "-f", "json")
    assert code == 0, err
    m = json.loads(out)["methods"][0]
    assert m["auc"]["auc"] is None and m["auc"]["flags"] == ["auc_undefined_reference_has_no_negative_cases"]
    assert m["diagnostic"]["sensitivity"]["estimate"] == pytest.approx(2 / 3)
    assert m["diagnostic"]["specificity"]["estimate"] is None


def test_detection_with_one_negative_gives_the_auc_but_no_delong_ci(vascalc_cli, tmp_path):
    # positives 0.2 and 0.05 against the negative 0.1: one of two pairs ranked right → AUC 0.5
    csv = write(tmp_path, "d.csv", "ref,a\n1,0.2\n1,0.05\n0,0.1\n")
    code, out, err = vascalc_cli("stats", "detection", str(csv), "-r", "ref", "-p", "a",
                             "--threshold", "0.15", "-f", "json")
    assert code == 0, err
    auc = json.loads(out)["methods"][0]["auc"]
    assert auc["auc"] == 0.5 and auc["ci_low"] is None and auc["n_negative"] == 1


def test_raters_agreeing_on_one_category_give_undefined_fleiss_and_defined_randolph(vascalc_cli, tmp_path):
    csv = write(tmp_path, "r.csv", "r1,r2,r3\n1,1,1\n1,1,1\n1,1,1\n")
    code, out, err = vascalc_cli("stats", "raters", str(csv), "--rater", "r1", "--rater", "r2",
                             "--rater", "r3", "--categories", "1,2,3", "-f", "json")
    assert code == 0, err
    fleiss, randolph = json.loads(out)["results"]
    assert fleiss["kappa"] is None and fleiss["flags"] == ["chance_agreement_is_1"]
    # P̄ = 1, chance 1/q = 1/3 → κ_free = (1 − 1/3)/(1 − 1/3) = 1 (§D.7.3)
    assert randolph["kappa"] == 1.0 and randolph["p_expected"] == pytest.approx(1 / 3)
    # with only the category used (q = 1), both are undefined rather than an error
    counts, _ = category_counts(np.array([["1", "1"], ["1", "1"]], dtype=object))
    assert np.isnan(multirater_kappa(counts, method="randolph", n_bootstrap=0).kappa)


def test_a_rater_column_named_twice_is_refused(vascalc_cli, tmp_path):
    csv = write(tmp_path, "r.csv", "r1,r2\n1,2\n2,2\n3,3\n")
    code, _, err = vascalc_cli("stats", "raters", str(csv), "--rater", "r1", "--rater", "r1")
    assert code == 2 and len(err) == 1 and "named once" in err[0]


def test_ordinal_regression_under_complete_separation_reports_undefined_estimates():
    from vascalc.stats.ordinal import proportional_odds

    result = proportional_odds([1, 2, 3, 1, 2, 3], {"x": [1, 2, 3, 1.5, 2.5, 3.5]})
    coef = result.coefficients[0]
    assert "complete_separation_estimates_undefined" in result.flags
    assert np.isnan(coef.b) and np.isnan(coef.odds_ratio) and np.isnan(coef.p_value)
    assert result.to_dict()["coefficients"][0]["b"] is None
    # overlapping data keep their finite estimate
    fine = proportional_odds([1, 2, 1, 2, 1, 2], {"x": [1, 2, 3, 1.5, 2.5, 0.5]})
    assert np.isfinite(fine.coefficients[0].b) and not fine.flags


def test_multirater_kappa_without_subjects_names_the_count():
    with pytest.raises(InputError, match="at least 2 complete cases, got 0"):
        multirater_kappa(np.zeros((0, 0)))


def test_a_method_column_without_values_is_named(vascalc_cli, tmp_path):
    csv = write(tmp_path, "n.csv", "ref,a,b\n1,1.1,\n2,2.2,\n3,2.9,5\n")
    code, _, err = vascalc_cli("stats", "agreement", str(csv), "-r", "ref", "-p", "a", "-p", "b")
    assert code == 2 and len(err) == 1 and "columns 'ref' and 'b' share 1 row(s)" in err[0]


@pytest.mark.parametrize("multiplier", ["-1", "0", "nan"])
def test_impossible_limits_of_agreement_multiplier_is_refused(vascalc_cli, tmp_path, multiplier):
    csv = write(tmp_path, "s.csv", "ref,a\n1,1.1\n2,2.2\n3,2.9\n4,4.1\n")
    code, _, err = vascalc_cli("stats", "agreement", str(csv), "-r", "ref", "-p", "a",
                           "--loa-multiplier", multiplier)
    assert code == 2 and "multiplier must be a positive number" in err[0]


def test_continuous_columns_given_as_raters_are_refused_and_counts_are_exact(vascalc_cli, tmp_path):
    rng = np.random.default_rng(0)
    rows = "\n".join(f"{a:.6f},{b:.6f}" for a, b in rng.random((200, 2)))
    csv = write(tmp_path, "r.csv", "r1,r2\n" + rows + "\n")
    code, _, err = vascalc_cli("stats", "raters", str(csv), "--rater", "r1", "--rater", "r2")
    assert code == 2 and "the ratings hold 400 different values" in err[0]
    counts, cats = category_counts(np.array([["a", "b", "a"], ["c", "c", "c"], ["b", "a", "c"]], dtype=object))
    assert cats == ("a", "b", "c") and counts.tolist() == [[2, 1, 0], [0, 0, 3], [1, 1, 1]]


@pytest.mark.parametrize("args, fragment", [
    (["raters", "--rater", "r1", "--rater", "r2", "--seed", "-1"], "bootstrap seed must be 0 or a positive integer"),
    (["detection", "-r", "r1", "-p", "r2", "--threshold", "nan"], "threshold must be a finite number"),
])
def test_impossible_seed_and_threshold_are_refused(vascalc_cli, tmp_path, args, fragment):
    csv = write(tmp_path, "r.csv", "r1,r2\n1,0.2\n0,0.4\n0,0.1\n1,0.9\n")
    code, _, err = vascalc_cli("stats", args[0], str(csv), *args[1:])
    assert code == 2 and len(err) == 1 and fragment in err[0], err


def test_a_probability_map_is_not_read_as_a_mask(vascalc_cli, tmp_path):
    import nibabel as nib

    mask = np.zeros((6, 6, 4), dtype=np.float32)
    mask[1:4, 1:4, 1:3] = 1.0
    prob = mask * 0.5
    prob[0, 0, 0] = 0.01  # a faint voxel "non-zero = foreground" would have counted
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "ref.nii.gz")
    nib.save(nib.Nifti1Image(prob, np.eye(4)), tmp_path / "prob.nii.gz")
    code, _, err = vascalc_cli("stats", "segmentation", str(tmp_path / "prob.nii.gz"), str(tmp_path / "ref.nii.gz"))
    assert code == 2 and len(err) == 1 and "not whole numbers (a probability map?)" in err[0], err
    code, out, err = vascalc_cli("stats", "segmentation", str(tmp_path / "ref.nii.gz"), str(tmp_path / "ref.nii.gz"),
                                 "-f", "json")
    assert code == 0, err
    assert json.loads(out)["structures"][0]["overlap"]["dice"] == 1.0
