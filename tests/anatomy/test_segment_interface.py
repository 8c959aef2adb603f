"""``anatomy.segment``: one interface to the backends, and the CT job on a raw CT without masks."""

from __future__ import annotations

import numpy as np
import pytest

import vascalc
from vascalc.anatomy.segment import merge_labelmaps, segment
from vascalc.bench.segmentation import compare
from vascalc.errors import InputError
from vascalc.imaging import Grid, LabelMap, ScanInfo, Volume, load_labelmap, load_volume


@pytest.fixture(scope="module")
def real_case(shared_data):
    folder = shared_data / "ct" / "totalseg_example"
    volume = load_volume(folder / "example_ct.nii.gz")
    reference = load_labelmap(folder / "example_seg_fast_force_split.nii.gz", volume.grid)
    return volume, reference


def test_builtin_backend_on_the_real_scan(real_case):
    volume, reference = real_case
    labels = segment(volume, backend="builtin")
    rows = {r.structure: r for r in compare("real", labels, reference, 0.0)}
    assert rows["aorta"].dice >= 0.88  # measured 0.914
    for level in ("L1", "L2", "L3", "L4", "L5"):
        assert rows[f"vertebrae_{level}"].level_correct, level
    vessel_ids = [i for i, n in labels.names.items() if n in ("aorta", "iliac_artery_left", "iliac_artery_right")]
    bone_ids = [i for i, n in labels.names.items() if n.startswith(("vertebrae", "hip", "femur_", "sacrum"))]
    assert vessel_ids and bone_ids
    assert not np.any(np.isin(labels.labels, vessel_ids) & np.isin(labels.labels, bone_ids))


def test_raw_ct_is_scored_without_counting_bone(real_case):
    volume, reference = real_case
    result = vascalc.score_ct(volume, segmenter="builtin")
    assert result.vessel_source["kind"] == "segmenter"
    lesions = result.calcium.lesion_labels > 0
    assert lesions.any()  # the L3–L4 aortic plaques of the sample
    bone_names = [n for n in reference.names.values()
                  if n.startswith(("vertebrae", "hip_", "femur_", "sacrum", "rib_")) or n == "costal_cartilages"]
    reference_bone = np.isin(reference.labels, [i for i, n in reference.names.items() if n in bone_names])
    assert not np.any(lesions & reference_bone)
    kidneys = np.isin(reference.labels, [i for i, n in reference.names.items() if n.startswith("kidney")])
    assert not np.any(lesions & kidneys)  # the renal stones stay out


def test_unknown_backend_is_refused():
    grid = Grid(shape=(2, 4, 4), spacing_mm=(1.0, 1.0, 1.0))
    volume = Volume(hu=np.zeros((2, 4, 4), np.int16), grid=grid, info=ScanInfo())
    with pytest.raises(InputError, match="unknown segmenter"):
        segment(volume, backend="magic")
    with pytest.raises(InputError, match="model folder not found"):
        segment(volume, backend="model:/nonexistent/model")


def test_merge_renumbers_and_later_parts_win():
    grid = Grid(shape=(1, 2, 3), spacing_mm=(1.0, 1.0, 1.0))
    volume = Volume(hu=np.zeros(grid.shape, np.int16), grid=grid, info=ScanInfo())
    bones = LabelMap(labels=np.array([[[5, 5, 0], [0, 0, 0]]], np.uint8), grid=grid, names={5: "vertebrae_L1"})
    vessels = LabelMap(labels=np.array([[[0, 2, 2], [0, 0, 0]]], np.uint8), grid=grid, names={2: "aorta"})
    merged = merge_labelmaps(volume, [bones, vessels])
    assert merged.names == {1: "vertebrae_L1", 2: "aorta"}
    np.testing.assert_array_equal(merged.labels, [[[1, 2, 2], [0, 0, 0]]])


def test_compare_gives_dice_hd95_and_levels():
    grid = Grid(shape=(4, 10, 10), spacing_mm=(2.0, 1.0, 1.0))
    reference = np.zeros(grid.shape, np.uint8)
    reference[:, 2:6, 2:6] = 1
    reference[1:3, 7:9, 7:9] = 2
    predicted = reference.copy()
    predicted[:, 2:6, 5] = 0  # a quarter of the aorta missing: Dice = 2·48/(64+48) = 0.857
    names = {1: "aorta", 2: "vertebrae_L1"}
    rows = {r.structure: r for r in compare("c", LabelMap(predicted, grid, names), LabelMap(reference, grid, names), 1.5)}
    assert rows["aorta"].dice == pytest.approx(96 / 112)
    assert rows["aorta"].hd95_mm == pytest.approx(1.0)
    assert rows["vertebrae_L1"].dice == 1.0 and rows["vertebrae_L1"].level_correct is True
    assert rows["aorta"].runtime_s == 1.5
    assert rows["aorta"].uncertain_slices == 0 and rows["aorta"].dice_outside_uncertain == rows["aorta"].dice


def test_compare_gives_the_dice_outside_slices_marked_uncertain():
    """A segmenter that leaves 1 of 4 slices undrawn and marks it uncertain (metal streaks): Dice over all
    slices 2·48/(64+48), over the 3 others 1.0; the summary lists the row in its own table."""
    from vascalc.bench.segmentation import summary_markdown

    grid = Grid(shape=(4, 10, 10), spacing_mm=(2.0, 1.0, 1.0))
    reference = np.zeros(grid.shape, np.uint8)
    reference[:, 2:6, 2:6] = 1
    predicted = reference.copy()
    predicted[2] = 0
    names = {1: "aorta"}
    rows = compare("c", LabelMap(predicted, grid, names, uncertain_slices={"aorta": (2,)}),
                   LabelMap(reference, grid, names), 0.0)
    assert rows[0].dice == pytest.approx(96 / 112)
    assert rows[0].uncertain_slices == 1 and rows[0].dice_outside_uncertain == pytest.approx(1.0)
    assert "| c | aorta | 1 | 0.857 | 1.000 |" in summary_markdown(rows)
    whole = compare("c", LabelMap(np.zeros_like(reference), grid, names, uncertain_slices={"aorta": (0, 1, 2, 3)}),
                    LabelMap(reference, grid, names), 0.0)[0]
    assert whole.dice == 0.0 and np.isnan(whole.dice_outside_uncertain)  # nothing left to compare on


def test_bench_segmentation_command_on_the_real_scans(shared_data, tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from vascalc.cli.bench import app

    out = tmp_path / "bench"
    run = CliRunner().invoke(app, ["segmentation", "-o", str(out), "--no-phantoms", "--real-data", str(shared_data)])
    assert run.exit_code == 0, run.output
    table = pd.read_csv(out / "segmentation.csv")
    aorta = table[(table["case"] == "totalseg_example") & (table["structure"] == "aorta")]
    assert aorta["dice"].item() >= 0.88
    levels = table[table["structure"].str.startswith("vertebrae_L") & (table["case"] == "totalseg_example")]
    assert levels["level_correct"].all()
    assert "mean Dice" in (out / "segmentation.md").read_text()
