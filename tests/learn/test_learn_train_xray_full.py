"""``vascalc train xray --localiser``: the whole AAC model (grader + regressor, coarse localiser, local
corner stage) in one command, in order (``--jobs 1``) or in two worker processes (``--jobs 2``) with the
same weights; ``xray score`` then uses the learned localiser with its stage; clear one-line errors.

The demo recipe's sizes are replaced by tiny ones through the API (``LocaliserRecipe``), never the CLI:
coarse localiser on a 48-px canvas at 8 mm/px, ONE network over-trained on 2 films so that it places
the bodies of its own first training film (seed 5000 for ``--seed 0``) — the film scored below."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("monai")

from vascalc.cli.train import app as train_app  # noqa: E402
from vascalc.cli.xray import app as xray_app  # noqa: E402
from vascalc.learn import aac_recipe  # noqa: E402
from vascalc.learn.aac_local import LocalStageConfig  # noqa: E402
from vascalc.learn.aac_localiser import LocaliserConfig, load_localiser  # noqa: E402
from vascalc.phantoms.lateral_spine import ChainParams, make_lateral_spine  # noqa: E402
from vascalc.radiograph.kauppila import SEGMENTS  # noqa: E402

TINY = aac_recipe.LocaliserRecipe(
    n_films=2, config=LocaliserConfig(mm_per_px=8.0, canvas_px=48, epochs=300, batch_size=2, n_folds=1),
    n_local_films=10, local_config=LocalStageConfig(mm_per_px=2.5, patch_px=32, channels=(8, 16, 32), epochs=20,
                                                    batch_size=8))
GRADER = ["--synthetic", "6", "--folds", "2", "--epochs", "1", "--width", "4", "--seed", "0"]
EXPECTED = {"model.json", "cv_report.json", "cv_report.md", "grader_fold0.pt", "grader_fold1.pt", "regressor_fold0.pt",
            "regressor_fold1.pt", "localiser.json", "localiser_fold0.pt", "localiser_report.json",
            "localiser_local_fold0.pt", aac_recipe.RECIPE_FILE}


def _without_timings(value):
    """JSON minus what legitimately differs between two runs: wall / CPU seconds and the worker count."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not k.endswith("_s") and k != "jobs"}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same tiny recipe through the CLI with --jobs 1 and --jobs 2."""
    root = tmp_path_factory.mktemp("full")
    patch = pytest.MonkeyPatch()
    patch.setattr(aac_recipe, "LocaliserRecipe", lambda: TINY)  # the CLI's demo sizes → tiny
    outputs = {}
    try:
        for jobs in (1, 2):
            out = root / f"j{jobs}"
            run = CliRunner().invoke(train_app, ["xray", *GRADER, "--localiser", "--jobs", str(jobs), "-o", str(out)])
            assert run.exit_code == 0, run.output
            outputs[jobs] = (out, run.output)
    finally:
        patch.undo()
    return root, outputs


def test_jobs_1_and_2_write_the_same_complete_model(two_runs):
    _, outputs = two_runs
    (one, log1), (two, log2) = outputs[1], outputs[2]
    assert {p.name for p in one.iterdir()} == EXPECTED == {p.name for p in two.iterdir()}
    # one progress line as each of the 3 stages starts and ends, in either mode
    for log in (log1, log2):
        assert len(re.findall(r"^\[\d/3\] .*: started", log, flags=re.M)) == 3
        assert len(re.findall(r"^\[\d/3\] .*: done in \d+ s$", log, flags=re.M)) == 3
    assert "in a worker process" in log2 and "in a worker process" not in log1
    for name in sorted(EXPECTED):
        a, b = (one / name).read_bytes(), (two / name).read_bytes()
        if name.endswith(".pt"):
            assert a == b, f"{name}: weights differ between --jobs 1 and --jobs 2"
        elif name.endswith(".json"):
            assert _without_timings(json.loads(a)) == _without_timings(json.loads(b)), name
        else:
            keep = [line for line in a.decode().splitlines() if "time" not in line]
            assert keep == [line for line in b.decode().splitlines() if "time" not in line], name
    loc = json.loads((one / "localiser.json").read_text())
    assert loc["n_networks"] == 1 and loc["config"]["canvas_px"] == 48 and loc["local_stage"]["n_networks"] == 1
    assert loc["local_stage"]["training"]["seeds"] == [600_000, 600_009]  # LOCAL_TRAINING_SEED_OFFSET + seed·10⁴
    recipe = json.loads((two / aac_recipe.RECIPE_FILE).read_text())
    assert recipe["jobs"] == 2 and set(recipe["stage_wall_s"]) == {"grader", "localiser", "local_stage"}
    assert json.loads((one / "model.json").read_text())["n_graders"] == 2


def test_xray_score_uses_the_learned_localiser_with_its_stage(two_runs):
    root, outputs = two_runs
    film = make_lateral_spine(5000, pixel_spacing_mm=(1.0, 2.0))  # coarse network 0's first training film
    Image.fromarray((film.image * 65535).astype(np.uint16)).save(root / "film.png")
    out = root / "scored"
    run = CliRunner().invoke(xray_app, ["score", str(root / "film.png"), "--pixel-spacing",
                                        str(film.pixel_spacing_mm[0]), "--model", str(outputs[2][0]), "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert load_localiser(outputs[2][0]).local is not None  # the folder carries the stage
    result = json.loads((out / "result.json").read_text())
    method = result["method"]
    if method["landmark_check"]["landmarks_used"] == "learned":
        assert method["localiser"] == "learned_corner_heatmaps_local_stage"
    else:
        # a localiser this tiny may fail the geometric check on another CPU's arithmetic; the learned
        # path (coarse networks + stage) still ran, and says why its landmarks were not graded
        assert any("learned l" in w for w in result["warnings"]), result["warnings"]
    assert method["model_id"].startswith("learned:j2") and set(method["segment_probabilities_gt"]) == set(SEGMENTS)


def test_a_failing_worker_is_one_error_line_and_stops_the_other(tmp_path, monkeypatch):
    broken = aac_recipe.LocaliserRecipe(n_films=2, config=LocaliserConfig(channels=(8,), n_folds=1, epochs=1),
                                        n_local_films=1, local_config=LocalStageConfig(epochs=1))
    monkeypatch.setattr(aac_recipe, "LocaliserRecipe", lambda: broken)
    # a grader big enough to be still training when the localiser fails (it is stopped, not awaited)
    run = CliRunner().invoke(train_app, ["xray", "--synthetic", "400", "--folds", "2", "--epochs", "50", "--localiser",
                                         "--jobs", "2", "-o", str(tmp_path / "m")])
    assert run.exit_code == 2 and "Traceback" not in run.output
    errors = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "coarse localiser" in errors[0] and "channels" in errors[0], run.output
    assert not (tmp_path / "m" / "model.json").exists()


def test_output_folder_must_be_new_or_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(aac_recipe, "LocaliserRecipe", lambda: TINY)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x.txt").write_text("x")
    run = CliRunner().invoke(train_app, ["xray", *GRADER, "--localiser", "-o", str(tmp_path / "m")])
    assert run.exit_code != 0 and "not an empty folder" in run.output and "Traceback" not in run.output


def _labelled_folder(folder, n=6, landmarks=True):
    """``n`` generated films (1-mm pixels) as 16-bit PNGs + labels.csv (grades, spacing, landmarks or not)."""
    folder.mkdir(parents=True, exist_ok=True)
    levels = ("T12", "L1", "L2", "L3", "L4", "L5")
    header = ["image", *SEGMENTS, "pixel_spacing_mm", *([f"{v}_corners" for v in levels] if landmarks else [])]
    rows = [",".join(header)]
    for i in range(n):
        film = make_lateral_spine(i, chain=ChainParams(pixel_spacing_mm=1.0), burden=[0.0, 1.5, 3.0][i % 3])
        Image.fromarray((film.image * 65535).astype(np.uint16)).save(folder / f"film{i}.png")
        corners = [" ".join(f"{r:.2f} {c:.2f}" for r, c in v.corners_px) for v in film.vertebrae] if landmarks else []
        rows.append(",".join([f"film{i}.png", *[str(film.segment_grades[s]) for s in SEGMENTS], "1.0", *corners]))
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_data_without_landmarks_is_refused_before_training(tmp_path):
    data = _labelled_folder(tmp_path / "films", n=4, landmarks=False)
    run = CliRunner().invoke(train_app, ["xray", "--data", str(data), "--localiser", "-o", str(tmp_path / "m")])
    assert run.exit_code == 2 and "Traceback" not in run.output
    errors = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no landmark columns" in errors[0] and "L1_corners" in errors[0], run.output
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_data_with_landmarks_trains_the_localiser_from_them(tmp_path, monkeypatch):
    data = _labelled_folder(tmp_path / "films", n=6)
    small = aac_recipe.LocaliserRecipe(config=LocaliserConfig(mm_per_px=8.0, canvas_px=48, epochs=3, batch_size=2),
                                       local_config=LocalStageConfig(mm_per_px=2.5, patch_px=32, channels=(8, 16),
                                                                     epochs=2, batch_size=8))
    monkeypatch.setattr(aac_recipe, "LocaliserRecipe", lambda: small)
    out = tmp_path / "m"
    run = CliRunner().invoke(train_app, ["xray", "--data", str(data), "--folds", "2", "--epochs", "1", "--width", "4",
                                         "--localiser", "--jobs", "1", "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert EXPECTED <= {p.name for p in out.iterdir()}
    report = json.loads((out / "localiser_report.json").read_text())
    assert report["n_train"] == 6 and report["films_without_landmarks_left_out"] == 0
    stage = json.loads((out / "localiser.json").read_text())["local_stage"]["training"]
    assert stage["n_films"] == 6 and stage["n_bodies"] == 36  # T12–L5 given for every film
