"""``vascalc bench coronary``: per-artery coronary calcium against chest-phantom truth.

Cohort: :func:`vascalc.coronary.training.case_parameters` for seeds ``BENCH_SEED_BASE + 1000·seed + k``
(slice increment/thickness 1–5 mm, noise 10–25 HU, zero-calcium cases, and varied anatomy,
distractor calcium and motion when the phantom offers them), disjoint from the training seeds.

References [T] (docs/coronary.md, "Reference standard"), each reported in full:

* **primary — the scan reader** (since round 7): the acquired, noisy scan itself scored by the
  standard rules (≥ 130 HU, 8-connected 2-D lesions ≥ 1 mm², classic weights, same slice
  convention), each 2-D lesion given to the artery whose plaque lies under most of its voxels;
  aortic plaques, distractors and noise specks on no plaque never count
  (:func:`vascalc.coronary.noisefloor.scan_reader_agatston`). Agatston is defined on the acquired
  image (SCORING.md A.2–A.4) and study S5's reference is readers scoring the same scans: this is
  what a perfect reader who knows where every artery lies scores. Columns ``{artery}_scan_agatston``,
  ``{artery}_scan_present``, ``scan_band``.
* **secondary — the noise-free image** of the same phantom scored the same way
  (:func:`vascalc.coronary.training.truth_image_agatston`; the primary until round 6). Columns
  ``{artery}_truth_agatston``, ``{artery}_truth_present``, ``truth_band``; the noise floor
  (``{artery}_reader_p_present``, :func:`reader_ceiling`) is stated against it.
* **secondary — the blur-free phantom** (:func:`vascalc.coronary.training.truth_agatston`: exact
  partial-volume fractions, no scanner blur), which shows how much calcium the scanner itself hides.
  Columns ``{artery}_ideal_agatston``, ``{artery}_ideal_present``.

Presence = reference Agatston > 0; prediction = the artery's Agatston > 0. Volume error is against
the exact plaque volume. Statistics from :mod:`vascalc.stats`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vascalc.coronary.noisefloor import scan_reader_agatston
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


@dataclass(frozen=True, eq=False)
class BenchCase:
    """One bench case: its flat ``row`` (:func:`case_row`), the noisy ``phantom`` that was scored and
    the pipeline's ``result`` (a :class:`vascalc.coronary.results.CoronaryResult`), kept for error
    analysis."""

    row: dict
    phantom: object
    result: object


def case_row(seed: int, model=None) -> dict:
    """Score one phantom and compare with its references: one flat row (see the module docstring)."""
    return score_bench_case(seed, model).row


def score_bench_case(seed: int, model=None) -> BenchCase:
    """Score the phantom of ``seed`` with ``model`` and compare it with the three references."""
    from vascalc.workflows.coronary import score_coronary

    phantom = make_case(seed)
    clean = make_case(seed, noise_free=True)
    params = case_parameters(seed)
    start = time.perf_counter()
    result = score_coronary(phantom.volume, segmenter="builtin", model=model)
    runtime = time.perf_counter() - start
    ideal = truth_agatston(phantom)
    truth = truth_image_agatston(phantom, clean.volume.hu)
    scan = scan_reader_agatston(phantom)
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
        row[f"{a}_scan_agatston"] = scan[a]["agatston_3mm"]
        row[f"{a}_scan_present"] = int(scan[a]["agatston_3mm"] > 0)
        row[f"{a}_present"] = int(score.agatston_3mm > 0)
        if a != "total":
            row[f"{a}_reader_p_present"] = reader[a]
    row["truth_band"] = risk_band(truth["total"]["agatston_3mm"])
    row["scan_band"] = risk_band(scan["total"]["agatston_3mm"])
    row["band"] = risk_band(result.total.agatston_3mm)
    return BenchCase(row, phantom, result)


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


#: the bench's presence / Agatston / risk references, primary first: (key in ``summary.csv``, title,
#: column stem of ``{artery}_{stem}_present`` / ``_agatston``, risk-band column). The blur-free
#: phantom (``{artery}_ideal_present``) is reported as sensitivity / specificity rows beside them.
REFERENCES = (("scan_reader", "the scan reader (primary): the acquired scan scored by the standard rules, "
                              "calcium on each artery's plaques", "scan", "scan_band"),
              ("noise_free", "the noise-free image (secondary; the primary until round 6)", "truth", "truth_band"))


def reference_statistics(rows: pd.DataFrame, stem: str, band_column: str) -> tuple[list[dict], dict]:
    """Per artery (and ``any`` = total) presence statistics, Agatston errors and AUC of the measured
    columns against one reference (``{artery}_{stem}_present`` / ``_agatston``), and the risk-band
    accuracy, linear κ and confusion (rows reference, columns measured, :data:`RISK_BANDS` order)
    against ``band_column``. Wilson intervals, κ and DeLong AUC from :mod:`vascalc.stats`."""
    from vascalc.stats import cohen_kappa, contingency_table, diagnostic_accuracy, error_metrics, roc_auc

    records = []
    for a in (*ARTERIES, "total"):
        ref, pred = rows[f"{a}_{stem}_present"].to_numpy(), rows[f"{a}_present"].to_numpy()
        d = diagnostic_accuracy(ref, pred)
        kappa = cohen_kappa(ref, pred, categories=[0, 1]).kappa if len(rows) > 1 else float("nan")
        err = rows[f"{a}_agatston"] - rows[f"{a}_{stem}_agatston"]
        verr = rows[f"{a}_volume_mm3"] - rows[f"{a}_truth_volume_mm3"]
        ideal = diagnostic_accuracy(rows[f"{a}_ideal_present"].to_numpy(), pred) if f"{a}_ideal_present" in rows \
            else None
        # the noise floor is a statement about the noise-free reference only
        ceiling = reader_ceiling(rows, a) if stem == "truth" else {"reader_sensitivity": float("nan"),
                                                                   "reader_specificity": float("nan")}
        rec = {"artery": "any" if a == "total" else a, "n_cases": len(rows), "n_positive": int(ref.sum()),
               **ceiling,
               "ideal_sensitivity": ideal.sensitivity.estimate if ideal else float("nan"),
               "ideal_specificity": ideal.specificity.estimate if ideal else float("nan"),
               "tp": d.tp, "fn": d.fn, "fp": d.fp, "tn": d.tn,
               "sensitivity": d.sensitivity.estimate, "sensitivity_ci": f"{d.sensitivity.ci_low:.2f}–{d.sensitivity.ci_high:.2f}",
               "specificity": d.specificity.estimate, "specificity_ci": f"{d.specificity.ci_low:.2f}–{d.specificity.ci_high:.2f}",
               "ppv": d.ppv.estimate, "npv": d.npv.estimate, "kappa": kappa,
               "agatston_mae": float(np.abs(err).mean()), "agatston_bias": float(err.mean()),
               "volume_mae_mm3": float(np.abs(verr).mean()), "volume_bias_mm3": float(verr.mean())}
        if len(rows) > 1:
            em = error_metrics(rows[f"{a}_{stem}_agatston"], rows[f"{a}_agatston"])
            rec["agatston_mape_percent"] = em.mape_percent
        if a == "total" and 2 <= ref.sum() <= len(ref) - 2:
            rec["auc"] = roc_auc(ref, rows["total_agatston"].to_numpy()).auc
        records.append(rec)
    truth_band, band = rows[band_column].astype(str), rows["band"].astype(str)
    confusion, _, _ = contingency_table(truth_band, band, categories=list(RISK_BANDS))
    risk = {"accuracy": float((band == truth_band).mean()),
            "kappa": cohen_kappa(truth_band, band, categories=list(RISK_BANDS), weights="linear").kappa
            if len(rows) > 1 else float("nan"),
            "confusion": confusion.astype(int)}
    return records, risk


def summarise(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per-artery presence statistics, score errors and risk-band accuracy against each reference of
    :data:`REFERENCES` present in ``rows`` (primary first; a table without the scan reader's columns,
    e.g. a ``cases.csv`` of round 6, is summarised against the noise-free image alone), the
    blur-free rows, the noise floor, distractors and runtime. The targets are read against the
    first reference."""
    refs = [r for r in REFERENCES if f"rca_{r[2]}_present" in rows]
    if not refs:
        raise InputError("the bench table has no reference presence column (rca_scan_present or rca_truth_present)")
    stats = {key: reference_statistics(rows, stem, band) for key, _, stem, band in refs}
    lines: list[str] = []
    frames = []
    for key, title, _, _ in refs:
        records, risk = stats[key]
        frames.append(pd.DataFrame(records).assign(reference=key))
        lines += [f"## Against {title}", "",
                  "| artery | cases (+) | sensitivity | specificity | PPV | NPV | κ | Agatston MAE / bias | AUC (total Agatston) "
                  "| volume MAE / bias (mm³) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in records:
            lines.append(f"| {r['artery']} | {r['n_cases']} ({r['n_positive']}) | {_pct(r['sensitivity'])} ({r['sensitivity_ci']}) | "
                         f"{_pct(r['specificity'])} ({r['specificity_ci']}) | {_pct(r['ppv'])} | {_pct(r['npv'])} | {r['kappa']:.2f} | "
                         f"{r['agatston_mae']:.1f} / {r['agatston_bias']:+.1f} | {_auc(r)} | "
                         f"{r['volume_mae_mm3']:.1f} / {r['volume_bias_mm3']:+.1f} |")
        lines += ["", f"Risk category (0 / 1-99 / 100-399 / ≥400) correct: {_pct(risk['accuracy'])} "
                  f"(linear κ {risk['kappa']:.2f}); reference in rows, measured in columns:", "",
                  "| reference \\ measured | " + " | ".join(RISK_BANDS) + " |", "|---" * (len(RISK_BANDS) + 1) + "|",
                  *[f"| {band} | " + " | ".join(str(int(v)) for v in risk["confusion"][i]) + " |"
                    for i, band in enumerate(RISK_BANDS)], ""]
    keys = [key for key, _, _, _ in refs]
    blur = stats["noise_free"][0] if "noise_free" in stats else stats[keys[0]][0]

    def line(measure: str, values: list[str], s5: str = "—", target: str = "—") -> str:
        # one value per reference column; a reference-independent measure fills the first only
        cells = values + ["—"] * (len(keys) - len(values))
        return f"| {measure} | " + " | ".join(cells) + f" | {s5} | {target} |"

    def each(fmt: Callable[[list[dict], dict], str]) -> list[str]:
        return [fmt(*stats[key]) for key in keys]

    def span(records: list[dict], column: str) -> str:
        return f"{min(r[column] for r in records[:-1]):.2f}–{max(r[column] for r in records[:-1]):.2f}"

    names = [title.split(" (")[0] for _, title, _, _ in refs]
    study = ["", f"## Side by side with the study, and the targets (against {names[0]})", "",
             "S5: any artery; κ per artery. One column per reference, the primary first; the targets are read "
             "against the primary.", "",
             "| measure | " + " | ".join(f"vascalc vs {n}" for n in names) + " | S5 | target |",
             "|---|" + "---|" * len(keys) + "---|---|",
             line("sensitivity, any artery", each(lambda s, r: _pct(s[-1]["sensitivity"])), "95 %"),
             line("specificity, any artery", each(lambda s, r: _pct(s[-1]["specificity"])), "98 %"),
             line("PPV, any artery", each(lambda s, r: _pct(s[-1]["ppv"])), "99 %"),
             line("NPV, any artery", each(lambda s, r: _pct(s[-1]["npv"])), "88 %"),
             line("AUC, any artery (total Agatston)", each(lambda s, r: _auc(s[-1])), "0.96"),
             line("κ per artery", each(lambda s, r: span(s, "kappa")), "0.82–0.93"),
             line("sensitivity per artery (min)", each(lambda s, r: _pct(min(x["sensitivity"] for x in s[:-1]))),
                  target="≥ 97 %"),
             line("specificity per artery (min)", each(lambda s, r: _pct(min(x["specificity"] for x in s[:-1]))),
                  target="≥ 98 %"),
             line("risk category (0/1-99/100-399/≥400) correct",
                  each(lambda s, r: f"{_pct(r['accuracy'])} (linear κ {r['kappa']:.2f})"), target="≥ 95 %"),
             line("distractor lesions counted (all cases)", [f"{int(rows['distractors_counted'].sum())} of "
                                                             f"{int(rows['n_truth_distractors'].sum())} distractors"],
                  target="0"),
             line("noise/bone specks counted (all cases)", [f"{int(rows['noise_or_bone_counted'].sum())}"]),
             line("coronary lesions given the wrong artery", [f"{int(rows['wrong_artery_counted'].sum())}"]),
             *[line(f"sensitivity / specificity vs the blur-free phantom, {r['artery']}",
                    [f"{_pct(r['ideal_sensitivity'])} / {_pct(r['ideal_specificity'])}"]) for r in blur],
             *[line(f"perfect 130-HU reader of the noisy scan vs the noise-free image, {r['artery']}: sensitivity "
                    "(ceiling) / specificity", [f"{_pct(r['reader_sensitivity'])} / {_pct(r['reader_specificity'])}"])
               for r in blur[:-1] if np.isfinite(r["reader_sensitivity"])],
             line("runtime per case, median / max (s)",
                  [f"{rows['runtime_s'].median():.2f} / {rows['runtime_s'].max():.2f}"], target="≤ 20 s")]
    extra = [{"artery": "risk_band", "reference": key, "n_cases": len(rows), "accuracy": stats[key][1]["accuracy"],
              "kappa": stats[key][1]["kappa"],
              "confusion": " | ".join(" ".join(str(int(v)) for v in counts) for counts in stats[key][1]["confusion"])}
             for key, _, _, _ in refs]
    extra += [{"artery": "distractors_counted", "n_cases": len(rows), "count": int(rows["distractors_counted"].sum())},
              {"artery": "runtime_s", "n_cases": len(rows), "median": float(rows["runtime_s"].median()),
               "max": float(rows["runtime_s"].max())}]
    summary = pd.concat([*frames, pd.DataFrame(extra)], ignore_index=True)
    summary.insert(1, "reference", summary.pop("reference"))
    return summary, "\n".join(lines + study) + "\n"


def _auc(record: dict) -> str:
    value = record.get("auc", float("nan"))
    return "—" if not np.isfinite(value) else f"{value:.3f}"


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
