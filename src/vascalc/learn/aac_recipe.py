"""The whole AAC-24 model in one run: grader + regressor, coarse localiser, local corner stage.

``vascalc train xray --synthetic N --localiser`` (issue 7: one command for the demo model, ≤ 30 min on
the 2-core machine) calls :func:`train_synthetic_aac_model`; with ``--data DIR`` it calls
:func:`train_folder_aac_model`. Both write into ONE model folder what the bundled
``radiograph/models/aac_demo`` was made of in three separate steps:

1. the CORAL grader + whole-score regressor fold ensemble (:func:`vascalc.learn.aac.train_aac_grader`,
   or :func:`vascalc.learn.aac_data.train_from_folder`): ``model.json``, ``grader_fold*.pt``,
   ``regressor_fold*.pt``, ``cv_report.json/.md``;
2. the coarse corner-heatmap localiser (:func:`vascalc.learn.aac_localiser.train_synthetic_localiser`):
   ``localiser.json``, ``localiser_fold*.pt``, ``localiser_report.json``;
3. the local corner stage (:func:`vascalc.learn.aac_local.train_synthetic_local_stage`):
   ``localiser_local_fold0.pt`` and the ``local_stage`` block of ``localiser.json``.

Stage 3 needs stage 2's ``localiser.json``; stage 1 is independent. With ``jobs ≥ 2`` stage 1 runs in
one worker process and stages 2 then 3 in another (spawned, so no parent state is inherited), which
roughly halves the wall time on two cores (one-core times of the demo recipe's parts measured in
rounds 15 and 17: ≈ 860 s grader, ≈ 550 s localiser, ≈ 300 s stage; docs/radiograph.md, round 17).
Every stage runs with ONE torch / BLAS thread in every mode, so two workers do not oversubscribe two
cores and the weights do not depend on ``jobs`` (CPU reductions may be split differently with more
threads); each stage seeds itself from ``seed`` exactly as the underlying function does, so the order
of the stages does not matter either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from vascalc.errors import InputError, MethodError, VascalcError
from vascalc.learn.aac import AacConfig, TEST_SETS
from vascalc.learn._deps import require_torch
from vascalc.learn.aac_local import LocalStageConfig
from vascalc.learn.aac_localiser import LocaliserConfig

#: Thread settings of a worker, set before torch (and its OpenMP / MKL runtime) is imported there.
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: File that records how the folder was trained (configs, seeds, jobs, per-stage wall times).
RECIPE_FILE = "training_recipe.json"


@dataclass(frozen=True)
class LocaliserRecipe:
    """What ``--localiser`` adds. Defaults = the bundled demo model's recipe (MODEL_CARD.md): coarse
    localiser ``config.n_folds`` = 2 networks, network k on its own ``n_films`` = 1000 films
    (1–2 mm pixels, seeds ``(seed + k)·10⁴ + 5000 + i``, training seed ``seed + k``), 24 epochs;
    local stage on ``n_local_films`` = 1500 films (0.3–1.0 mm, seeds ``600 000 + seed·10⁴ + i``),
    12 epochs, training seed ``seed``. The configs' own ``seed`` field is set to the run's seed."""

    n_films: int = 1000
    config: LocaliserConfig = field(default_factory=lambda: LocaliserConfig(epochs=24, n_folds=2))
    n_local_films: int = 1500
    local_config: LocalStageConfig = field(default_factory=lambda: LocalStageConfig(epochs=12))

    def __post_init__(self) -> None:
        if self.n_films < 2 or self.n_local_films < 1:
            raise InputError(f"the localiser needs ≥ 2 films per network and ≥ 1 local-stage film, got "
                              f"{self.n_films} and {self.n_local_films}")


@dataclass(frozen=True)
class AacTrainingRun:
    """Result of :func:`train_synthetic_aac_model` / :func:`train_folder_aac_model`: the reports of
    the stages (as the underlying functions return them; ``None`` for a stage not run), ``jobs``
    (worker processes used; 1 = in-process), ``wall_s`` (whole run) and ``stage_wall_s`` (per stage,
    seconds from its start to its end, in its worker)."""

    out_dir: Path
    grader_report: dict
    localiser_report: dict | None
    local_stage_report: dict | None
    jobs: int
    wall_s: float
    stage_wall_s: dict[str, float]


# ----------------------------------------------------------------------------- the stages
# Top-level functions so that a spawned worker can unpickle them; their arguments are plain data.

def _stage_grader(out_dir: str, n_train: int, seed: int, config: AacConfig, n_test: int,
                  test_sets: tuple[str, ...]) -> dict:
    from vascalc.learn.aac import train_aac_grader

    return train_aac_grader(out_dir, n_train=n_train, seed=seed, epochs=config.epochs, config=config,
                            n_test=n_test, test_sets=test_sets)


def _stage_localiser(out_dir: str, n_films: int, seed: int, config: LocaliserConfig) -> dict:
    from vascalc.learn.aac_localiser import train_synthetic_localiser

    return train_synthetic_localiser(out_dir, n_train=n_films, seed=seed, config=config)


def _stage_local(out_dir: str, n_films: int, seed: int, config: LocalStageConfig) -> dict:
    from vascalc.learn.aac_local import train_synthetic_local_stage

    return train_synthetic_local_stage(out_dir, n_films=n_films, seed=seed, config=config)


def _stage_folder_grader(out_dir: str, folder: str, seed: int, config: AacConfig) -> dict:
    from vascalc.learn.aac_data import train_from_folder

    return train_from_folder(folder, out_dir, config, seed=seed)


def _stage_folder_localiser(out_dir: str, folder: str, seed: int, config: LocaliserConfig) -> dict:
    return train_folder_localiser(folder, out_dir, config, seed=seed)


def _stage_folder_local(out_dir: str, folder: str, seed: int, config: LocalStageConfig) -> dict:
    return train_folder_local_stage(folder, out_dir, config, seed=seed)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block (then restored): the same arithmetic in-process
    and in a worker, hence the same weights whatever ``jobs`` is."""
    torch = require_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_stage(function: Callable[..., dict], *args) -> tuple[dict, float]:
    """Run one stage single-threaded; returns (its report, wall seconds)."""
    start = time.perf_counter()
    with _one_thread():
        report = function(*args)
    return report, round(time.perf_counter() - start, 2)


def _worker_init() -> None:
    """Spawned worker: one OpenMP / MKL / BLAS thread, set before anything imports torch."""
    for name in _THREAD_ENV:
        os.environ[name] = "1"


def _worker_stage(function: Callable[..., dict], *args) -> tuple[dict, float]:
    """A stage in a worker. A user error (:class:`VascalcError`) travels back as it is; anything else is
    re-raised as a :class:`MethodError` naming its type, because a traceback object from another
    process cannot be shown usefully as the CLI's one-line error."""
    try:
        return _run_stage(function, *args)
    except VascalcError:
        raise
    except Exception as error:  # noqa: BLE001 — converted, not swallowed
        raise MethodError(f"{type(error).__name__}: {error}") from None


# ----------------------------------------------------------------------------- scheduling

@dataclass(frozen=True)
class _Stage:
    key: str
    label: str
    function: Callable[..., dict]
    args: tuple
    after: str | None = None  # key of the stage whose files this one needs


def _schedule(stages: list[_Stage], jobs: int, progress: Callable[[str], None]) -> tuple[dict, dict]:
    """Run ``stages`` respecting ``after``; in order in-process when ``jobs`` = 1, else in a spawned
    pool of ``min(jobs, 2)`` workers (two independent chains at most). Returns (reports, wall s)."""
    reports: dict[str, dict] = {}
    walls: dict[str, float] = {}
    n = len(stages)
    numbered = {s.key: f"[{i}/{n}] {s.label}" for i, s in enumerate(stages, start=1)}

    def done(stage: _Stage, report: dict, wall: float) -> None:
        reports[stage.key], walls[stage.key] = report, wall
        progress(f"{numbered[stage.key]}: done in {wall:.0f} s")

    if jobs <= 1:
        for stage in stages:
            progress(f"{numbered[stage.key]}: started")
            try:
                report, wall = _run_stage(stage.function, *stage.args)
            except VascalcError as error:
                raise type(error)(f"{stage.label} failed: {error}") from None
            done(stage, report, wall)
        return reports, walls
    pending = list(stages)
    running: dict[Future, _Stage] = {}
    pool = ProcessPoolExecutor(max_workers=min(jobs, 2), mp_context=get_context("spawn"), initializer=_worker_init)
    # a plain `kill` of this process must not leave the workers training on their own for minutes
    previous = signal.signal(signal.SIGTERM, _terminated) if threading.current_thread() is threading.main_thread() else None
    try:
        while pending or running:
            for stage in [s for s in pending if s.after is None or s.after in reports]:
                pending.remove(stage)
                running[pool.submit(_worker_stage, stage.function, *stage.args)] = stage
                progress(f"{numbered[stage.key]}: started in a worker process")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                stage = running.pop(future)
                try:
                    report, wall = future.result()
                except VascalcError as error:
                    raise type(error)(f"{stage.label} failed: {error}") from None
                except Exception as error:  # a worker killed (memory) or unpicklable result
                    raise MethodError(f"{stage.label} failed in its worker process ({type(error).__name__}: "
                                      f"{error})") from None
                done(stage, report, wall)
    except BaseException:
        # a failed stage ends the run now, not after the other worker's remaining minutes of training
        # (ProcessPoolExecutor has no public way to stop a running worker before Python 3.14)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    pool.shutdown(wait=True)
    return reports, walls


def _terminated(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def default_jobs() -> int:
    """Worker processes by default: one per core, at most 2 (the run has two independent chains)."""
    return max(1, min(2, os.cpu_count() or 1))


def _finish(out: Path, stages: list[_Stage], jobs: int, progress, recipe: dict) -> AacTrainingRun:
    start = time.perf_counter()
    reports, walls = _schedule(stages, jobs, progress)
    wall = round(time.perf_counter() - start, 2)
    (out / RECIPE_FILE).write_text(json.dumps({**recipe, "jobs": jobs, "wall_s": wall, "stage_wall_s": walls},
                                              indent=2, default=str))
    return AacTrainingRun(out_dir=out, grader_report=reports["grader"], localiser_report=reports.get("localiser"),
                          local_stage_report=reports.get("local_stage"), jobs=jobs, wall_s=wall, stage_wall_s=walls)


def _config_json(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def train_synthetic_aac_model(out_dir: str | Path, n_train: int, *, seed: int = 0, grader: AacConfig | None = None,
                              localiser: LocaliserRecipe | None = None, n_test: int = 0,
                              test_sets: tuple[str, ...] = TEST_SETS, jobs: int = 1,
                              progress: Callable[[str], None] | None = None) -> AacTrainingRun:
    """Train the AAC-24 model on generated films into ``out_dir`` (created; files of the same names
    are overwritten — the CLI checks the folder is new or empty first).

    ``grader``: :class:`AacConfig` of the grader + regressor (its ``epochs`` and ``seed`` are used as
    :func:`~vascalc.learn.aac.train_aac_grader` uses them: films ``seed·10⁴ + i``, i < ``n_train``);
    ``localiser``: a :class:`LocaliserRecipe` adds the coarse localiser and the local stage (None =
    grader only, as ``vascalc train xray`` without ``--localiser``); ``n_test`` / ``test_sets``: the
    grader's held-out evaluation (0 = none); ``jobs``: worker processes (1 = in order, in-process);
    ``progress``: called with one line when a stage starts and when it ends.

    ``seed = 0`` with the default :class:`LocaliserRecipe` and ``AacConfig(width=16, epochs=18)``,
    ``n_train = 2400`` is the bundled demo model's recipe (MODEL_CARD.md, round 17)."""
    cfg = replace(grader or AacConfig(), seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = [_Stage("grader", f"grader + regressor ({n_train} films, {cfg.n_folds} folds × {cfg.epochs} epochs)",
                     _stage_grader, (str(out), int(n_train), seed, cfg, int(n_test), tuple(test_sets) if n_test else ()))]
    recipe = {"data": "synthetic", "seed": seed, "grader": {"n_train": n_train, "config": _config_json(cfg),
                                                            "n_test": n_test}}
    if localiser is not None:
        loc_cfg = replace(localiser.config, seed=seed)
        local_cfg = replace(localiser.local_config, seed=seed)
        stages += [_Stage("localiser", f"coarse localiser ({loc_cfg.n_folds} × {localiser.n_films} films, "
                                       f"{loc_cfg.epochs} epochs)", _stage_localiser,
                          (str(out), int(localiser.n_films), seed, loc_cfg)),
                   _Stage("local_stage", f"local corner stage ({localiser.n_local_films} films, "
                                         f"{local_cfg.epochs} epochs)", _stage_local,
                          (str(out), int(localiser.n_local_films), seed, local_cfg), after="localiser")]
        recipe["localiser"] = {"n_films": localiser.n_films, "config": _config_json(loc_cfg),
                               "n_local_films": localiser.n_local_films, "local_config": _config_json(local_cfg)}
    return _finish(out, stages, jobs, progress or (lambda _m: None), recipe)


# ----------------------------------------------------------------------------- labelled folders

def landmark_rows(folder: str | Path) -> tuple[list[dict], int]:
    """Rows of ``folder/labels.csv`` (:func:`~vascalc.learn.aac_data.read_labels`) that carry landmarks
    (``L1_corners … L4_corners``), and the number of rows without. Refuses a CSV with none: the
    localiser learns corners only from corners a reader placed (never from the model-free localiser's)."""
    from vascalc.learn.aac_data import read_labels

    rows = read_labels(folder)
    marked = [r for r in rows if r["vertebrae"] is not None]
    if not marked:
        raise InputError(f"{Path(folder) / 'labels.csv'} has no landmark columns (L1_corners … L4_corners) filled "
                         "in; --localiser learns the corners from them: add them, or train without --localiser")
    return marked, len(rows) - len(marked)


def _landmark_films(folder: str | Path) -> tuple[list, int]:
    """(labelled films with landmarks, films without) — read as the grader reads them, with the spacing
    the grader uses (:func:`~vascalc.learn.aac_data.film_spacing_mm`: the landmarks' vertebral pitch
    when neither the file nor the CSV gives one)."""
    from vascalc.learn.aac_data import film_spacing_mm, load_labelled_folder

    rows, skipped = landmark_rows(folder)
    films, _ = load_labelled_folder(folder, rows=rows)
    return [replace(film, pixel_spacing_mm=tuple(film_spacing_mm(film))) for film in films], skipped


def train_folder_localiser(folder: str | Path, out_dir: str | Path, config: LocaliserConfig | None = None, *,
                           seed: int = 0) -> dict:
    """Train the coarse localiser on the films of a labelled folder that have landmarks and save it
    into ``out_dir`` (``localiser.json``, ``localiser_fold*.pt``, ``localiser_report.json``).

    ``config.n_folds`` networks, each on all those films (a folder is usually too small to give each
    network its own films, as the synthetic recipe does) with training seed ``seed + k``; levels
    without landmarks (T12, L5 when absent) have no target. Flip averaging and edge refinement are
    switched on at inference, as in the demo model. Returns the report."""
    from vascalc.learn.aac_localiser import save_localiser, train_localiser

    cfg = replace(config or LocaliserConfig(), seed=seed)
    start = time.perf_counter()
    films, skipped = _landmark_films(folder)
    if len(films) < 2:
        raise InputError(f"the localiser needs at least 2 films with landmarks, {Path(folder).name} has {len(films)}")
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    nets, losses = [], []
    for k in range(max(1, int(cfg.n_folds))):
        net, loss = train_localiser([f.image for f in films], [f.pixel_spacing_mm for f in films],
                                    [f.vertebrae for f in films], cfg, seed=seed + k)
        nets.append(net)
        losses.append([round(loss[0], 4), round(loss[-1], 4)])
    source = f"labelled folder {Path(folder).name}"
    save_localiser(Path(out_dir), nets, cfg, {"n_train": len(films), "trained_on": source,
                                              "inference": {"flip_average": True, "refine_edges": True}})
    report = {"n_train": len(films), "films_without_landmarks_left_out": skipped, "trained_on": source,
              "config": _config_json(cfg), "loss_first_last": losses, "data_generation_s": round(data_s, 2),
              "training_s": round(time.perf_counter() - start, 2)}
    (Path(out_dir) / "localiser_report.json").write_text(json.dumps(report, indent=2))
    return report


def train_folder_local_stage(folder: str | Path, out_dir: str | Path, config: LocalStageConfig | None = None, *,
                             seed: int = 0) -> dict:
    """Train the local corner stage on every landmarked body of a labelled folder's films and add it to
    the localiser already in ``out_dir`` (:func:`~vascalc.learn.aac_local.save_local_stage`)."""
    from vascalc.learn.aac_local import body_regions, save_local_stage, train_local_network

    cfg = replace(config or LocalStageConfig(), seed=seed)
    start = time.perf_counter()
    films, _ = _landmark_films(folder)
    bodies = [b for f in films for b in body_regions(f.image, f.pixel_spacing_mm, f.vertebrae, cfg)]
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    net, losses = train_local_network(bodies, cfg, seed=seed)
    report = {"n_films": len(films), "n_bodies": len(bodies), "trained_on": f"labelled folder {Path(folder).name}",
              "loss_per_epoch": [round(x, 4) for x in losses], "data_generation_s": round(data_s, 1),
              "training_s": round(time.perf_counter() - start, 1)}
    save_local_stage(out_dir, [net], cfg, metadata={"training": report})
    return report


def train_folder_aac_model(folder: str | Path, out_dir: str | Path, *, seed: int = 0, grader: AacConfig | None = None,
                           localiser: LocaliserRecipe | None = None, jobs: int = 1,
                           progress: Callable[[str], None] | None = None) -> AacTrainingRun:
    """As :func:`train_synthetic_aac_model`, from a labelled folder (``labels.csv``,
    :mod:`vascalc.learn.aac_data`): the grader + regressor on every usable film; with ``localiser``
    (only its ``config`` and ``local_config`` are used; the film counts are the folder's) the coarse
    localiser and the local stage on the films with landmarks. A CSV without landmarks is refused
    before anything is trained."""
    cfg = replace(grader or AacConfig(), seed=seed)
    out = Path(out_dir)
    data = str(Path(folder))
    stages = [_Stage("grader", f"grader + regressor ({cfg.n_folds} folds × {cfg.epochs} epochs)",
                     _stage_folder_grader, (str(out), data, seed, cfg))]
    recipe = {"data": f"labelled folder {Path(folder).name}", "seed": seed, "grader": {"config": _config_json(cfg)}}
    if localiser is not None:
        rows, skipped = landmark_rows(folder)  # fail now, not after the grader's minutes of training
        loc_cfg = replace(localiser.config, seed=seed)
        local_cfg = replace(localiser.local_config, seed=seed)
        stages += [_Stage("localiser", f"coarse localiser ({loc_cfg.n_folds} networks × {len(rows)} films with "
                                       f"landmarks, {loc_cfg.epochs} epochs)", _stage_folder_localiser,
                          (str(out), data, seed, loc_cfg)),
                   _Stage("local_stage", f"local corner stage ({len(rows)} films, {local_cfg.epochs} epochs)",
                          _stage_folder_local, (str(out), data, seed, local_cfg), after="localiser")]
        recipe["localiser"] = {"films_with_landmarks": len(rows), "films_without": skipped,
                               "config": _config_json(loc_cfg), "local_config": _config_json(local_cfg)}
    out.mkdir(parents=True, exist_ok=True)
    return _finish(out, stages, jobs, progress or (lambda _m: None), recipe)


__all__ = ["RECIPE_FILE", "AacTrainingRun", "LocaliserRecipe", "default_jobs", "landmark_rows", "train_folder_aac_model",
           "train_folder_local_stage", "train_folder_localiser", "train_synthetic_aac_model"]
