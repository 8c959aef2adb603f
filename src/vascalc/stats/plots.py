"""Figures reviewers ask for: Bland–Altman, scatter with regression and identity lines, confusion
matrix and ROC curve. Each is written as PNG (150 dpi) and SVG with matplotlib's Agg backend.

Output is deterministic: the SVG hash salt and the metadata dates are fixed, so the same data give
byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as st  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from vascalc.errors import OutputError  # noqa: E402
from vascalc.stats._common import paired  # noqa: E402
from vascalc.stats.bland_altman import BlandAltmanResult  # noqa: E402
from vascalc.stats.diagnostic import RocAucResult  # noqa: E402

_RC = {"svg.hashsalt": "vascalc", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


def _save(fig: plt.Figure, stem: Path) -> tuple[Path, Path]:
    stem = Path(stem)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    for path in (png, svg):
        if path.exists():
            plt.close(fig)
            raise OutputError(f"{path} already exists; plots never overwrite files")
    try:
        fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    except OSError as error:
        raise OutputError(f"cannot write {png.parent}: {error.strerror or error}") from None
    finally:
        plt.close(fig)
    return png, svg


def bland_altman_plot(reference: Any, predicted: Any, result: BlandAltmanResult, stem: Path, *,
                      title: str = "", unit: str = "") -> tuple[Path, Path]:
    """Difference (predicted − reference) against the pair mean, with bias, limits and their CIs."""
    y, yhat, _ = paired(reference, predicted)
    mean = (y + yhat) / 2
    diff = yhat - y
    if result.percentage:
        keep = mean != 0
        diff, mean = 100 * diff[keep] / mean[keep], mean[keep]
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.scatter(mean, diff, s=14, color="#1f4e79", alpha=0.8, linewidths=0)
        lines = ((result.bias, result.bias_ci_low, result.bias_ci_high, "bias", "-"),
                 (result.loa_lower, result.loa_lower_ci_low, result.loa_lower_ci_high, "lower LoA", "--"),
                 (result.loa_upper, result.loa_upper_ci_low, result.loa_upper_ci_high, "upper LoA", "--"))
        for value, low, high, label, style in lines:
            ax.axhline(value, color="#c00000", linestyle=style, linewidth=1)
            ax.axhspan(low, high, color="#c00000", alpha=0.08, linewidth=0)
            ax.annotate(f"{label} {value:.3g}", xy=(1.0, value), xycoords=("axes fraction", "data"),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=8, color="#c00000")
        ax.axhline(0, color="grey", linewidth=0.6)
        suffix = f" ({unit})" if unit else ""
        ax.set_xlabel(f"mean of reference and predicted{suffix}")
        ax.set_ylabel("difference, % of mean" if result.percentage else f"predicted − reference{suffix}")
        ax.set_title(title or "Bland–Altman")
        return _save(fig, stem)


def scatter_plot(reference: Any, predicted: Any, stem: Path, *, title: str = "", unit: str = "",
                 reference_name: str = "reference", predicted_name: str = "predicted") -> tuple[Path, Path]:
    """Predicted against reference with the identity line and the OLS regression line (equation in the legend)."""
    y, yhat, _ = paired(reference, predicted)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(y, yhat, s=14, color="#1f4e79", alpha=0.8, linewidths=0)
        lo, hi = float(min(y.min(), yhat.min())), float(max(y.max(), yhat.max()))
        span = np.array([lo, hi])
        ax.plot(span, span, color="grey", linewidth=1, linestyle=":", label="identity")
        if np.ptp(y) > 0:
            fit = st.linregress(y, yhat)
            ax.plot(span, fit.intercept + fit.slope * span, color="#c00000", linewidth=1,
                    label=f"y = {fit.slope:.3f}x {'+' if fit.intercept >= 0 else '−'} {abs(fit.intercept):.3g}, "
                          f"r² = {fit.rvalue ** 2:.3f}")
        suffix = f" ({unit})" if unit else ""
        ax.set_xlabel(reference_name + suffix)
        ax.set_ylabel(predicted_name + suffix)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(frameon=False, loc="upper left")
        ax.set_title(title or f"{predicted_name} vs {reference_name}")
        return _save(fig, stem)


def confusion_matrix_plot(confusion: Sequence[Sequence[int]], labels: Sequence[Any], stem: Path, *,
                          title: str = "") -> tuple[Path, Path]:
    """Counts with row percentages; rows = reference, columns = prediction (§D.8)."""
    cm = np.asarray(confusion, dtype=float)
    row_share = cm / np.where(cm.sum(axis=1, keepdims=True) == 0, 1, cm.sum(axis=1, keepdims=True))
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.9 * len(labels)))
        ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, f"{int(count)}\n{100 * row_share[i, j]:.0f}%", ha="center", va="center", fontsize=8,
                    color="white" if row_share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), [str(v) for v in labels], rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), [str(v) for v in labels])
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(title or "Confusion matrix")
        return _save(fig, stem)


def roc_plot(curves: Sequence[tuple[str, Any, Any, RocAucResult]], stem: Path, *, title: str = "") -> tuple[Path, Path]:
    """ROC curves (scikit-learn ``roc_curve``) of several methods: (name, labels, scores, AUC result)."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for name, labels, scores, auc in curves:
            y, s, _ = paired(labels, scores)
            fpr, tpr, _ = roc_curve(y.astype(int), s)
            ax.plot(fpr, tpr, linewidth=1.2,
                    label=f"{name}: AUC {auc.auc:.3f} ({auc.ci_low:.3f}–{auc.ci_high:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("1 − specificity")
        ax.set_ylabel("sensitivity")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.legend(frameon=False, loc="lower right", fontsize=8)
        ax.set_title(title or "ROC")
        return _save(fig, stem)
