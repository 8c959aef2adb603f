import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from vascalc.cli.phantom import app
from vascalc.errors import InputError, OutputError
from vascalc.phantoms import make_insert_phantom, write_phantom


def test_write_phantom_files_and_geometry(tmp_path, small_vascular):
    out = tmp_path / "ph"
    write_phantom(small_vascular, out)
    for name in ("ct.nii.gz", "labels.nii.gz", "labels.json", "vessels.nii.gz", "landmarks.nii.gz",
                 "calcium_fraction.nii.gz", "plaque_ids.nii.gz", "truth.json", "masks/aorta.nii.gz",
                 "masks/iliac_artery_left.nii.gz", "masks/vertebrae_L1.nii.gz"):
        assert (out / name).is_file(), name
    img = sitk.ReadImage(str(out / "ct.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(img), small_vascular.volume.hu)
    np.testing.assert_allclose(img.GetOrigin(), small_vascular.volume.grid.origin_lps_mm, atol=1e-3)
    np.testing.assert_allclose(img.GetSpacing(), small_vascular.volume.grid.spacing_mm[::-1])
    iliac = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks/iliac_artery_left.nii.gz"))).astype(bool)
    assert np.array_equal(iliac, small_vascular.totalseg_labels().mask("iliac_artery_left"))
    frac = np.asarray(nib.load(out / "calcium_fraction.nii.gz").dataobj).transpose(2, 1, 0)
    assert np.array_equal(frac, small_vascular.calcium_fraction)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["total"]["calcium_volume_mm3"] == pytest.approx(small_vascular.truth["total"]["calcium_volume_mm3"])
    table = json.loads((out / "vessels.json").read_text())
    assert "aorta" in table["labels"].values() and "vertebrae_L1" not in table["labels"].values()
    with pytest.raises(OutputError):
        write_phantom(small_vascular, out)


def test_write_with_dicom(tmp_path):
    ph = make_insert_phantom(shape=(4, 64, 64), spacing_mm=(3.0, 5.0, 5.0))
    write_phantom(ph, tmp_path / "o", dicom=True, masks=False)
    assert len(list((tmp_path / "o" / "dicom").glob("*.dcm"))) == 4
    assert not (tmp_path / "o" / "masks").exists()


def test_cli_ct_and_xray(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["ct", "-o", str(tmp_path / "v"), "--seed", "3", "--shape", "40,64,64",
                              "--spacing", "3,5,5", "--contrast", "--slice-thickness", "5", "--no-masks"])
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "v" / "truth.json").read_text())
    assert truth["parameters"]["lumen_hu"] == 350.0 and truth["parameters"]["physics"]["slice_thickness_mm"] == 5.0
    res = runner.invoke(app, ["ct", "-o", str(tmp_path / "v")])
    assert isinstance(res.exception, OutputError)
    res = runner.invoke(app, ["ct", "-o", str(tmp_path / "bad"), "--spacing", "1,2"])
    assert isinstance(res.exception, InputError)
    res = runner.invoke(app, ["ct", "-o", str(tmp_path / "i"), "--kind", "inserts", "--shape", "6,80,80",
                              "--spacing", "3,4,4", "--dicom"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "i" / "dicom").is_dir()
    res = runner.invoke(app, ["xray", "-o", str(tmp_path / "x"), "--pixel-spacing", "1.0", "--seed", "2"])
    assert res.exit_code == 0, res.output
    xt = json.loads((tmp_path / "x" / "truth.json").read_text())
    assert set(xt["segment_grades"]) >= {"L1_anterior", "L4_posterior"}
    assert xt["aac24"] == sum(xt["segment_grades"].values())
    assert (tmp_path / "x" / "radiograph.png").is_file()


def test_chest_phantom_writes_its_distractor_ids(tmp_path):
    from vascalc.phantoms import make_chest_phantom

    ph = make_chest_phantom(3, shape=(40, 160, 160), spacing_mm=(2.5, 1.5, 1.5), distractors="all", supersample=2)
    assert ph.distractor_ids is not None and ph.distractor_ids.any()
    write_phantom(ph, tmp_path / "chest", masks=False)
    ids = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "chest" / "distractor_ids.nii.gz")))
    assert np.array_equal(ids, ph.distractor_ids)
    truth = json.loads((tmp_path / "chest" / "truth.json").read_text())
    assert set(np.unique(ids[ids > 0]).tolist()) <= {d["id"] for d in truth["distractors"]}
