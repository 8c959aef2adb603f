"""Detection policies: which voxels are calcium candidates (SCORING.md A.2).

Each policy is a frozen dataclass; :func:`parse_method` builds one from the CLI text
(``agatston``, ``hu=300``, ``window8bit:lo=-1024,hi=1300,threshold=145``, ``adaptive:k=2,scope=per_slice``).
``to_dict()`` gives every parameter, so a result records exactly how its calcium was found.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vascalc.errors import MethodError

#: kV-specific detection threshold and weight-2/3/4 edges in HU (SCORING.md A.2.2), stored verbatim:
#: the rows are *not* one factor times 130/200/300/400 (1.36·200 = 272, not 271).
KV_TABLE: dict[int, tuple[int, int, int, int]] = {
    70: (207, 318, 477, 636),
    80: (177, 271, 408, 544),
    100: (145, 222, 334, 446),
    120: (130, 200, 300, 400),
    135: (119, 183, 274, 364),
}
#: classic Agatston bands (SCORING.md A.4.1) used for 120 kVp and for every ``agatston_like`` policy.
CLASSIC_BANDS: tuple[int, int, int, int] = KV_TABLE[120]

#: parent vessel whose lumen sample an ``adaptive`` child borrows when its own is too small (A.2.5).
ADAPTIVE_PARENTS: dict[str, tuple[str, ...]] = {
    "iliac_artery_left": ("aorta",),
    "iliac_artery_right": ("aorta",),
    "common_iliac_artery_left": ("aorta",),
    "common_iliac_artery_right": ("aorta",),
    "external_iliac_artery_left": ("common_iliac_artery_left", "iliac_artery_left", "aorta"),
    "external_iliac_artery_right": ("common_iliac_artery_right", "iliac_artery_right", "aorta"),
    "internal_iliac_artery_left": ("common_iliac_artery_left", "iliac_artery_left", "aorta"),
    "internal_iliac_artery_right": ("common_iliac_artery_right", "iliac_artery_right", "aorta"),
    "femoral_artery_left": ("external_iliac_artery_left", "iliac_artery_left", "aorta"),
    "femoral_artery_right": ("external_iliac_artery_right", "iliac_artery_right", "aorta"),
    "renal_artery_left": ("aorta",),
    "renal_artery_right": ("aorta",),
    "celiac_trunk": ("aorta",),
    "superior_mesenteric_artery": ("aorta",),
    "inferior_mesenteric_artery": ("aorta",),
}


@dataclass(frozen=True)
class AgatstonPolicy:
    """Fixed 130 HU at 120 kVp, kV-adjusted rows of :data:`KV_TABLE` otherwise (A.2.1–A.2.2).

    ``strict`` uses ``HU > T``; ``kv_adjust=False`` keeps 130 HU whatever the kVp; ``bands_hu``
    gives explicit (detect, w2, w3, w4) thresholds for kVp values outside the table.
    """

    strict: bool = False
    kv_adjust: bool = True
    bands_hu: tuple[float, float, float, float] | None = None
    name: str = "agatston"

    def to_dict(self) -> dict:
        return _plain(asdict(self))


@dataclass(frozen=True)
class FixedHUPolicy:
    """Any fixed threshold ``HU >= threshold_hu`` (A.2.3); its Agatston is ``agatston_like``."""

    threshold_hu: float
    strict: bool = False
    name: str = "hu"

    def to_dict(self) -> dict:
        return _plain(asdict(self))


@dataclass(frozen=True)
class Window8bitPolicy:
    """The 8-bit window method of S4 (A.2.4): value = linear map of [lo, hi] HU to 0–255.

    ``rounding`` is ``"round"`` (half up) or ``"trunc"``; ``strict`` counts values ``> threshold``
    (S4's released code). ``per_slice_minmax`` maps each slice's own min/max with ImageJ's
    256/(max − min + 1) factor and truncation.
    """

    lo_hu: float = -1024.0
    hi_hu: float = 1300.0
    threshold: int = 145
    rounding: str = "round"
    strict: bool = True
    per_slice_minmax: bool = False
    name: str = "window8bit"

    def __post_init__(self) -> None:
        if self.hi_hu <= self.lo_hu:
            raise MethodError(f"window8bit needs hi > lo, got lo={self.lo_hu}, hi={self.hi_hu}")
        if self.rounding not in ("round", "trunc"):
            raise MethodError(f"window8bit rounding must be 'round' or 'trunc', got {self.rounding!r}")
        if not 0 <= self.threshold <= 255:
            raise MethodError(f"window8bit threshold must lie in 0–255, got {self.threshold}")

    @property
    def equivalent_hu(self) -> float:
        """Lowest HU counted as calcium for the fixed window (A.2.4 [C])."""
        return window8bit_equivalent_hu(self.lo_hu, self.hi_hu, self.threshold, self.rounding, self.strict)

    def to_dict(self) -> dict:
        d = _plain(asdict(self))
        if not self.per_slice_minmax:
            d["equivalent_threshold_hu"] = float(self.equivalent_hu)
        return d


@dataclass(frozen=True)
class AdaptivePolicy:
    """Contrast-CTA threshold from eroded-lumen statistics (A.2.5): ``T = max(floor, μ + k·σ)``.

    ``stat="robust"``: μ = median, σ = μ − Q_0.1587; ``"classic"``: mean and SD (ddof=1);
    ``"mad"`` [T]: μ = median, σ = 1.4826·median|x − μ|, robust to BOTH tails: wall (≈40 HU) and
    darker plaque in the sample widen the lower tail, which ``robust`` reads as σ (a lumen of 350 HU
    with 20 % wall gives σ ≈ 300 HU and T ≈ 1250 HU), while the MAD moves only by the fraction of
    outliers. ``core`` [T] (0–1): keep only lumen voxels at ≥ core·(local radius) from the mask edge
    (:func:`vascalc.calcium.roi.eroded_lumen`), for masks that include the wall; 0 is A.2.5 as written.
    ``scope="per_slice"`` takes μ, σ from a ±``slab_mm`` slab along z. The defaults are A.2.5's
    (robust, core 0); ``adaptive:stat=mad,core=0.5`` is the variant measured in docs/accuracy.md.
    """

    k: float = 3.0
    floor_hu: float = 130.0
    erode_mm: float = 2.0
    stat: str = "robust"
    scope: str = "per_vessel"
    slab_mm: float = 10.0
    min_lumen_voxels: int = 50
    core: float = 0.0
    strict: bool = False
    name: str = "adaptive"

    def __post_init__(self) -> None:
        if self.stat not in ("robust", "classic", "mad"):
            raise MethodError(f"adaptive stat must be 'robust', 'classic' or 'mad', got {self.stat!r}")
        if not 0.0 <= self.core < 1.0:
            raise MethodError(f"adaptive core must lie in [0, 1), got {self.core}")
        if self.scope not in ("per_vessel", "per_slice"):
            raise MethodError(f"adaptive scope must be 'per_vessel' or 'per_slice', got {self.scope!r}")
        if self.erode_mm < 0 or self.slab_mm <= 0:
            raise MethodError("adaptive erode_mm must be ≥ 0 and slab_mm > 0")

    def to_dict(self) -> dict:
        return _plain(asdict(self))


Policy = AgatstonPolicy | FixedHUPolicy | Window8bitPolicy | AdaptivePolicy


def _plain(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _parse_value(text: str) -> object:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    try:
        number = float(text)
    except ValueError:
        return text.strip()
    return int(number) if number.is_integer() and "." not in text else number


def _parse_bands(value: object, raw: str) -> tuple[float, float, float, float]:
    """Explicit Agatston bands written ``detect/w2/w3/w4`` in HU (',' separates parameters), rising."""
    try:
        bands = tuple(float(v) for v in str(value).split("/"))
    except ValueError:
        bands = ()
    if len(bands) != 4 or any(b >= c for b, c in zip(bands, bands[1:])):
        raise MethodError(f"method '{raw}': bands_hu must be four rising HU values written detect/w2/w3/w4, "
                          "e.g. agatston:bands_hu=119/183/274/364")
    return bands  # type: ignore[return-value]


def parse_method(text: str | Policy) -> Policy:
    """Policy from its text form (SCORING.md A.2); a policy object is returned unchanged.

    Forms: ``agatston[:strict=true,kv_adjust=false,bands_hu=D/W2/W3/W4]``, ``hu=<N>`` (or ``hu:threshold=N``),
    ``window8bit[:lo=,hi=,threshold=,rounding=,strict=,per_slice_minmax=]``,
    ``adaptive[:k=,floor=,erode_mm=,stat=,scope=,slab_mm=,core=]``; parameters are separated by ',' or ';'. Raises :class:`MethodError`.
    """
    if isinstance(text, (AgatstonPolicy, FixedHUPolicy, Window8bitPolicy, AdaptivePolicy)):
        return text
    if not isinstance(text, str) or not text.strip():
        raise MethodError("the method must be a text such as 'agatston', 'hu=300', 'window8bit' or 'adaptive'")
    raw = text.strip()
    if raw.lower().startswith("hu=") and ":" not in raw:
        try:
            return FixedHUPolicy(threshold_hu=float(raw[3:]))
        except ValueError:
            raise MethodError(f"'{raw}': the threshold after 'hu=' must be a number, e.g. hu=300") from None
    name, _, rest = raw.partition(":")
    name = name.strip().lower()
    params: dict[str, object] = {}
    # ';' also separates parameters, so a policy fits in a comma-separated list (--methods)
    for item in filter(None, (p.strip() for p in rest.replace(";", ",").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise MethodError(f"method parameter '{item}' must be written key=value")
        params[key.strip().lower()] = _parse_value(value)
    aliases = {"lo": "lo_hu", "hi": "hi_hu", "floor": "floor_hu", "threshold_hu": "threshold_hu"}
    params = {aliases.get(k, k): v for k, v in params.items()}
    classes = {"agatston": AgatstonPolicy, "hu": FixedHUPolicy, "window8bit": Window8bitPolicy,
               "adaptive": AdaptivePolicy}
    if name not in classes:
        raise MethodError(f"unknown method '{name}'; use agatston, hu=<N>, window8bit or adaptive")
    if name == "hu" and "threshold" in params:
        params["threshold_hu"] = params.pop("threshold")
    if name == "agatston" and ("bands_hu" in params or "bands" in params):
        params["bands_hu"] = _parse_bands(params.pop("bands_hu", params.pop("bands", None)), raw)
    cls = classes[name]
    allowed = set(cls.__dataclass_fields__) - {"name"}
    unknown = set(params) - allowed
    if unknown:
        raise MethodError(f"unknown parameter(s) {sorted(unknown)} for method '{name}'; allowed: {sorted(allowed)}")
    try:
        return cls(**params)  # type: ignore[arg-type]
    except TypeError as exc:
        raise MethodError(f"method '{raw}': {exc}") from None


def kv_bands(kvp: float | None, policy: AgatstonPolicy) -> tuple[tuple[float, float, float, float], int | None, str]:
    """Detection threshold and weight edges for the scan's kVp (A.2.2).

    Returns (bands, row_kvp, note). kVp unknown → 120-kVp row with a note; kVp outside the table →
    :class:`MethodError` unless the policy gives ``bands_hu`` or ``kv_adjust=False``.
    """
    if policy.bands_hu is not None:
        return tuple(float(b) for b in policy.bands_hu), None, "explicit bands"  # type: ignore[return-value]
    if not policy.kv_adjust:
        return CLASSIC_BANDS, 120, "kV adjustment off: 130 HU used whatever the kVp"
    if kvp is None:
        return CLASSIC_BANDS, 120, "kVp unknown: 120-kVp thresholds (130 HU) assumed"
    for row in KV_TABLE:
        if abs(float(kvp) - row) <= 0.5:
            return KV_TABLE[row], row, f"kV-adjusted thresholds for {row} kVp"
    raise MethodError(
        f"no calcium thresholds are defined for {kvp:g} kVp (table: {sorted(KV_TABLE)}); give explicit "
        "thresholds (--method agatston:bands_hu=D/W2/W3/W4, in HU) or keep 130 HU whatever the kVp "
        "(--method agatston:kv_adjust=false)")


def density_weight(peak_hu: np.ndarray | float, bands: tuple[float, float, float, float] = CLASSIC_BANDS) -> np.ndarray:
    """Agatston density weight 0–4 of a lesion peak (A.4.1): edges inclusive, peak < bands[0] → 0."""
    peak = np.asarray(peak_hu, dtype=float)
    return np.searchsorted(np.asarray(bands, dtype=float), peak, side="right").astype(np.int64)


def window8bit_equivalent_hu(lo: float, hi: float, threshold: int, rounding: str = "round",
                             strict: bool = True) -> float:
    """Lowest HU whose 8-bit value passes the test (A.2.4 [C]).

    value = round_or_trunc((HU − lo)·255/(hi − lo)); strict ``> t`` with rounding ⇔
    ``HU ≥ lo + (t + 0.5)·(hi − lo)/255``; with truncation ``lo + (t + 1)·(hi − lo)/255``.
    """
    first = threshold + 1 if strict else threshold
    offset = first - 0.5 if rounding == "round" else float(first)
    return float(lo + offset * (hi - lo) / 255.0)


def to_8bit(hu: np.ndarray, lo: float, hi: float, rounding: str = "round") -> np.ndarray:
    """Linear window of HU onto 0–255 (A.2.4); rounding half up, or truncation, then clipped."""
    x = (np.asarray(hu, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    x = np.floor(x + 0.5) if rounding == "round" else np.floor(x)
    return np.clip(x, 0, 255).astype(np.uint8)


def imagej_8bit(hu: np.ndarray, slice_min: np.ndarray, slice_max: np.ndarray) -> np.ndarray:
    """ImageJ-style 16→8-bit per slice: floor((HU − min)·256/(max − min + 1)), clipped (A.2.4)."""
    lo = np.asarray(slice_min, dtype=np.float64)[:, None, None]
    hi = np.asarray(slice_max, dtype=np.float64)[:, None, None]
    x = np.floor((np.asarray(hu, dtype=np.float64) - lo) * (256.0 / (hi - lo + 1.0)))
    return np.clip(x, 0, 255).astype(np.uint8)


def adaptive_threshold(lumen_hu: np.ndarray, policy: AdaptivePolicy) -> tuple[float, float, float]:
    """(T, μ, σ) for a lumen sample (A.2.5 steps 2–3); ``T = max(floor, μ + k·σ)`` in HU.

    ``robust``: μ = median, σ = μ − Q_0.1587 (numpy's default linear quantile);
    ``classic``: mean and SD with ddof = 1; ``mad``: median and 1.4826·median absolute deviation.
    """
    values = np.asarray(lumen_hu, dtype=np.float64)
    if values.size == 0:
        return float(policy.floor_hu), math.nan, math.nan
    if policy.stat == "robust":
        mu = float(np.median(values))
        sigma = mu - float(np.quantile(values, 0.1587))
    elif policy.stat == "mad":
        mu = float(np.median(values))
        sigma = 1.4826 * float(np.median(np.abs(values - mu)))
    else:
        mu = float(values.mean())
        sigma = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(max(policy.floor_hu, mu + policy.k * sigma)), mu, sigma
