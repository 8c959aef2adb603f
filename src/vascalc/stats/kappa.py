"""Agreement on categories: Cohen's κ (unweighted, linear, quadratic), Fleiss' κ and Randolph's
free-marginal κ (SCORING.md §D.7).

Library: statsmodels ``cohens_kappa`` computes κ_w, its Fleiss–Cohen–Everitt standard errors, z and
p (it reproduces the SAS output of §E.2; the CI is κ ± z·SE at the requested level); statsmodels ``fleiss_kappa`` computes Fleiss' κ and
Randolph's κ (``method="randolph"``). Hand-written: the contingency table over the *declared*
categories (unobserved ones included, §D.7.1), p_o/p_e for reporting, and the percentile bootstrap
CI of the multirater κs (§D.7.3 [T]).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa as _sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, check_confidence, require_n, z_quantile

Weights = Literal["none", "linear", "quadratic"]


@dataclass(frozen=True)
class CohenKappaResult(ResultMixin):
    """Cohen's κ of two raters with SE, CI (κ ± z·SE), SE under H0, z and two-sided p (§D.7.1).

    Rows of the table are the reference (rater 1), columns the prediction (rater 2), in the order of
    ``categories``. Weights are agreement weights on category indices (linear: Cicchetti–Allison;
    quadratic: Fleiss–Cohen).
    """

    weights: str
    kappa: float
    se: float
    ci_low: float
    ci_high: float
    confidence: float
    se0: float
    z: float
    p_value: float
    p_observed: float
    p_expected: float
    n: int
    n_dropped_missing: int
    categories: tuple
    table: tuple[tuple[int, ...], ...]
    flags: tuple[str, ...]

    @property
    def interpretation(self) -> str:
        """Landis & Koch [R59] band of κ."""
        return landis_koch(self.kappa)


@dataclass(frozen=True)
class MultiraterKappaResult(ResultMixin):
    """Fleiss' κ or Randolph's free-marginal κ of N subjects × n raters with a bootstrap CI (§D.7.2–3).

    ``p_bar`` is the mean observed agreement P̄, ``p_expected`` the chance agreement (Σ p_j² for
    Fleiss, 1/q for Randolph). The CI is the percentile bootstrap over subjects with ``seed``.
    """

    method: str
    kappa: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_method: str
    n_bootstrap: int
    seed: int
    p_bar: float
    p_expected: float
    n_subjects: int
    n_raters: int
    n_categories: int
    flags: tuple[str, ...]


def landis_koch(kappa: float) -> str:
    """Landis & Koch (1977) label: < 0 poor, ≤ .20 slight, ≤ .40 fair, ≤ .60 moderate, ≤ .80 substantial, else almost perfect."""
    if not np.isfinite(kappa):
        return "undefined"
    for limit, label in ((0.0, "poor"), (0.20, "slight"), (0.40, "fair"), (0.60, "moderate"), (0.80, "substantial")):
        if kappa < limit or (limit > 0 and kappa <= limit):
            return label
    return "almost perfect"


def contingency_table(reference: Any, predicted: Any, categories: Sequence | None = None
                      ) -> tuple[np.ndarray, tuple, int]:
    """Counts n_ij (rows reference, columns prediction) over the declared ``categories``.

    Without ``categories`` the sorted union of observed values is used. Pairs with a missing value
    (None/NaN/empty) are dropped and counted; a value outside ``categories`` raises InputError.
    """
    ref = list(reference)
    pred = list(predicted)
    if len(ref) != len(pred):
        raise InputError(f"reference and predicted have different lengths ({len(ref)} and {len(pred)})")

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) or (isinstance(v, str) and not v.strip())

    keep = [not (missing(a) or missing(b)) for a, b in zip(ref, pred)]
    ref = [a for a, k in zip(ref, keep) if k]
    pred = [b for b, k in zip(pred, keep) if k]
    dropped = len(keep) - len(ref)
    if categories is None:
        try:
            categories = sorted(set(ref) | set(pred))
        except TypeError:
            raise InputError("category labels mix types that cannot be ordered; pass categories explicitly") from None
    categories = tuple(categories)
    index = {c: i for i, c in enumerate(categories)}
    unknown = sorted({str(v) for v in ref + pred if v not in index})
    if unknown:
        raise InputError(f"categories {', '.join(unknown[:5])} are not among the declared categories "
                         f"{', '.join(map(str, categories))}")
    k = len(categories)
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, ([index[v] for v in ref], [index[v] for v in pred]), 1)
    return table, categories, dropped


def cohen_kappa(reference: Any, predicted: Any, *, weights: Weights = "none", categories: Sequence | None = None,
                confidence: float = 0.95) -> CohenKappaResult:
    """Cohen's κ of two raters' labels (§D.7.1); see :func:`cohen_kappa_table`."""
    table, categories, dropped = contingency_table(reference, predicted, categories)
    result = cohen_kappa_table(table, weights=weights, confidence=confidence, categories=categories)
    if dropped:
        return CohenKappaResult(**{**result.__dict__, "n_dropped_missing": dropped,
                                   "flags": result.flags + (f"missing_dropped:{dropped}",)})
    return result


def cohen_kappa_table(table: Any, *, weights: Weights = "none", confidence: float = 0.95,
                      categories: Sequence | None = None) -> CohenKappaResult:
    """Cohen's κ from a K × K count table (rows reference, columns prediction; §D.7.1, §E.2).

    Needs K ≥ 2 and 3 rated cases. p_e = 1 (both raters used one category) → κ undefined: NaN with
    ``chance_agreement_is_1``.
    """
    check_confidence(confidence)
    if weights not in ("none", "linear", "quadratic"):
        raise InputError(f"unknown κ weights {weights!r}; use 'none', 'linear' or 'quadratic'")
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
        raise InputError(f"Cohen's κ needs a square table of at least 2 categories, got shape {t.shape}")
    if (t < 0).any() or not np.all(np.isfinite(t)):
        raise InputError("Cohen's κ table must hold non-negative counts")
    n = int(t.sum())
    require_n(n, 3, "Cohen's κ")
    k = t.shape[0]
    categories = tuple(categories) if categories is not None else tuple(range(k))
    i = np.arange(k)
    w = {"none": np.eye(k), "linear": 1 - np.abs(i[:, None] - i) / (k - 1),
         "quadratic": 1 - (i[:, None] - i) ** 2 / (k - 1) ** 2}[weights]
    p = t / n
    p_o = float((w * p).sum())
    p_e = float((w * np.outer(p.sum(axis=1), p.sum(axis=0))).sum())
    nan = float("nan")
    table_out = tuple(tuple(int(v) for v in row) for row in t)
    if np.isclose(p_e, 1.0):
        return CohenKappaResult(weights, nan, nan, nan, nan, confidence, nan, nan, nan, p_o, p_e, n, 0,
                                categories, table_out, ("chance_agreement_is_1",))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # A zero null variance (one rater used a single category) makes statsmodels divide by 0 for
        # z; that case is flagged below instead of warned about.
        warnings.simplefilter("ignore", RuntimeWarning)
        sm = _sm_cohens_kappa(t, wt=None if weights == "none" else weights)
    flags = []
    if not np.isclose(sm.kappa, (p_o - p_e) / (1 - p_e)):
        # Should never happen: statsmodels and §D.7.1 define the same κ; refuse to report either.
        raise RuntimeError("statsmodels κ disagrees with the SCORING.md §D.7.1 definition")
    se0 = float(sm.std_kappa0)
    if se0 == 0:
        flags.append("zero_null_variance")
    # statsmodels fixes its interval at 95 %; the same SE gives any confidence level.
    z = z_quantile(confidence)
    kappa, se = float(sm.kappa), float(sm.std_kappa)
    low, high = kappa - z * se, kappa + z * se
    if low < -1 or high > 1:
        # The Wald interval can leave κ's range near perfect agreement; report it inside [−1, 1], flagged.
        flags.append("ci_clipped")
        low, high = max(low, -1.0), min(high, 1.0)
    return CohenKappaResult(weights, kappa, se, low, high, confidence, se0, float(sm.z_value) if se0 else nan,
                            float(sm.pvalue_two_sided) if se0 else nan, p_o, p_e, n, 0, categories, table_out,
                            tuple(flags))


#: Most distinct categories a rating table may hold (AAC-24 has 25 scores, CAC risk bands 5).
MAX_CATEGORIES = 100


def category_counts(ratings: Any, categories: Sequence | None = None) -> tuple[np.ndarray, tuple]:
    """Subjects × categories count table n_ij from a subjects × raters array of labels.

    Every subject must be rated by the same number of raters (missing ratings → InputError).
    """
    r = np.asarray(ratings, dtype=object)
    if r.ndim != 2 or r.shape[1] < 2:
        raise InputError(f"multirater κ needs a subjects × raters table with at least 2 raters, got shape {r.shape}")
    flat = r.ravel().tolist()
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in flat):
        raise InputError("multirater κ needs every subject rated by every rater; remove subjects with missing ratings")
    if categories is None:
        categories = sorted(set(flat))
    categories = tuple(categories)
    if len(categories) > MAX_CATEGORIES:
        # continuous scores given as ratings: κ would be meaningless and the table huge
        raise InputError(f"the ratings hold {len(categories)} different values; κ needs categories (at most "
                         f"{MAX_CATEGORIES}): check the columns, or use 'vascalc stats agreement' for continuous scores")
    index = {c: j for j, c in enumerate(categories)}
    unknown = sorted({str(v) for v in flat if v not in index})
    if unknown:
        raise InputError(f"ratings {', '.join(unknown[:5])} are not among the declared categories")
    codes = np.array([index[v] for v in flat]).reshape(r.shape)
    k = len(categories)
    rows = np.repeat(np.arange(r.shape[0]), r.shape[1])
    counts = np.bincount(rows * k + codes.ravel(), minlength=r.shape[0] * k).reshape(r.shape[0], k)
    return counts, categories


def multirater_kappa(counts: Any, *, method: Literal["fleiss", "randolph"] = "fleiss", confidence: float = 0.95,
                     n_bootstrap: int = 2000, seed: int = 0,
                     ci: Literal["bootstrap", "two_rater_analytic"] = "bootstrap") -> MultiraterKappaResult:
    """Fleiss' κ or Randolph's free-marginal κ from a subjects × categories count table (§D.7.2–3).

    q for Randolph is the number of columns = categories offered (build the table with
    :func:`category_counts` and the declared categories). Needs ≥ 2 subjects (≥ 3 for the CI) and
    the same number of raters (≥ 2) for each. CI: percentile bootstrap over subjects (``n_bootstrap`` resamples,
    ``seed``; ``n_bootstrap=0`` skips it), or for Randolph's κ with two raters ``two_rater_analytic``:
    κ ± z·√(P̄(1 − P̄)/N)/(1 − 1/q) (§D.7.3 option).
    """
    check_confidence(confidence)
    if method not in ("fleiss", "randolph"):
        raise InputError(f"unknown multirater κ {method!r}; use 'fleiss' or 'randolph'")
    if seed < 0:  # numpy's generators take non-negative seeds only
        raise InputError(f"the bootstrap seed must be 0 or a positive integer, got {seed}")
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2:
        raise InputError(f"count table must be subjects × categories, got shape {c.shape}")
    require_n(c.shape[0], 2, "multirater κ")
    if c.shape[1] < 1:
        raise InputError("count table has no category column; give at least one category")
    raters = c.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise InputError("every subject must be rated by the same number (≥ 2) of raters")
    n_r, q = int(raters[0]), c.shape[1]
    p_i = (c * (c - 1)).sum(axis=1) / (n_r * (n_r - 1))
    p_bar = float(p_i.mean())

    def kappa_of(pbar: np.ndarray, col_share: np.ndarray) -> np.ndarray:
        pe = (col_share ** 2).sum(axis=-1) if method == "fleiss" else np.full(np.shape(pbar), 1.0 / q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (pbar - pe) / (1 - pe)

    share = c.sum(axis=0) / c.sum()
    p_e = float((share ** 2).sum()) if method == "fleiss" else 1.0 / q
    flags: list[str] = []
    nan = float("nan")
    if np.isclose(p_e, 1.0):
        # One category used (Fleiss) or offered (Randolph, q = 1): κ = 0/0 is undefined (§D.7.2–3).
        return MultiraterKappaResult(method, nan, nan, nan, confidence, "none", 0, seed, p_bar, p_e,
                                     int(c.shape[0]), n_r, int(q), ("chance_agreement_is_1",))
    kappa = float(_sm_fleiss_kappa(c, method=method))
    low = high = nan
    if ci == "two_rater_analytic":
        if method != "randolph" or n_r != 2:
            raise InputError("the analytic free-marginal κ interval applies to Randolph's κ with exactly 2 raters")
        half = z_quantile(confidence) * np.sqrt(p_bar * (1 - p_bar) / c.shape[0]) / (1 - 1 / q)
        return MultiraterKappaResult(method, kappa, float(kappa - half), float(kappa + half), confidence,
                                     "two_rater_analytic", 0, seed, p_bar, p_e, int(c.shape[0]), n_r, int(q), ())
    if ci != "bootstrap":
        raise InputError(f"unknown multirater κ interval {ci!r}; use 'bootstrap' or 'two_rater_analytic'")
    if n_bootstrap and c.shape[0] < 3:
        flags.append("ci_needs_3_subjects")
    elif n_bootstrap:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, c.shape[0], size=(n_bootstrap, c.shape[0]))
        boot_share = c[idx].sum(axis=1) / (c.shape[0] * n_r)
        boot = kappa_of(p_i[idx].mean(axis=1), boot_share)
        boot = boot[np.isfinite(boot)]
        if boot.size < n_bootstrap:
            flags.append(f"bootstrap_undefined_resamples:{n_bootstrap - boot.size}")
        alpha = 1 - confidence
        low, high = (float(v) for v in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    bootstrapped = bool(n_bootstrap) and c.shape[0] >= 3
    return MultiraterKappaResult(method, kappa, low, high, confidence,
                                 "percentile_bootstrap" if bootstrapped else "none", int(n_bootstrap) if bootstrapped else 0, int(seed),
                                 p_bar, p_e, int(c.shape[0]), n_r, int(q), tuple(flags))
