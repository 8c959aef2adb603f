"""`vascalc phantom …` and `vascalc demo` with impossible parameters: one error line, exit 2, no folder."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("args, fragment", [
    (["--noise", "nan", "--shape", "4,8,8"], "--noise must be a finite number"),
    (["--lumen-hu", "inf", "--shape", "4,8,8"], "--lumen-hu must be a finite number"),
    (["--slice-thickness", "0", "--shape", "4,8,8"], "slice thickness must be positive"),
    (["--spacing", "0,3,3", "--shape", "4,8,8"], "--spacing must be three positive numbers"),
    (["--seed", "-1", "--shape", "4,8,8"], "--seed must be 0 or a positive integer"),
    (["--shape", "1,1,1", "--spacing", "3,3,3"], "grid holds no aorta; the grid covers only 3×3×3 mm"),
    (["--kind", "chest", "--shape", "4,16,16"], "chest phantom's grid holds no heart"),
    (["--kind", "inserts", "--shape", "2,16,16"], "the calcium of insert_200mg_1mm (9 structure(s)) lies outside the grid"),
])
def test_impossible_ct_phantom_is_one_error_and_no_folder(vascalc_cli, tmp_path, args, fragment):
    code, _, err = vascalc_cli("phantom", "ct", "-o", str(tmp_path / "p"), *args)
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not (tmp_path / "p").exists()


def test_a_small_grid_that_holds_the_aorta_is_written_with_consistent_truth(vascalc_cli, tmp_path):
    code, _, err = vascalc_cli("phantom", "ct", "-o", str(tmp_path / "p"), "--shape", "20,48,48",
                        "--spacing", "3,3,3", "--no-masks")
    assert code == 0, err
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    for rec in truth["structures"].values():  # every counted plaque lies in the image
        assert (rec["calcium_volume_mm3"] > 0) == (rec["calcium_volume_voxelised_mm3"] > 0)
    code, _, err = vascalc_cli("phantom", "ct", "-o", str(tmp_path / "p"), "--shape", "20,48,48")
    assert code == 2 and "is not empty" in err[0]  # no silent overwrite


@pytest.mark.parametrize("args, fragment", [(["--pixel-spacing", "0"], "--pixel-spacing and --photons must be positive"),
                                            (["--photons", "nan"], "--photons must be a finite number"),
                                            (["--blur-fwhm", "-1"], "--blur-fwhm not negative")])
def test_impossible_radiograph_phantom_is_refused(vascalc_cli, tmp_path, args, fragment):
    code, _, err = vascalc_cli("phantom", "xray", "-o", str(tmp_path / "x"), *args)
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "x").exists()


def test_demo_with_a_bad_method_leaves_no_folder_and_a_second_demo_does_not_overwrite(vascalc_cli, tmp_path):
    out = tmp_path / "demo"
    code, _, err = vascalc_cli("demo", "-o", str(out), "--method", "bogus")
    assert code == 2 and "unknown method 'bogus'" in err[0] and not out.exists()
    code, _, err = vascalc_cli("demo", "-o", str(out))
    assert code == 0, err
    stamp = (out / "result" / "result.json").stat().st_mtime_ns
    code, _, err = vascalc_cli("demo", "-o", str(out))
    assert code == 2 and len(err) == 1 and "is not empty" in err[0]
    assert (out / "result" / "result.json").stat().st_mtime_ns == stamp
