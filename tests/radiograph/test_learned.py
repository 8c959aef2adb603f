"""Learned grading wiring: confidences and Kauppila results from grades by hand, labels.csv checks,
``vascalc train xray --data`` on a small folder written here, ``vascalc xray score --model``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vascalc.errors import InputError
from vascalc.learn.aac_data import read_labels
from vascalc.phantoms.lateral_spine import ChainParams, make_lateral_spine
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.kauppila import SEGMENTS, spine_geometry
from vascalc.radiograph.learned import grade_probabilities_to_confidence, kauppila_from_grades


def _straight(names=("L1", "L2", "L3", "L4")):
    out = []
    for i, name in enumerate(names):
        top, bottom = 20.0 + 35.0 * i, 45.0 + 35.0 * i
        out.append(VertebraLandmark(name=name, corners_px=((top, 60.0), (top, 90.0), (bottom, 90.0), (bottom, 60.0)),
                                    centre_px=((top + bottom) / 2, 75.0)))
    return tuple(out)


def test_confidence_is_the_probability_of_the_predicted_grade():
    prob = np.array([[0.9, 0.6, 0.2], [0.3, 0.1, 0.05], [0.99, 0.98, 0.7]])
    conf = grade_probabilities_to_confidence(prob, np.array([2, 0, 3]))
    assert np.allclose(conf, [0.6 - 0.2, 1 - 0.3, 0.7])


def test_kauppila_result_from_grades_by_hand():
    """Levels 35 mm (bodies 25 mm, discs 10 mm). L1 ant 1, L2 post 2, L3 post 3 → AAC-24 6 (high),
    3 levels affected; AAC-8 lengths from mid-band fractions: posterior (1/2 + 5/6)·35 = 46.7 mm
    = 1.87 body heights → 2; anterior 35/6 = 5.8 mm → 1; AAC-8 3."""
    geometry = spine_geometry(_straight(), 1.0)
    grades = dict.fromkeys(SEGMENTS, 0) | {"L1_anterior": 1, "L2_posterior": 2, "L3_posterior": 3}
    result = kauppila_from_grades(geometry, grades, dict.fromkeys(SEGMENTS, 0.8))
    assert result.aac24 == 6 and result.severity == "high" and result.affected_levels == 3
    assert result.affected_segments == 3 and result.aac8_posterior == 2 and result.aac8_anterior == 1
    assert result.calcified_length_posterior_mm == pytest.approx(35 * (0.5 + 5 / 6), abs=1e-3)
    assert all(s.fraction is None for s in result.segments) and result.warnings
    with pytest.raises(InputError, match="0–3"):
        kauppila_from_grades(geometry, grades | {"L4_anterior": 4}, dict.fromkeys(SEGMENTS, 0.8))


def _write_folder(folder, n=6, seed0=0):
    """``n`` generated films (1-mm pixels) as 16-bit PNGs + labels.csv with grades and landmarks."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ["image", *SEGMENTS, "pixel_spacing_mm", *[f"{v}_corners" for v in ("T12", "L1", "L2", "L3", "L4", "L5")]]
    rows = [",".join(header)]
    for i in range(n):
        film = make_lateral_spine(seed0 + i, chain=ChainParams(pixel_spacing_mm=1.0), burden=[0.0, 1.5, 3.0][i % 3])
        Image.fromarray((film.image * 65535).astype(np.uint16)).save(folder / f"film{i}.png")
        corners = [" ".join(f"{r:.2f} {c:.2f}" for r, c in v.corners_px) for v in film.vertebrae]
        rows.append(",".join([f"film{i}.png", *[str(film.segment_grades[s]) for s in SEGMENTS], "1.0", *corners]))
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _rewrite(folder, transform):
    lines = (folder / "labels.csv").read_text().splitlines()
    (folder / "labels.csv").write_text("\n".join(transform(lines)) + "\n")


def test_labels_csv_is_checked_row_by_row(tmp_path):
    folder = _write_folder(tmp_path / "d", n=2)
    rows = read_labels(folder)
    assert len(rows) == 2 and rows[0]["pixel_spacing_mm"] == 1.0 and len(rows[0]["vertebrae"]) == 6
    assert rows[0]["aac24"] == sum(rows[0]["grades"].values())
    original = (folder / "labels.csv").read_text()

    def refused(transform, match):
        (folder / "labels.csv").write_text(original)
        _rewrite(folder, transform)
        with pytest.raises(InputError, match=match):
            read_labels(folder)

    refused(lambda ls: [ls[0].replace("image", "file")] + ls[1:], "missing column 'image'")
    refused(lambda ls: [ls[0].replace("L3_posterior", "L3_post")] + ls[1:], "missing segment grade column")
    refused(lambda ls: [ls[0], ls[1].replace("film0.png", "nothere.png")], "row 2: image 'nothere.png' not found")
    refused(lambda ls: [ls[0], ",".join(["film0.png", "4", *ls[1].split(",")[2:]])], "row 2, column L1_anterior.*out of range")
    refused(lambda ls: [ls[0], ",".join(["film0.png", "x", *ls[1].split(",")[2:]])], "not a number")
    (folder / "labels.csv").write_text("image,aac24\nfilm0.png,25\n")
    with pytest.raises(InputError, match="aac24.*out of range"):
        read_labels(folder)
    (folder / "labels.csv").write_text("image,notes\nfilm0.png,x\n")
    with pytest.raises(InputError, match="missing label columns"):
        read_labels(folder)
    (folder / "labels.csv").unlink()
    with pytest.raises(InputError, match="no labels.csv"):
        read_labels(folder)


def test_train_xray_on_a_folder_then_score_with_the_model(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.cli.train import app as train_app
    from vascalc.cli.xray import app as xray_app
    from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph

    data = _write_folder(tmp_path / "films", n=6)
    model = tmp_path / "model"
    run = CliRunner().invoke(train_app, ["xray", "--data", str(data), "-o", str(model), "--folds", "2",
                                         "--epochs", "2", "--width", "4", "--seed", "1"])
    assert run.exit_code == 0, run.output
    meta = json.loads((model / "model.json").read_text())
    assert meta["n_graders"] == 2 and meta["n_regressors"] == 2 and meta["n_train"] == 6
    report = json.loads((model / "cv_report.json").read_text())
    assert report["cross_validation"]["learned_grader"]["n"] == 6 and (model / "cv_report.md").is_file()
    # neither or both sources, and an existing model folder, are refused in one line
    both = CliRunner().invoke(train_app, ["xray", "--data", str(data), "--synthetic", "5", "-o", str(tmp_path / "m2")])
    assert both.exit_code != 0 and "exactly one" in both.output
    again = CliRunner().invoke(train_app, ["xray", "--data", str(data), "-o", str(model)])
    assert again.exit_code != 0 and "not an empty folder" in again.output
    # score a phantom DRR (the model-free localiser finds its L1–L4) with the trained model
    xr = project_lateral_radiograph(make_vascular_phantom(3, plaque_rate=2), seed=3)
    Image.fromarray((xr.image * 65535).astype(np.uint16)).save(tmp_path / "drr.png")
    out = tmp_path / "out"
    scored = CliRunner().invoke(xray_app, ["score", str(tmp_path / "drr.png"), "--pixel-spacing", "3.2",
                                           "--model", str(model), "-o", str(out)])
    assert scored.exit_code == 0, scored.output
    result = json.loads((out / "result.json").read_text())
    assert result["method"]["model_id"].startswith("learned:model") and result["method"]["grader"] == "coral_ensemble"
    grades = [s["grade"] for s in result["structures"]]
    assert len(grades) == 8 and result["total"]["aac24"] == sum(grades)
    assert all(0.0 <= s["confidence"] <= 1.0 for s in result["structures"])
    assert set(result["method"]["segment_probabilities_gt"]) == set(SEGMENTS)
    assert (out / "qc.png").is_file()
    bad = CliRunner().invoke(xray_app, ["score", str(tmp_path / "drr.png"), "--model", str(tmp_path), "-o",
                                        str(tmp_path / "o2")])
    assert bad.exit_code != 0 and "not a model folder" in bad.output


def test_without_torch_the_baseline_grades_and_says_so(tmp_path, monkeypatch):
    import vascalc.learn._deps as deps
    from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph
    from vascalc.radiograph.learned import score_radiograph_learned

    xr = project_lateral_radiograph(make_vascular_phantom(3, plaque_rate=2), seed=3)
    Image.fromarray((xr.image * 65535).astype(np.uint16)).save(tmp_path / "drr.png")
    monkeypatch.setattr(deps, "learn_available", lambda: False)
    result = score_radiograph_learned(tmp_path / "drr.png", pixel_spacing_mm=3.2)
    assert result.method["grader"] == "wall_profile_baseline"
    assert "learned_model_unavailable" in result.method and any("not installed" in w for w in result.warnings)


def test_totals_only_folder_trains_the_regressor_and_scores_with_it(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.learn.aac import AacConfig
    from vascalc.learn.aac_data import train_from_folder
    from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph
    from vascalc.radiograph.learned import score_radiograph_learned

    data = _write_folder(tmp_path / "films", n=4)
    # keep image, aac24 (the sum of the grades), spacing and landmarks: totals only
    lines = (data / "labels.csv").read_text().splitlines()
    head = lines[0].split(",")
    keep = [0, *range(9, len(head))]
    rows = [",".join(["image", "aac24", *[head[i] for i in keep[1:]]])]
    for line in lines[1:]:
        cells = line.split(",")
        rows.append(",".join([cells[0], str(sum(int(c) for c in cells[1:9])), *[cells[i] for i in keep[1:]]]))
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    report = train_from_folder(data, tmp_path / "m", AacConfig(n_folds=2, epochs=1, width=4, batch_size=4), seed=0)
    assert report["labels"].startswith("AAC-24 totals") and set(report["cross_validation"]) == {"regressor"}
    xr = project_lateral_radiograph(make_vascular_phantom(3, plaque_rate=2), seed=3)
    Image.fromarray((xr.image * 65535).astype(np.uint16)).save(tmp_path / "drr.png")
    result = score_radiograph_learned(tmp_path / "drr.png", model_dir=tmp_path / "m", pixel_spacing_mm=3.2)
    assert 0.0 <= result.method["regressor_aac24"] <= 24.0 and result.method["grader"] == "wall_profile_baseline"
    assert any("totals only" in w for w in result.warnings)


def test_bundled_model_scores_a_generated_film_end_to_end(tmp_path):
    """The default ``xray score`` path: bundled learned localiser + grader on a held-out film
    (seed 10⁶ + 777, never used in training) written as a 16-bit PNG, facing right."""
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.cli.xray import app as xray_app
    from vascalc.learn.aac_localiser import corner_error_mm
    from vascalc.phantoms.types import VertebraLandmark as VL

    film = make_lateral_spine(1_000_777, chain=ChainParams(pixel_spacing_mm=0.5, facing="right"), burden=1.5)
    Image.fromarray((film.image * 65535).astype(np.uint16)).save(tmp_path / "film.png")
    run = CliRunner().invoke(xray_app, ["score", str(tmp_path / "film.png"), "--pixel-spacing", "0.5",
                                        "-o", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["method"]["model_id"].startswith("learned:aac_demo")
    # since round 16c the bundled localiser runs its learned local corner stage after the edge refinement
    assert result["method"]["localiser"] == "learned_corner_heatmaps_local_stage"
    # the bundled calibration (model.json) is the decision rule actually applied to every segment
    from vascalc.radiograph.learned import BUNDLED_MODEL

    calibration = json.loads((BUNDLED_MODEL / "model.json").read_text()).get("calibration") or {}
    tau = calibration.get("thresholds", [0.5, 0.5, 0.5])  # no calibration: CORAL's plain 0.5 rule
    assert result["method"]["grade_thresholds"] == tau
    prob = result["method"]["segment_probabilities_gt"]
    assert [s["grade"] for s in result["structures"]] == [int((np.array(prob[s["name"]]) > tau).sum())
                                                          for s in result["structures"]]
    assert result["input"]["geometry"]["facing"] == "right"
    found = [VL(name, tuple(map(tuple, v["corners_px"])), tuple(v["centre_px"]))
             for name, v in result["landmarks"]["vertebrae"].items()]
    assert corner_error_mm(film.vertebrae, found, (0.5, 0.5)) < 8.0
    # one film: within the held-out 95 % limits of agreement (≈ ±5, docs/radiograph.md), not an accuracy claim
    assert abs(result["total"]["aac24"] - film.aac24) <= 5


def test_unknown_pixel_spacing_is_warned_once():
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from vascalc.imaging.radiograph import radiograph_from_array
    from vascalc.radiograph.learned import score_radiograph_learned

    film = make_lateral_spine(1_000_778, chain=ChainParams(pixel_spacing_mm=0.5), burden=1.0)
    result = score_radiograph_learned(radiograph_from_array(film.image))  # no spacing given
    assert sum(w.startswith("pixel spacing unknown") for w in result.warnings) == 1
