"""Model-free AAC grader: calcified wall intervals from intensity profiles in front of L1–L4.

The image is resampled on a straightened grid aligned with the spine (:class:`SpineGeometry`):
``t`` along the spinal axis over the four Kauppila levels, ``d`` = distance in front of the anterior
vertebral border (``band_mm``). In that frame the aortic walls run along ``t``, so a calcified plaque
is a short bright run along ``t`` on a background that varies slowly along ``t``:

* background = each column's linear trend along ``t`` plus a running ``background_percentile``
  percentile of the detrended profile over ``window_mm``;
* noise σ = 1.4826 × median absolute successive difference along ``t`` / √2 (robust to plaques);
* calcified = residual > ``k_sigma`` σ for at least ``min_run_mm`` along ``t``;
* wall = posterior if d ≤ ``centreline_mm`` (adjacent to the spine), else anterior (B.2 step 3 with
  an assumed aortic centreline parallel to the spine);
* each calcified sample covers its ``step_mm`` of ``t``: the per-wall intervals go to
  :func:`vascalc.radiograph.kauppila.score_intervals`.

It is a comparison baseline for the learned graders, with fixed, documented parameters [T].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from vascalc.imaging.radiograph import Radiograph
from vascalc.radiograph.kauppila import (
    DEFAULT_BANDS,
    KauppilaResult,
    SpineGeometry,
    anterior_border_at,
    score_intervals,
    to_image_coords,
)


@dataclass(frozen=True)
class BaselineParams:
    """Parameters of the profile grader (lengths in the geometry's unit, mm when the spacing is known)."""

    band_mm: tuple[float, float] = (1.5, 35.0)
    centreline_mm: float = 14.0
    step_mm: float | None = None
    window_mm: float = 61.0
    background_percentile: float = 50.0
    k_sigma: float = 4.0
    min_run_mm: float = 2.0


@dataclass(frozen=True)
class BaselineGrading:
    """The Kauppila result and the detected calcium (for the QC image) as pixel (row, col) points."""

    result: KauppilaResult
    calcium_points_px: dict[str, np.ndarray]
    noise_sigma: float
    params: BaselineParams


def straightened(image: np.ndarray, geometry: SpineGeometry, params: BaselineParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``image`` on the (t, d) grid in front of the spine: (values, t, d), values shape (nt, nd)."""
    b = geometry.boundaries_mm
    t = np.arange(b[0], b[-1] + params.step_mm / 2, params.step_mm)
    d = np.arange(params.band_mm[0], params.band_mm[1] + params.step_mm / 2, params.step_mm)
    tt, dd = np.meshgrid(t, d, indexing="ij")
    ss = anterior_border_at(geometry, tt) + dd
    rows, cols = to_image_coords(geometry, tt, ss)
    values = ndimage.map_coordinates(image.astype(np.float32), [rows, cols], order=1, mode="nearest")
    return values, t, d


def grade_baseline(radiograph: Radiograph, geometry: SpineGeometry, params: BaselineParams = BaselineParams(), *,
                   bands: str = DEFAULT_BANDS) -> BaselineGrading:
    """Grade the 8 Kauppila segments of ``radiograph`` from wall intensity profiles (see module doc)."""
    if params.step_mm is None:
        # one sample per pixel: successive differences then measure pixel noise (finer sampling
        # would interpolate neighbours and hide it)
        params = replace(params, step_mm=float(min(geometry.spacing_mm)))
    values, t, d = straightened(radiograph.image, geometry, params)
    window = max(3, int(round(params.window_mm / params.step_mm)) | 1)
    # Remove each column's straight-line trend along t first: a running percentile is biased on a
    # slope (soft-tissue thickness changes along the spine), a detrended one is not.
    design = np.stack([np.ones_like(t), t - t.mean()], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    detrended = values - design @ coef
    background = ndimage.percentile_filter(detrended, params.background_percentile, size=(window, 1), mode="nearest")
    residual = detrended - background
    # Noise from successive differences along t (MAD / √2): independent of the background model
    # and barely touched by plaques, which change slowly compared with pixel noise.
    diff = np.diff(values, axis=0)
    sigma = float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))
    hit = residual > params.k_sigma * max(sigma, 1e-6)
    run = max(1, int(round(params.min_run_mm / params.step_mm)))
    if run > 1:
        hit = ndimage.binary_opening(hit, structure=np.ones((run, 1), dtype=bool))
    posterior_cols = d <= params.centreline_mm
    intervals, points = {}, {}
    for wall, cols in (("posterior", posterior_cols), ("anterior", ~posterior_cols)):
        covered = hit[:, cols].any(axis=1)
        intervals[wall] = (t[covered] - params.step_mm / 2, t[covered] + params.step_mm / 2)
        ti, di = np.nonzero(hit & cols[None, :])
        s = anterior_border_at(geometry, t[ti]) + d[di]
        r, c = to_image_coords(geometry, t[ti], s)
        points[wall] = np.stack([r, c], axis=1) if r.size else np.zeros((0, 2))
    result = score_intervals(geometry, intervals, bands=bands)
    return BaselineGrading(result=result, calcium_points_px=points, noise_sigma=sigma, params=params)
