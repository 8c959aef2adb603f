"""The lesion classifier stored as JSON arrays: identical probabilities to scikit-learn, round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vascalc.coronary.assign import CLASSES, FEATURES, LesionModel, default_model_path
from vascalc.coronary.training import ARTERY_FEATURES, ROOT_FEATURES, LesionTable, fit_forest, lesions_from_csv, train_lesion_model
from vascalc.errors import InputError


def _table(n: int = 300, seed: int = 0) -> LesionTable:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    # classes from the azimuth-like columns, with a "none" class far from the heart surface
    angle = np.degrees(np.arctan2(x[:, 4], x[:, 3])) % 360
    y = np.where(angle < 120, 1, np.where(angle < 240, 2, 3))
    y[x[:, 6] > 1.0] = 0
    return LesionTable(x, y.astype(np.int64), np.arange(n) // 10)


def test_numpy_forest_equals_sklearn():
    table = _table()
    forest = fit_forest(table, seed=3, n_trees=15)
    model = LesionModel.from_sklearn(forest, {})
    probe = _table(200, seed=1).features
    expected = forest.predict_proba(probe.astype(np.float32))
    assert np.allclose(model.predict_proba(probe), expected, atol=1e-9)


def test_default_forest_settings():
    """Round 10 (docs/coronary.md): the defaults fit 240 trees of depth ≤ 12 per forest (was 60), recorded in the
    model's info, so `vascalc train coronary` refits the shipped model's settings."""
    model, _ = train_lesion_model(_table(), seed=0, folds=0)
    assert len(model.trees) == 240 and len(model.artery_trees) == 240
    assert model.info["n_trees"] == 240 and model.info["max_depth"] == 12
    assert max(t["depth"] for t in model.trees + model.artery_trees) <= 12


def test_json_round_trip_and_determinism(tmp_path):
    table = _table()
    # 20 trees: the rule uses 3 of the 46 columns, the rest are noise the forest must see past
    model, report = train_lesion_model(table, seed=0, n_trees=20, folds=3)
    again, _ = train_lesion_model(table, seed=0, n_trees=20, folds=3)
    assert json.dumps(model.to_json()) == json.dumps(again.to_json())
    assert report["accuracy"] > 0.8                      # grouped CV on a learnable rule
    path = model.save(tmp_path / "m.json")
    loaded = LesionModel.load(path)
    probe = _table(50, seed=2).features
    assert np.allclose(loaded.predict_proba(probe), model.predict_proba(probe), atol=1e-6)


def test_gzip_model_file(tmp_path):
    """A model saved as .json.gz (the shipped file since round 10) is the same JSON compressed, byte for byte
    the same on every save, found in a folder, and a damaged file is refused in one sentence."""
    import gzip

    model, _ = train_lesion_model(_table(), seed=0, n_trees=5, folds=0)
    plain = model.save(tmp_path / "m.json")
    folder = tmp_path / "model"
    folder.mkdir()
    packed = model.save(folder / "coronary_model.json.gz")
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert model.save(tmp_path / "again.json.gz").read_bytes() == packed.read_bytes()
    probe = _table(30, seed=3).features
    assert np.array_equal(LesionModel.load(folder).predict_proba(probe), LesionModel.load(plain).predict_proba(probe))
    damaged = tmp_path / "damaged.json.gz"
    damaged.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot read the coronary lesion model damaged.json.gz"):
        LesionModel.load(damaged)


def test_artery_forest_split_and_round_trip(tmp_path):
    """Detector on a subset of the columns + artery forest on its own (all but the root frame): P(none) from the detector, the
    artery shares from the artery forest; saved and loaded unchanged."""
    from vascalc.coronary.assign import BASE_FEATURES
    from vascalc.coronary.training import fit_model

    table = _table(400)
    model = fit_model(table, seed=0, n_trees=10, detector_features=BASE_FEATURES)
    assert model.features == BASE_FEATURES and model.artery_features == ARTERY_FEATURES
    probe = _table(60, seed=4).features
    p = model.predict_proba(probe)
    detector = LesionModel(model.trees, model.features, CLASSES, {}).predict_proba(probe)
    artery = LesionModel(model.artery_trees, model.artery_features, CLASSES, {}).predict_proba(probe)
    assert np.allclose(p[:, 0], detector[:, 0]) and np.allclose(p.sum(axis=1), 1.0)
    has = artery[:, 1:].sum(axis=1) > 0
    share = artery[has, 1:] / artery[has, 1:].sum(axis=1, keepdims=True)
    assert np.allclose(p[has, 1:], (1 - detector[has, :1]) * share)
    loaded = LesionModel.load(model.save(tmp_path / "m.json"))
    assert loaded.artery_features == ARTERY_FEATURES
    assert np.allclose(loaded.predict_proba(probe), p, atol=1e-6)


def test_older_model_on_fewer_features_still_reads_its_columns(tmp_path):
    """A round-2 model (base features only, no artery forest) predicts from the full feature matrix
    exactly as from its own columns."""
    from vascalc.coronary.assign import BASE_FEATURES

    table = _table(200)
    cols = [FEATURES.index(f) for f in BASE_FEATURES]
    forest = fit_forest(table, seed=1, n_trees=8, features=BASE_FEATURES)
    old = LesionModel.from_sklearn(forest, {}, BASE_FEATURES)
    path = old.save(tmp_path / "old.json")
    data = json.loads(path.read_text())
    assert "artery_forest" not in data and data["features"] == list(BASE_FEATURES)
    probe = _table(40, seed=5).features
    loaded = LesionModel.load(path)
    assert np.allclose(loaded.predict_proba(probe), forest.predict_proba(probe[:, cols].astype(np.float32)), atol=1e-9)
    data["features"][0] = "not_a_feature"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="other features"):
        LesionModel.load(tmp_path / "bad.json")


def test_csv_training_input(tmp_path):
    table = _table(60)
    table.to_frame().to_csv(tmp_path / "lesions.csv", index=False)
    back = lesions_from_csv(tmp_path)
    assert np.array_equal(back.classes, table.classes)
    assert np.allclose(back.features, table.features)
    (tmp_path / "bad.csv").write_text("u,v\n1,2\n")
    with pytest.raises(InputError, match="lacks column"):
        lesions_from_csv(tmp_path / "bad.csv")


def test_not_a_model_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="not a vascalc coronary lesion model"):
        LesionModel.load(path)


def test_shipped_model_loads():
    if not default_model_path().exists():
        pytest.skip("no shipped model")
    model = LesionModel.load(default_model_path())
    assert model.classes == CLASSES and model.info.get("training_seeds")
    # round 3: the detector adds the fat-envelope radius and plate shape; round 7: the artery forest
    # uses every feature but the aortic-root frame
    assert {"envelope_radius", "plate_index"} <= set(model.features) and model.artery_features == ARTERY_FEATURES
    assert set(ROOT_FEATURES) <= set(model.features) and not set(ROOT_FEATURES) & set(model.artery_features)
    assert set(model.artery_features) | set(ROOT_FEATURES) == set(FEATURES)


def test_train_command_on_lesion_csv(tmp_path):
    from typer.testing import CliRunner

    from vascalc.cli import app

    _table(120).to_frame().to_csv(tmp_path / "lesions.csv", index=False)
    out = tmp_path / "model.json"
    result = CliRunner().invoke(app, ["train", "coronary", "--lesions", str(tmp_path / "lesions.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    model = LesionModel.load(out)
    assert model.info["class_counts"]["none"] == int((_table(120).classes == 0).sum())
    again = CliRunner().invoke(app, ["train", "coronary", "--lesions", str(tmp_path / "lesions.csv"), "-o", str(out)])
    assert again.exit_code != 0                              # never overwrites a model


def test_seed_ranges_disjoint():
    """Training (seed ≤ 39 × 10 000 cases), development (1000) and bench (seed 0–99) seeds never meet."""
    from vascalc.coronary.training import BENCH_SEED_BASE, DEV_SEED_BASE, TRAIN_SEED_BASE
    from vascalc.bench.coronary import bench_seeds

    train = set(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 10_000 * 39 + 220))
    dev = set(range(DEV_SEED_BASE, DEV_SEED_BASE + 1000))
    bench = {s for seed in range(100) for s in bench_seeds(100, seed)}
    assert not train & dev and not dev & bench and not train & bench
    assert min(bench) == BENCH_SEED_BASE
