"""Proportional-odds (ordinal logistic) regression: B, 95 % CI, Wald, p (SCORING.md §D.10, [R70]).

Library: statsmodels ``OrderedModel(y, X, distr="logit")`` fitted by maximum likelihood (its default
distribution is probit, so the logit is named explicitly, and X carries no constant). Sign
convention: logit P(Y ≤ j) = θ_j − β·x, so B > 0 makes higher categories more likely, as in SPSS
PLUM, R ``MASS::polr`` and Stata ``ologit``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin, as_float_array, check_confidence, z_quantile


@dataclass(frozen=True)
class OrdinalCoefficient(ResultMixin):
    """One predictor: B = β̂ per ``unit`` of the predictor, SE, CI B ± z·SE, Wald = (B/SE)², p, OR = e^B."""

    name: str
    unit: str
    b: float
    se: float
    ci_low: float
    ci_high: float
    wald_chi2: float
    p_value: float
    odds_ratio: float


@dataclass(frozen=True)
class OrdinalResult(ResultMixin):
    """A fitted proportional-odds model: coefficients, thresholds θ_j (in ``categories`` order) and fit info."""

    coefficients: tuple[OrdinalCoefficient, ...]
    thresholds: tuple[float, ...]
    categories: tuple
    n: int
    n_dropped_missing: int
    log_likelihood: float
    converged: bool
    confidence: float
    flags: tuple[str, ...]


def proportional_odds(outcome: Any, predictors: Mapping[str, Any], *, units: Mapping[str, str] | None = None,
                      categories: Sequence | None = None, confidence: float = 0.95) -> OrdinalResult:
    """Fit logit P(Y ≤ j | x) = θ_j − β·x by maximum likelihood (§D.10).

    ``outcome``: ordered categories (numbers, or labels ordered by ``categories``); ``predictors``:
    name → numeric column; ``units``: name → unit of that predictor (B scales inversely with it; S5's
    volume coefficients are per mL, §C.3). Rows with a missing value are dropped and counted. Needs
    ≥ 2 observed outcome categories, more cases than parameters, and non-constant predictors.
    """
    check_confidence(confidence)
    if not predictors:
        raise InputError("give at least one predictor for the ordinal regression")
    units = dict(units or {})
    y_raw = pd.Series(list(outcome), dtype=object)
    x = pd.DataFrame({name: as_float_array(values, name) for name, values in predictors.items()})
    if len(x) != len(y_raw):
        raise InputError(f"outcome has {len(y_raw)} values but the predictors have {len(x)}")
    missing = y_raw.isna().to_numpy() | x.isna().any(axis=1).to_numpy()
    dropped = int(missing.sum())
    y_raw, x = y_raw[~missing].reset_index(drop=True), x[~missing].reset_index(drop=True)
    if categories is None:
        try:
            categories = sorted(set(y_raw))
        except TypeError:
            raise InputError("outcome labels cannot be ordered; pass categories in their order") from None
    categories = tuple(categories)
    unknown = set(y_raw) - set(categories)
    if unknown:
        raise InputError(f"outcome values {sorted(map(str, unknown))[:5]} are not among the declared categories")
    observed = [c for c in categories if c in set(y_raw)]
    if len(observed) < 2:
        raise InputError("ordinal regression needs at least 2 different outcome categories in the data")
    n_params = x.shape[1] + len(observed) - 1
    if len(y_raw) <= n_params:
        raise InputError(f"ordinal regression with {n_params} parameters needs more than {n_params} complete cases, "
                         f"got {len(y_raw)}")
    constant = [name for name in x if np.ptp(x[name].to_numpy()) == 0]
    if constant:
        raise InputError(f"predictor {constant[0]!r} is constant; it cannot explain the outcome")
    flags = [f"missing_dropped:{dropped}"] if dropped else []
    if len(observed) < len(categories):
        flags.append(f"unobserved_categories:{len(categories) - len(observed)}")
    y = pd.Series(pd.Categorical(y_raw, categories=observed, ordered=True))

    from statsmodels.miscmodels.ordinal_model import OrderedModel

    with warnings.catch_warnings():
        # Convergence trouble is reported through ``converged`` and a flag, not a console warning.
        warnings.simplefilter("ignore")
        fit = OrderedModel(y, x, distr="logit").fit(method="bfgs", disp=False, maxiter=2000)
    converged = bool(fit.mle_retvals.get("converged", True))
    if not converged:
        flags.append("not_converged")
    z = z_quantile(confidence)
    # Complete separation: the predictors order the outcome perfectly, the likelihood tends to 1 as
    # |B| → ∞ and the optimiser stops at an arbitrary large B with a huge SE. The MLE does not
    # exist, so B, its CI, Wald, p and the odds ratio are reported as undefined, not as numbers.
    separated = bool(fit.llf > -1e-3)
    if separated:
        flags.append("complete_separation_estimates_undefined")
    coefficients = []
    for name in x.columns:
        b, se = float(fit.params[name]), float(fit.bse[name])
        if separated:
            b = se = float("nan")
        if not np.isfinite(se) and not separated:
            flags.append(f"se_undefined:{name}")
        wald = (b / se) ** 2 if se > 0 else float("nan")
        coefficients.append(OrdinalCoefficient(
            name=name, unit=units.get(name, "unit of the predictor"), b=b, se=se, ci_low=b - z * se,
            ci_high=b + z * se, wald_chi2=float(wald), p_value=float(st.chi2.sf(wald, 1)), odds_ratio=float(np.exp(b))))
    thresholds = tuple(float("nan") if separated else float(v)
                       for v in fit.model.transform_threshold_params(fit.params)[1:-1])
    return OrdinalResult(tuple(coefficients), thresholds, tuple(observed), int(len(y)), dropped, float(fit.llf),
                         converged, confidence, tuple(flags))
