"""Calcium accuracy against phantom truth: threshold scores vs partial-volume-aware scores.

``vascalc bench accuracy`` builds a deterministic cohort of digital phantoms (vascular, non-contrast
and contrast; QRM-like inserts with calibration rods) over a grid of slice thickness × noise, scores
each with every detection policy (SCORING.md A.2) and compares, per vessel, the classic threshold
volume/mass and the partial-volume-aware integrated volume/mass and volume-fraction mass (A.7) with
the exact truth: MAPE, Pearson r, R² (both definitions, §D.3) and Bland–Altman bias and limits
(§D.5), plus lesion detection by true plaque size and the false calcium of calcium-free vessels.

Geometry [T]: in-plane 0.8 mm (a 512² body CT at a 410 mm FOV), cropped to 256 × 256 (205 mm, all
arteries of the phantom's abdomen–pelvis) and to the top 240 mm (T12 to the external iliacs), so a
case builds in a few seconds; contiguous slices (increment = thickness), 1 mm in-plane PSF.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from vascalc.errors import InputError

ProgressCallback = Callable[[str], None]

#: vascular crop (mm along z from the top, voxels in-plane) and in-plane spacing (mm) [T]
VASCULAR_Z_MM = 240.0
VASCULAR_INPLANE = 256
INPLANE_MM = 0.8
#: CTA lumen (HU) of the contrast phantoms
CONTRAST_LUMEN_HU = 350.0
#: vessels with at least this much true calcium enter the MAPE (the issue's target set)
MIN_TRUE_VOLUME_MM3 = 5.0
#: vessels with at least this much true calcium form the "large" pooled rows
LARGE_VOLUME_MM3 = 100.0
#: true plaque volume bins (mm³) for the detection table
SIZE_BINS_MM3 = (0.0, 5.0, 20.0, 100.0, math.inf)
QUANTITIES = {  # quantity → (cases.csv column, truth column, unit)
    "classic_volume": ("classic_volume_mm3", "truth_volume_mm3", "mm³"),
    "integrated_volume": ("integrated_volume_mm3", "truth_volume_mm3", "mm³"),
    "classic_mass": ("classic_mass_mg", "truth_mass_mg", "mg"),
    "integrated_mass": ("integrated_mass_mg", "truth_mass_mg", "mg"),
    "volume_fraction_mass": ("volume_fraction_mass_mg", "truth_mass_mg", "mg"),
    "blur_corrected_volume": ("blur_corrected_volume_mm3", "truth_volume_mm3", "mm³"),
}


@dataclass(frozen=True)
class CohortCase:
    """One phantom of the cohort: its kind, seed and acquisition."""

    case_id: str
    kind: str                 # vascular | inserts
    seed: int
    contrast: bool
    slice_thickness_mm: float
    noise_sd_hu: float


@dataclass(frozen=True)
class VesselRow:
    """One case × structure × detection policy: truth and every measured quantity (``cases.csv``)."""

    case_id: str
    kind: str
    seed: int
    contrast: bool
    slice_thickness_mm: float
    noise_sd_hu: float
    method: str
    structure: str
    truth_volume_mm3: float
    truth_mass_mg: float
    truth_n_lesions: int
    classic_volume_mm3: float
    classic_mass_mg: float
    agatston: float
    integrated_volume_mm3: float
    integrated_mass_mg: float
    volume_fraction_mass_mg: float
    pv_reference: str
    # the blur-corrected PV volume (:func:`vascalc.calcium.pv.blurred_layer_fit` per cluster), NaN
    # where the scoring result does not report one
    blur_corrected_volume_mm3: float = math.nan


@dataclass(frozen=True)
class SummaryRow:
    """Agreement of one quantity with truth for one method × slice thickness × noise (``summary.csv``).

    ``n`` vessels with ≥ 5 mm³ of true calcium; ``mape_percent`` (§D.3, zero references excluded) and
    ``median_ape_percent`` (the median of the same per-vessel errors);
    ``pearson_r``; ``r2_identity`` (1 − RSS/TSS about y = x) and ``r2_pearson`` (r²); Bland–Altman
    ``ba_bias``/``ba_loa_low``/``ba_loa_high`` in the quantity's unit (d = measured − truth, 1.96 SD)
    and ``ba_bias_percent`` (% of the pair mean). ``zero_n``: calcium-free vessels;
    ``zero_max``: their largest measured value (mm³ or mg). NaN where undefined (too few vessels).
    ``slice_thickness_mm``/``noise_sd_hu`` are NaN in pooled rows (``pooled`` names what is pooled).
    """

    kind: str
    method: str
    quantity: str
    unit: str
    slice_thickness_mm: float
    noise_sd_hu: float
    pooled: str
    n: int
    mape_percent: float
    median_ape_percent: float
    pearson_r: float
    r2_identity: float
    r2_pearson: float
    ba_bias: float
    ba_loa_low: float
    ba_loa_high: float
    ba_bias_percent: float
    zero_n: int
    zero_max: float


@dataclass(frozen=True)
class DetectionRow:
    """Lesion detection by true plaque volume for one method × slice thickness (``detection.csv``)."""

    kind: str
    method: str
    slice_thickness_mm: float
    size_bin_mm3: str
    n_plaques: int
    n_detected: int
    detection_rate: float


@dataclass(frozen=True)
class AccuracyReport:
    """What :func:`run_accuracy` wrote: the rows and the files (paths inside the output folder)."""

    cases: tuple[CohortCase, ...]
    rows: tuple[VesselRow, ...]
    summary: tuple[SummaryRow, ...]
    detection: tuple[DetectionRow, ...]
    files: tuple[str, ...]


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """``"1,2,3"`` → (1.0, 2.0, 3.0); every value must be positive."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--{what} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v < float("inf") for v in values):
        raise InputError(f"--{what} must be positive finite numbers, got {text!r}")
    return values


def build_cohort(n_cases: int, seed: int, thicknesses_mm: Sequence[float], noises_hu: Sequence[float],
                 kind: str = "vascular") -> tuple[CohortCase, ...]:
    """The cohort: per (thickness, noise) cell, ``n_cases`` vascular phantoms (alternately
    non-contrast and contrast, so ``n_cases`` ≥ 2 gives both) and/or one insert phantom.

    Seeds come from ``numpy.random.SeedSequence([seed, cell, i])``, so a case's phantom does not
    change when the grid grows.
    """
    if n_cases < 1:
        raise InputError("--cases must be at least 1")
    if seed < 0:  # SeedSequence takes non-negative entropy only
        raise InputError(f"--seed must be 0 or a positive integer, got {seed}")
    if kind not in ("vascular", "inserts", "both"):
        raise InputError(f"--kind must be vascular, inserts or both, got {kind!r}")
    cases = []
    for dz in thicknesses_mm:
        for noise in noises_hu:
            cell = int(round(dz * 100)) * 10_000 + int(round(noise * 10))
            kinds = (["vascular"] * n_cases if kind in ("vascular", "both") else []) + \
                (["inserts"] if kind in ("inserts", "both") else [])
            for i, k in enumerate(kinds):
                s = int(np.random.SeedSequence([seed, cell, i]).generate_state(1)[0] % 2**31)
                contrast = k == "vascular" and i % 2 == 1
                tag = "inserts" if k == "inserts" else ("cta" if contrast else "nc")
                cases.append(CohortCase(f"{tag}_dz{dz:g}_n{noise:g}_{i}", k, s, contrast, float(dz), float(noise)))
    return tuple(cases)


def make_case_phantom(case: CohortCase):
    """The phantom of one case (see the module docstring for the geometry)."""
    from vascalc.phantoms import make_insert_phantom, make_vascular_phantom

    dz = case.slice_thickness_mm
    if case.kind == "inserts":
        nz = int(math.ceil(14.0 / dz)) + 2     # the 5 mm inserts plus room for the slice profile
        return make_insert_phantom(case.seed, shape=(nz, 224, 224), spacing_mm=(dz, INPLANE_MM, INPLANE_MM),
                                   noise_sd_hu=case.noise_sd_hu)
    nz = int(round(VASCULAR_Z_MM / dz))
    return make_vascular_phantom(case.seed, shape=(nz, VASCULAR_INPLANE, VASCULAR_INPLANE),
                                 spacing_mm=(dz, INPLANE_MM, INPLANE_MM), noise_sd_hu=case.noise_sd_hu,
                                 lumen_hu=CONTRAST_LUMEN_HU if case.contrast else 40.0)


def methods_for(case: CohortCase, methods: Sequence[str]) -> list[str]:
    """Policies that apply to a case: ``agatston`` on non-contrast scans and inserts, the others
    (``adaptive``, ``hu=N``, ``window8bit``) on contrast scans."""
    if case.kind == "inserts" or not case.contrast:
        return [m for m in methods if m.split(":")[0] == "agatston"]
    return [m for m in methods if m.split(":")[0] != "agatston"]


def score_case(case: CohortCase, phantom, method: str, pv_background: str | None = None
               ) -> tuple[list[VesselRow], np.ndarray]:
    """Score one phantom with one policy; returns the per-structure rows and, per true plaque
    (index id − 1), whether any of its voxels lies in a detected lesion. ``pv_background``: the
    PV background model (:class:`ScoringOptions`; None = its default)."""
    from vascalc.calcium import ScoringOptions, score_calcium
    from vascalc.calcium.options import CalibrationReference
    from vascalc.workflows.ct import score_ct

    truth = phantom.truth
    extra = {} if pv_background is None else {"pv_background": pv_background}
    c_ha = float(truth["hu_model"]["calibration_factor_mg_cm3_per_hu"])
    if case.kind == "inserts":
        # each insert's own (cylinder) mask is its "vessel"; the rods calibrate the PV reference, and
        # the contrast guard (meant for a vessel lumen) would read the insert itself, so it is off
        lm = phantom.labels
        ins = {i: n for i, n in lm.names.items() if n.startswith("insert_")}
        rods = truth["rods"]
        cal = CalibrationReference(tuple(r["density_mg_cm3"] for r in rods),
                                   tuple(r["hu_mean_measured"] for r in rods))
        vessels = np.where(np.isin(lm.labels, list(ins)), lm.labels, 0)
        options = ScoringOptions(force=True, mass_calibration_mg_per_cm3_per_hu=c_ha, **extra)
        calcium = score_calcium(phantom.volume.hu, vessels, ins, phantom.volume.grid, method, options,
                                kvp=phantom.volume.info.kvp, slice_thickness_mm=case.slice_thickness_mm,
                                calibration=cal)
        reference = "rods"
    else:
        options = ScoringOptions(mass_calibration_mg_per_cm3_per_hu=c_ha, **extra)
        calcium = score_ct(phantom.volume, phantom.labels, method=method, options=options, regions=(),
                           case_id=case.case_id).calcium
        reference = "default"
    rows = []
    for s in calcium.structures:
        if s.kind != "vessel" or s.name not in truth["structures"]:
            continue
        t = phantom.truth_for(s.name)
        rows.append(VesselRow(
            case.case_id, case.kind, case.seed, case.contrast, case.slice_thickness_mm, case.noise_sd_hu, method,
            s.name, t.calcium_volume_mm3, t.mass_mg, t.n_lesions, s.calcium_volume_mm3,
            float("nan") if s.mass_mg is None else s.mass_mg, s.agatston_3mm,
            _num(s.integrated_volume_mm3), _num(s.integrated_mass_mg), _num(s.volume_fraction_mass_mg), reference,
            _num(s.pv_volume_blur_corrected_mm3)))
    detected = plaque_detection(phantom.plaque_ids, calcium.lesion_labels > 0, len(truth["plaques"]))
    return rows, detected


def plaque_detection(plaque_ids: np.ndarray, calcium: np.ndarray, n_plaques: int) -> np.ndarray:
    """Per plaque id 1..n: True when at least one voxel it covers is in the calcium mask."""
    ids = plaque_ids[calcium]
    return np.bincount(ids[ids > 0], minlength=n_plaques + 1)[1:n_plaques + 1] > 0


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def summarise(rows: Sequence[VesselRow]) -> list[SummaryRow]:
    """Agreement per method × quantity × thickness × noise, then pooled over noise per thickness and
    over every case with slices ≤ 3 mm (the issue's target set), and that last set restricted to vessels
    with ≥ 100 mm³ (plus the calcium-free ones)."""
    from vascalc.stats import bland_altman, error_metrics, pearson

    out: list[SummaryRow] = []
    keys = sorted({(r.kind, r.method) for r in rows}, key=lambda k: (k[0] != "vascular", k))
    cells = sorted({(r.slice_thickness_mm, r.noise_sd_hu) for r in rows})
    thick = sorted({r.slice_thickness_mm for r in rows})
    groups: list[tuple[str, float, float, Callable[[VesselRow], bool]]] = []
    groups += [("", dz, nz, lambda r, dz=dz, nz=nz: (r.slice_thickness_mm, r.noise_sd_hu) == (dz, nz))
               for dz, nz in cells]
    groups += [("noise", dz, math.nan, lambda r, dz=dz: r.slice_thickness_mm == dz) for dz in thick]
    groups.append(("thickness<=3mm,noise", math.nan, math.nan, lambda r: r.slice_thickness_mm <= 3.0 + 1e-9))
    # the same, for vessels with ≥ 100 mm³ only: where partial volume is a small part of the burden
    groups.append(("thickness<=3mm,noise,>=100mm3", math.nan, math.nan,
                   lambda r: r.slice_thickness_mm <= 3.0 + 1e-9 and (r.truth_volume_mm3 >= LARGE_VOLUME_MM3
                                                                   or r.truth_volume_mm3 == 0.0)))
    for kind, method in keys:
        for pooled, dz, nz, keep in groups:
            sel = [r for r in rows if r.kind == kind and r.method == method and keep(r)]
            if not sel:
                continue
            for quantity, (col, truth_col, unit) in QUANTITIES.items():
                if not any(math.isfinite(getattr(r, col)) for r in sel):
                    continue      # a quantity this scoring result does not report
                out.append(_agreement(sel, kind, method, quantity, col, truth_col, unit, dz, nz, pooled,
                                      error_metrics, pearson, bland_altman))
    return out


def _agreement(sel, kind, method, quantity, col, truth_col, unit, dz, nz, pooled, error_metrics, pearson,
               bland_altman) -> SummaryRow:
    y = np.array([getattr(r, truth_col) for r in sel if r.truth_volume_mm3 >= MIN_TRUE_VOLUME_MM3])
    yhat = np.array([getattr(r, col) for r in sel if r.truth_volume_mm3 >= MIN_TRUE_VOLUME_MM3])
    zero = np.array([getattr(r, col) for r in sel if r.truth_volume_mm3 == 0.0])
    zero = zero[np.isfinite(zero)]
    nan = math.nan
    mape = mdape = r = r2i = r2p = bias = lo = hi = bias_pct = nan
    ok = np.isfinite(y) & np.isfinite(yhat)
    y, yhat = y[ok], yhat[ok]
    if y.size >= 1:
        mdape = float(np.median(100 * np.abs(yhat - y) / y))
    if y.size >= 2:
        em = error_metrics(y, yhat)
        mape, r2i, r2p = em.mape_percent, em.r2_identity, em.r2_pearson
        # Pearson needs 3 pairs (vascalc.stats); with 2 vessels r is ±1 by construction anyway
        if y.size >= 3 and np.ptp(y) > 0 and np.ptp(yhat) > 0:
            r = pearson(y, yhat).r
    elif y.size == 1:
        mape = float(100 * abs(yhat[0] - y[0]) / y[0])
    if y.size >= 3:
        ba = bland_altman(y, yhat)
        bias, lo, hi = ba.bias, ba.loa_lower, ba.loa_upper
        if np.all((y + yhat) != 0):
            bias_pct = bland_altman(y, yhat, percentage=True).bias
    return SummaryRow(kind, method, quantity, unit, dz, nz, pooled, int(y.size), mape, mdape, r, r2i, r2p, bias, lo, hi,
                      bias_pct, int(zero.size), float(np.max(np.abs(zero))) if zero.size else nan)


def detection_table(records: Iterable[tuple[str, str, float, np.ndarray, np.ndarray]]) -> list[DetectionRow]:
    """Detection rate per phantom kind × method × thickness × true-size bin from (kind, method,
    thickness, true plaque volumes mm³, detected flags) per scored case."""
    acc: dict[tuple[str, str, float, int], list[int]] = {}
    for kind, method, dz, volumes, detected in records:
        bins = np.digitize(volumes, SIZE_BINS_MM3[1:-1], right=True)
        for b in range(len(SIZE_BINS_MM3) - 1):
            cell = acc.setdefault((kind, method, dz, b), [0, 0])
            cell[0] += int((bins == b).sum())
            cell[1] += int(detected[bins == b].sum())
    out = []
    for (kind, method, dz, b), (n, k) in sorted(acc.items(), key=lambda kv: (kv[0][0] != "vascular", kv[0])):
        lo, hi = SIZE_BINS_MM3[b], SIZE_BINS_MM3[b + 1]
        label = f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">{lo:g}"
        out.append(DetectionRow(kind, method, dz, label, n, k, k / n if n else math.nan))
    return out


def _write_csv(path: Path, rows: Sequence, cls) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        names = [fl.name for fl in fields(cls)]
        w.writerow(names)
        for row in rows:
            d = asdict(row)
            w.writerow([_fmt(d[n]) for n in names])


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def summary_markdown(summary: Sequence[SummaryRow], detection: Sequence[DetectionRow], command: str) -> str:
    """Markdown tables of the summary (one line per method × quantity × cell) and of detection."""
    def f(v, nd=1):
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"

    lines = [f"Produced by `{command}`.", "",
             f"Vessels with ≥ {MIN_TRUE_VOLUME_MM3:g} mm³ of true calcium; MAPE in %; r = Pearson; "
             "R²(id) = 1 − RSS/TSS about y = x; R²(r²) = squared Pearson r; Bland–Altman d = measured − truth "
             "(bias and 95 % limits in the quantity's unit; bias % of the pair mean); zero max = largest "
             "value measured in a calcium-free vessel.", "",
             "| phantoms | method | quantity | slice mm | noise HU | n | MAPE % | median APE % | r | R²(id) | R²(r²) | BA bias | BA limits "
             "| bias % | zero n | zero max |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        dz = ("≤3 (all)" if s.pooled.startswith("thickness") else f(s.slice_thickness_mm, 0)) + \
            (", vessels ≥ 100 mm³" if s.pooled.endswith("100mm3") else "")
        nz = "all" if "noise" in s.pooled else f(s.noise_sd_hu, 0)
        lines.append(f"| {s.kind} | {s.method} | {s.quantity} ({s.unit}) | {dz} | {nz} | {s.n} | {f(s.mape_percent)} | {f(s.median_ape_percent)} | "
                     f"{f(s.pearson_r, 3)} | {f(s.r2_identity, 3)} | {f(s.r2_pearson, 3)} | {f(s.ba_bias)} | "
                     f"{f(s.ba_loa_low)} to {f(s.ba_loa_high)} | {f(s.ba_bias_percent)} | {s.zero_n} | "
                     f"{f(s.zero_max, 2)} |")
    lines += ["", "Lesion detection (a plaque is detected when any voxel it covers is in a scored lesion):", "",
              "| phantoms | method | slice mm | true volume mm³ | plaques | detected | rate |",
              "|---|---|---|---|---|---|---|"]
    for d in detection:
        lines.append(f"| {d.kind} | {d.method} | {d.slice_thickness_mm:g} | {d.size_bin_mm3} | {d.n_plaques} | "
                     f"{d.n_detected} | {f(100 * d.detection_rate, 0) if d.n_plaques else '–'} % |")
    return "\n".join(lines) + "\n"


def agreement_plots(rows: Sequence[VesselRow], out: Path) -> list[str]:
    """Per method: scatter and Bland–Altman of volume and mass vs truth, classic threshold vs
    partial-volume-aware (vessels with ≥ 5 mm³, slices ≤ 3 mm). PNG, 120 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for kind, method in sorted({(r.kind, r.method) for r in rows}):
        sel = [r for r in rows if r.kind == kind and r.method == method and r.truth_volume_mm3 >= MIN_TRUE_VOLUME_MM3
               and r.slice_thickness_mm <= 3.0 + 1e-9]
        if len(sel) < 2:
            continue
        fig, axes = plt.subplots(2, 2, figsize=(10, 9))
        for row_i, (what, pairs, unit) in enumerate((
                ("volume", (("classic_volume_mm3", "threshold"), ("integrated_volume_mm3", "PV integrated")), "mm³"),
                ("mass", (("classic_mass_mg", "threshold"), ("integrated_mass_mg", "PV integrated")), "mg"))):
            truth = np.array([r.truth_volume_mm3 if what == "volume" else r.truth_mass_mg for r in sel])
            ax_s, ax_b = axes[row_i]
            for (col, label), colour in zip(pairs, ("tab:orange", "tab:blue")):
                meas = np.array([getattr(r, col) for r in sel])
                ok = np.isfinite(meas)
                ax_s.scatter(truth[ok], meas[ok], s=14, alpha=0.7, color=colour, label=label)
                mean = (truth[ok] + meas[ok]) / 2
                d = meas[ok] - truth[ok]
                ax_b.scatter(mean, d, s=14, alpha=0.7, color=colour, label=label)
                if d.size >= 3:
                    b, sd = d.mean(), d.std(ddof=1)
                    for v, ls in ((b, "-"), (b - 1.96 * sd, "--"), (b + 1.96 * sd, "--")):
                        ax_b.axhline(v, color=colour, ls=ls, lw=1)
            top = float(np.nanmax(truth)) * 1.1
            ax_s.plot([0, top], [0, top], "k:", lw=1)
            ax_s.set(xlabel=f"true {what} ({unit})", ylabel=f"measured {what} ({unit})", title=f"{kind}, {method}: {what}")
            ax_b.axhline(0, color="k", lw=0.5)
            ax_b.set(xlabel=f"mean of measured and true ({unit})", ylabel=f"measured − true ({unit})",
                     title=f"Bland–Altman, {what} (bias ± 1.96 SD)")
            ax_s.legend(fontsize=8)
            ax_b.legend(fontsize=8)
        fig.tight_layout()
        name = f"agreement_{kind}_{''.join(c if c.isalnum() else '_' for c in method)}.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(name)
    return written


def run_accuracy(output: Path | str, *, n_cases: int = 2, seed: int = 0,
                 thicknesses_mm: Sequence[float] = (1.0, 2.0, 3.0), noises_hu: Sequence[float] = (10.0, 20.0),
                 methods: Sequence[str] = ("agatston", "adaptive"), kind: str = "vascular",
                 command: str = "vascalc bench accuracy", progress: ProgressCallback | None = None,
                 pv_background: str | None = None) -> AccuracyReport:
    """Build the cohort, score every case with every applicable policy, write ``cases.csv``,
    ``summary.csv``, ``summary.md``, ``detection.csv`` and the agreement PNGs into ``output``
    (which must not exist or be empty). ``pv_background`` picks the PV background model by name
    (``model``, ``compartments``, …; None = the :class:`ScoringOptions` default)."""
    from vascalc.calcium.policies import parse_method
    from vascalc.report.output_folder import check_output_folder, prepare_output_folder

    if not methods:
        raise InputError("--methods is empty; give policies such as agatston,adaptive")
    if len(set(methods)) != len(methods):
        # a repeated policy would be scored twice and counted twice in every pooled row
        raise InputError(f"--methods names a policy twice ({', '.join(methods)}); give each once")
    for m in methods:
        parse_method(m)       # a bad policy fails before any work
    check_output_folder(output)
    cases = build_cohort(n_cases, seed, thicknesses_mm, noises_hu, kind)
    report = progress or (lambda message: None)
    rows: list[VesselRow] = []
    det_records = []
    for case in cases:
        report(f"{case.case_id}: building phantom")
        phantom = make_case_phantom(case)
        volumes = np.array([p["volume_mm3"] for p in phantom.truth["plaques"]], dtype=float)
        for method in methods_for(case, methods):
            report(f"{case.case_id}: scoring ({method})")
            case_rows, detected = score_case(case, phantom, method, pv_background)
            rows.extend(case_rows)
            det_records.append((case.kind, method, case.slice_thickness_mm, volumes, detected))
    if not rows:
        raise InputError("no case was scored: check that --methods holds agatston (non-contrast, inserts) "
                         "and/or a contrast policy such as adaptive or hu=<N>")
    summary = summarise(rows)
    detection = detection_table(det_records)
    out = prepare_output_folder(output)
    _write_csv(out / "cases.csv", rows, VesselRow)
    _write_csv(out / "summary.csv", summary, SummaryRow)
    _write_csv(out / "detection.csv", detection, DetectionRow)
    (out / "summary.md").write_text(summary_markdown(summary, detection, command), encoding="utf-8")
    plots = agreement_plots(rows, out)
    files = ("cases.csv", "summary.csv", "summary.md", "detection.csv", *plots)
    return AccuracyReport(tuple(cases), tuple(rows), tuple(summary), tuple(detection), files)
