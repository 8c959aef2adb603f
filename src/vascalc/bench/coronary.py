"""``vascalc bench coronary``: per-artery coronary calcium against chest-phantom truth.

Cohort: :func:`vascalc.coronary.training.case_parameters` for seeds ``BENCH_SEED_BASE + 1000·seed + k``
(slice increment/thickness 1–5 mm, noise 10–25 HU, zero-calcium cases, and varied anatomy,
distractor calcium and motion when the phantom offers them), disjoint from the training seeds.
Reference (primary) = the *noise-free image* of the same phantom scored by the same rules, calcium
given to the artery whose plaque it lies on (:func:`vascalc.coronary.training.truth_image_agatston`):
what a reader sees in the scan, without noise. Presence = that Agatston > 0; prediction = the
artery's Agatston > 0. A second reference, the blur-free phantom (:func:`truth_agatston`: exact
partial-volume fractions, no scanner blur) shows how much calcium the scanner itself hides.
Volume error is against the exact plaque volume. Statistics from :mod:`vascalc.stats`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vascalc.coronary.results import ARTERIES
from vascalc.coronary.score import RISK_BANDS, risk_band
from vascalc.coronary.training import BENCH_SEED_BASE, TRAIN_SEED_BASE, case_parameters, cluster_truth, make_case, \
    noise_limited_presence, truth_agatston, truth_image_agatston
from vascalc.errors import InputError

#: the study S5 (any artery; κ range over arteries), for the side-by-side table
STUDY = {"sensitivity": 0.95, "specificity": 0.98, "ppv": 0.99, "npv": 0.88, "auc": 0.96, "kappa": "0.82–0.93"}
TARGETS = {"sensitivity": 0.97, "specificity": 0.98, "risk_accuracy": 0.95, "runtime_s": 20.0}


def bench_seeds(n_cases: int, seed: int) -> list[int]:
    if n_cases > 1000:
        raise InputError("at most 1000 cases per bench seed")
    return [BENCH_SEED_BASE + 1000 * seed + k for k in range(n_cases)]


def case_row(seed: int, model=None) -> dict:
    """Score one phantom and compare with its truth: one flat row."""
    from vascalc.workflows.coronary import score_coronary

    phantom = make_case(seed)
    clean = make_case(seed, noise_free=True)
    params = case_parameters(seed)
    start = time.perf_counter()
    result = score_coronary(phantom.volume, segmenter="builtin", model=model)
    runtime = time.perf_counter() - start
    ideal = truth_agatston(phantom)
    truth = truth_image_agatston(phantom, clean.volume.hu)
    # what a perfect 130-HU reader of this noisy scan would call present (the noise floor, round 4)
    reader = noise_limited_presence(phantom, clean.volume.hu, params["noise_sd_hu"])
    cls, distractor = cluster_truth(result.cluster_labels, result.cluster_box, phantom)
    counted = np.array([lesion.counted for lesion in result.lesions], dtype=bool)
    row = {"seed": seed, "slice_increment_mm": params["spacing_mm"][0], "slice_thickness_mm": params["slice_thickness_mm"],
           "noise_sd_hu": params["noise_sd_hu"], "motion_mm": params.get("motion_mm", 0.0),
           "plaque_rate": params["plaque_rate"], "runtime_s": runtime,
           "n_candidates": len(result.lesions), "n_counted": int(counted.sum()),
           "distractors_counted": int((counted & distractor).sum()) if counted.size else 0,
           "noise_or_bone_counted": int((counted & (cls == 0) & ~distractor).sum()) if counted.size else 0,
           "n_truth_distractors": len(phantom.truth.get("distractors", [])),
           "warnings": " | ".join(result.warnings)}
    names = ("none",) + ARTERIES
    lesion_art = np.array([names.index(lesion.artery if lesion.artery in ARTERIES else "none")
                           for lesion in result.lesions], dtype=np.int64)
    row["wrong_artery_counted"] = int(((cls > 0) & (lesion_art > 0) & (cls != lesion_art)).sum()) if counted.size else 0
    for a in (*ARTERIES, "total"):
        score = result.total if a == "total" else result.artery(a)
        row[f"{a}_truth_agatston"] = truth[a]["agatston_3mm"]
        row[f"{a}_agatston"] = score.agatston_3mm
        row[f"{a}_ideal_agatston"] = ideal[a]["agatston_3mm"]
        row[f"{a}_ideal_present"] = int(ideal[a]["agatston_3mm"] > 0)
        row[f"{a}_truth_volume_mm3"] = ideal[a]["calcium_volume_mm3"]
        row[f"{a}_volume_mm3"] = score.calcium_volume_mm3
        row[f"{a}_truth_present"] = int(truth[a]["agatston_3mm"] > 0)
        row[f"{a}_present"] = int(score.agatston_3mm > 0)
        if a != "total":
            row[f"{a}_reader_p_present"] = reader[a]
    row["truth_band"] = risk_band(truth["total"]["agatston_3mm"])
    row["band"] = risk_band(result.total.agatston_3mm)
    return row


@dataclass(frozen=True)
class BenchSummary:
    rows: pd.DataFrame
    summary: pd.DataFrame
    markdown: str


def reader_ceiling(rows: pd.DataFrame, artery: str) -> dict[str, float]:
    """Expected sensitivity and specificity, against the noise-free reference, of a *perfect*
    130-HU reader of the noisy scans (column ``{artery}_reader_p_present`` of :func:`case_row`:
    :func:`vascalc.coronary.training.noise_limited_presence`): the mean presence probability over
    the reference-positive cases, and 1 − it over the negative ones. The sensitivity is a ceiling
    for any scorer whose presence is the standard Agatston > 0 on the scan (calcium hidden by noise
    has no voxel ≥ 130 HU); the specificity is that of a reader counting every such voxel on a
    plaque. NaN when the column is absent (``total``) or a class is empty."""
    column = f"{artery}_reader_p_present"
    if column not in rows:
        return {"reader_sensitivity": float("nan"), "reader_specificity": float("nan")}
    ref = rows[f"{artery}_truth_present"].to_numpy() > 0
    p = rows[column].to_numpy(dtype=float)
    return {"reader_sensitivity": float(p[ref].mean()) if ref.any() else float("nan"),
            "reader_specificity": float(1.0 - p[~ref].mean()) if (~ref).any() else float("nan")}


def summarise(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per-artery presence statistics, score errors, risk-band accuracy, distractors and runtime."""
    from vascalc.stats import cohen_kappa, diagnostic_accuracy, error_metrics, roc_auc

    records = []
    for a in (*ARTERIES, "total"):
        ref, pred = rows[f"{a}_truth_present"].to_numpy(), rows[f"{a}_present"].to_numpy()
        d = diagnostic_accuracy(ref, pred)
        kappa = cohen_kappa(ref, pred, categories=[0, 1]).kappa if len(rows) > 1 else float("nan")
        err = rows[f"{a}_agatston"] - rows[f"{a}_truth_agatston"]
        verr = rows[f"{a}_volume_mm3"] - rows[f"{a}_truth_volume_mm3"]
        ideal = diagnostic_accuracy(rows[f"{a}_ideal_present"].to_numpy(), pred) if f"{a}_ideal_present" in rows \
            else None
        rec = {"artery": "any" if a == "total" else a, "n_cases": len(rows), "n_positive": int(ref.sum()),
               **reader_ceiling(rows, a),
               "ideal_sensitivity": ideal.sensitivity.estimate if ideal else float("nan"),
               "ideal_specificity": ideal.specificity.estimate if ideal else float("nan"),
               "tp": d.tp, "fn": d.fn, "fp": d.fp, "tn": d.tn,
               "sensitivity": d.sensitivity.estimate, "sensitivity_ci": f"{d.sensitivity.ci_low:.2f}–{d.sensitivity.ci_high:.2f}",
               "specificity": d.specificity.estimate, "specificity_ci": f"{d.specificity.ci_low:.2f}–{d.specificity.ci_high:.2f}",
               "ppv": d.ppv.estimate, "npv": d.npv.estimate, "kappa": kappa,
               "agatston_mae": float(np.abs(err).mean()), "agatston_bias": float(err.mean()),
               "volume_mae_mm3": float(np.abs(verr).mean()), "volume_bias_mm3": float(verr.mean())}
        if len(rows) > 1:
            em = error_metrics(rows[f"{a}_truth_agatston"], rows[f"{a}_agatston"])
            rec["agatston_mape_percent"] = em.mape_percent
        if a == "total" and 2 <= ref.sum() <= len(ref) - 2:
            rec["auc"] = roc_auc(ref, rows["total_agatston"].to_numpy()).auc
        records.append(rec)
    summary = pd.DataFrame(records)
    risk_acc = float((rows["band"] == rows["truth_band"]).mean())
    band_kappa = cohen_kappa(rows["truth_band"], rows["band"], categories=list(RISK_BANDS), weights="linear").kappa \
        if len(rows) > 1 else float("nan")
    lines = ["| artery | cases (+) | sensitivity | specificity | PPV | NPV | κ | Agatston MAE / bias | volume MAE / bias (mm³) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['artery']} | {r['n_cases']} ({r['n_positive']}) | {_pct(r['sensitivity'])} ({r['sensitivity_ci']}) | "
                     f"{_pct(r['specificity'])} ({r['specificity_ci']}) | {_pct(r['ppv'])} | {_pct(r['npv'])} | {r['kappa']:.2f} | "
                     f"{r['agatston_mae']:.1f} / {r['agatston_bias']:+.1f} | {r['volume_mae_mm3']:.1f} / {r['volume_bias_mm3']:+.1f} |")
    any_row = records[-1]
    kappas = [r["kappa"] for r in records[:-1]]
    study = ["", "Side by side with the study (S5: any artery; κ per artery):", "",
             "| measure | vascalc (phantoms) | S5 | target |", "|---|---|---|---|",
             f"| sensitivity, any artery | {_pct(any_row['sensitivity'])} | 95 % | — |",
             f"| specificity, any artery | {_pct(any_row['specificity'])} | 98 % | — |",
             f"| PPV, any artery | {_pct(any_row['ppv'])} | 99 % | — |",
             f"| NPV, any artery | {_pct(any_row['npv'])} | 88 % | — |",
             f"| AUC, any artery (total Agatston) | {any_row.get('auc', float('nan')):.3f} | 0.96 | — |",
             f"| κ per artery | {min(kappas):.2f}–{max(kappas):.2f} | 0.82–0.93 | — |",
             f"| sensitivity per artery (min) | {_pct(min(r['sensitivity'] for r in records[:-1]))} | — | ≥ 97 % |",
             f"| specificity per artery (min) | {_pct(min(r['specificity'] for r in records[:-1]))} | — | ≥ 98 % |",
             f"| risk category (0/1-99/100-399/≥400) correct | {_pct(risk_acc)} (linear κ {band_kappa:.2f}) | — | ≥ 95 % |",
             f"| distractor lesions counted (all cases) | {int(rows['distractors_counted'].sum())} of "
             f"{int(rows['n_truth_distractors'].sum())} distractors | — | 0 |",
             f"| noise/bone specks counted (all cases) | {int(rows['noise_or_bone_counted'].sum())} | — | — |",
             f"| coronary lesions given the wrong artery | {int(rows['wrong_artery_counted'].sum())} | — | — |",
             *[f"| sensitivity / specificity vs the blur-free phantom, {r['artery']} | {_pct(r['ideal_sensitivity'])} / "
               f"{_pct(r['ideal_specificity'])} | — | — |" for r in records],
             *[f"| perfect 130-HU reader of the noisy scan, {r['artery']}: sensitivity (ceiling) / specificity | "
               f"{_pct(r['reader_sensitivity'])} / {_pct(r['reader_specificity'])} | — | — |" for r in records[:-1]
               if np.isfinite(r["reader_sensitivity"])],
             f"| runtime per case, median / max (s) | {rows['runtime_s'].median():.2f} / {rows['runtime_s'].max():.2f} | — | ≤ 20 s |"]
    extra = pd.DataFrame([{"artery": "risk_band", "n_cases": len(rows), "accuracy": risk_acc, "kappa": band_kappa},
                          {"artery": "distractors_counted", "n_cases": len(rows), "count": int(rows["distractors_counted"].sum())},
                          {"artery": "runtime_s", "n_cases": len(rows), "median": float(rows["runtime_s"].median()),
                           "max": float(rows["runtime_s"].max())}])
    return pd.concat([summary, extra], ignore_index=True), "\n".join(lines + study) + "\n"


def _pct(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{100 * value:.1f} %"


def run_coronary_bench(out: Path, n_cases: int, seed: int = 0, model=None, command: str = "",
                       progress: Callable[[str], None] | None = None, workers: int = 1) -> BenchSummary:
    """Score the cohort, write ``cases.csv``, ``summary.csv`` and ``summary.md`` into ``out``.

    ``workers`` > 1 scores the cases in that many processes (rows in seed order whatever finishes
    first, so the tables are identical; the per-case runtimes then share the cores)."""
    from vascalc.workflows.coronary import resolve_model

    report = progress or (lambda message: None)
    lesion_model = resolve_model(model)
    seeds = bench_seeds(n_cases, seed)
    # a model without recorded info (e.g. the optional 3-D segmentation backend) has no training seeds
    info = (getattr(lesion_model, "info", None) or {}) if lesion_model is not None else {}
    trained = info.get("training_seeds")
    if trained and not (max(seeds) < trained[0] or min(seeds) > trained[1]):
        raise InputError(f"bench seeds {min(seeds)}–{max(seeds)} overlap the model's training seeds "
                         f"{trained[0]}–{trained[1]}; choose another --seed")
    how_model = lesion_model if lesion_model is not None else "rules"
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = []
            for i, row in enumerate(pool.map(case_row, seeds, [how_model] * len(seeds))):
                report(f"case {i + 1}/{len(seeds)} (seed {row['seed']})")
                rows.append(row)
    else:
        rows = []
        for i, s in enumerate(seeds):
            report(f"case {i + 1}/{len(seeds)} (seed {s})")
            rows.append(case_row(s, how_model))
    frame = pd.DataFrame(rows)
    summary, table = summarise(frame)
    how = "rules" if lesion_model is None else f"learned model ({info.get('kind', '')}, training seeds {trained})"
    header = (f"# Coronary calcium on chest phantoms\n\nCommand: `{command}`\n\n{len(frame)} phantoms, seeds "
              f"{seeds[0]}–{seeds[-1]} (training seeds start at {TRAIN_SEED_BASE}; disjoint); assignment: {how}.\n\n")
    (out / "summary.md").write_text(header + table, encoding="utf-8")
    frame.to_csv(out / "cases.csv", index=False, lineterminator="\n")
    summary.to_csv(out / "summary.csv", index=False, lineterminator="\n")
    return BenchSummary(frame, summary, header + table)
