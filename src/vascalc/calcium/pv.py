"""Partial-volume-aware calcium: integrated intensity and volume fraction (SCORING.md A.7).

Threshold scores lose the blurred rim of small calcifications and add the bloom of bright ones.
Both methods here integrate HU − background over a region that holds all the blur, which a linear,
integral-preserving point-spread function leaves unchanged, so the result does not depend on blur or
slice thickness as long as the region contains the blur and the background is right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from vascalc.calcium.roi import pad_box


def integrated_intensity(region_hu: np.ndarray, background_hu: float, object_hu: float,
                         voxel_volume_mm3: float, density_mg_cm3: float) -> tuple[float, float, float]:
    """(N_obj voxels, V_obj mm³, mass mg) by integrated intensity [R17] (A.7).

    N_obj = (I − N·S_bkg)/(S_obj − S_bkg) with I = Σ HU over the region; V = N_obj·v;
    m = V[mm³]·ρ_cal[mg/cm³]/1000.
    """
    values = np.asarray(region_hu, dtype=np.float64)
    total = float(values.sum())
    n_obj = (total - values.size * background_hu) / (object_hu - background_hu)
    volume = n_obj * voxel_volume_mm3
    return float(n_obj), float(volume), float(volume * density_mg_cm3 / 1000.0)


def volume_fraction_mass(region_hu: np.ndarray, background_hu: float, object_hu: float,
                         voxel_volume_mm3: float, density_mg_cm3: float, clip: bool = False) -> float:
    """Mass in mg by volume fraction [R16] (A.7): m = ρ_cal·v·Σ f_x /1000,
    f_x = (HU_x − S_bkg)/(S_obj − S_bkg), clipped to [0, 1] only when ``clip``.
    """
    f = (np.asarray(region_hu, dtype=np.float64) - background_hu) / (object_hu - background_hu)
    if clip:
        f = np.clip(f, 0.0, 1.0)
    return float(density_mg_cm3 * voxel_volume_mm3 * f.sum() / 1000.0)


@dataclass(frozen=True)
class ClusterPV:
    """Per-cluster partial-volume results (arrays indexed by cluster id − 1)."""

    background_hu: np.ndarray        # S_bkg per cluster (NaN when no background voxels)
    region_voxels: np.ndarray        # |R|
    volume_mm3: np.ndarray           # integrated-intensity volume
    mass_mg: np.ndarray              # integrated-intensity mass
    volume_fraction_mass_mg: np.ndarray
    object_hu: np.ndarray            # S_obj used for the integrated scores
    density_mg_cm3: np.ndarray       # ρ used for the integrated mass
    region_labels: np.ndarray | None = None   # crop int32: the cluster id owning each voxel of R (0 = none)
    # blur-corrected volume (:func:`blurred_layer_fit` on the model residual; the integrated volume
    # where the layer is thinner than the blur or no model holds) and the fitted layer thickness (NaN
    # where not identifiable)
    volume_blur_corrected_mm3: np.ndarray | None = None
    layer_thickness_mm: np.ndarray | None = None


#: remove the model's local offset, read in the ring around each PV region (round 4) [T]
LOCAL_OFFSET = True


def region_reach_mm(spacing: tuple[float, float, float], region_mm: float, min_voxels: float) -> np.ndarray:
    """Per-axis half-size of the region R: ``region_mm`` but never less than ``min_voxels`` voxels,
    because the blur of a voxelised object spans about a voxel whatever the voxel size."""
    return np.maximum(region_mm, min_voxels * np.asarray(spacing, dtype=float))


def cluster_pv(hu: np.ndarray, clusters: np.ndarray, n_clusters: int, cluster_vessel: np.ndarray,
               vessel: np.ndarray, excluded: np.ndarray | None, candidates: np.ndarray,
               spacing: tuple[float, float, float], region_mm: float, ring_mm: float,
               object_hu: float, density_mg_cm3: float, background: str = "compartments",
               scope: str = "vessel", min_ring_voxels: int = 20, clip: bool = False,
               object_model: str = "lesion", calibration_a: float = 0.0,
               calibration_b: float = 1.0, min_region_voxels: float = 2.0,
               mask_vessel: np.ndarray | None = None, near_vessel: np.ndarray | None = None,
               significance_sd: float = 3.0, depth_mm: np.ndarray | None = None,
               model=None, psf_fwhm_mm: float | None = None,
               slice_thickness_mm: float | None = None) -> ClusterPV:
    """Integrated-intensity and volume-fraction scores of every cluster (A.7) on a crop.

    Region R_c: voxels within the ellipsoid of half-sizes r_i = max(``region_mm``,
    ``min_region_voxels``·spacing_i) around cluster c, nearer to c than to any other cluster (ties →
    lower id), minus ``excluded`` (near bone). Ring: the shell out to (1 + ring_mm/region_mm)·r_i,
    without calcium candidates or excluded voxels; with ``scope="vessel"`` only ring voxels in the
    ROI of c's own vessel are used when at least ``min_ring_voxels`` exist.

    Background [T]: ``median``/``mean`` give one S_bkg per cluster from the ring (A.7 as written).
    ``compartments`` (default) uses two: the ring median inside the cluster's own undilated vessel
    mask (lumen and wall: the tissue the calcium displaced) for region voxels inside that mask, and
    the median of ring voxels outside the mask but within ``near_vessel``'s band of the vessel
    (peri-vascular tissue at the same depth) for the others. Because blur preserves integrals, the
    blurred background summed over R equals this sharp two-compartment model summed over R, while
    one constant S_bkg is biased by N·(mean local background − S_bkg) when R mixes lumen (≈40 HU)
    and fat (≈−100 HU). With ``depth_mm`` (distance below the own mask's surface) the inside
    compartment is further split into wall and lumen layers where the ring shows both, as in CTA
    (:func:`_split_lumen_wall`). ``inpaint`` fills R voxel by voxel by in-plane normalised convolution
    (Gaussian, σ_i = r_i) of the surrounding calcium-free voxels. ``model`` (with
    ``background="model"``): a :class:`vascalc.calcium.background.VesselBackground`; every region
    voxel's background is the model's calcium-free HU (compartments where the model is undefined),
    region voxels more than the model's band outside their vessel are left out of R (a wall
    calcification's blur does not reach them, and a background error there would only add up), the
    noise SD is the vessel's residual SD, and the object's HU is read over the displaced wall tissue
    (``wall_hu``): the residual image − model is the calcium's own blurred signal. Region voxels far below their
    background (gas, air) are dropped from R. ``background_hu`` reports the mean background over R.

    Integrated intensity (R17) with ``object_model="lesion"`` [T]: S_obj is each cluster's own HU
    from :func:`self_consistent_object_hu` and ρ = (S_obj − a)/b from the calibration line
    HU = a + b·ρ, i.e. A.7 evaluated at the lesion's own density, so volume and mass hold for any
    plaque density; ``"reference"`` uses the fixed (ρ_cal, S_obj) for every cluster (A.7 as written).
    Volume fraction (R16) always uses the fixed reference and the ring S_bkg, as the reference
    implementation.

    Blur-corrected volume [T] (``volume_blur_corrected_mm3``, with the model only): each cluster's
    residual over R is fitted as a wall layer by :func:`blurred_layer_fit` (depth = the model's signed
    distance to the vessel surface, blur along the surface normal from :func:`blur_variance_mm2` with
    ``psf_fwhm_mm`` (default :data:`DEFAULT_PSF_FWHM_MM`) and ``slice_thickness_mm`` (default the
    z spacing)); V = net/Δ. Where the layer is not resolved (thinner than the blur) the integrated
    volume is kept and ``layer_thickness_mm`` is NaN.

    Significance [T]: a cluster whose net Σ(HU − S_bkg) over R is not above ``significance_sd`` ×
    (ring noise SD)·√|R| gets integrated volume and mass 0. Such a cluster is a noise speck above
    the threshold (typical of adaptive thresholds in a contrast-filled lumen); without the guard
    the lesion model divides its noise by a small S_obj − S_bkg and reports tens of mm³.
    """
    psf_fwhm_mm = DEFAULT_PSF_FWHM_MM if psf_fwhm_mm is None else float(psf_fwhm_mm)
    reach_r = region_reach_mm(spacing, region_mm, min_region_voxels)
    outer = 1.0 + ring_mm / region_mm                  # ring edge in units of r_i
    norm_sampling = tuple(float(sp / r) for sp, r in zip(spacing, reach_r))
    dist = np.full(hu.shape, np.inf, dtype=np.float32)
    owner = np.zeros(hu.shape, dtype=np.int32)
    pad = tuple(int(np.ceil(outer * r / sp)) + 1 for r, sp in zip(reach_r, spacing))
    boxes = ndi.find_objects(clusters, max_label=n_clusters)
    for c, box in enumerate(boxes, start=1):
        if box is None:
            continue
        sub = pad_box(box, pad, hu.shape)
        # normalised distance: 1.0 at the region's edge along every axis
        d = ndi.distance_transform_edt(clusters[sub] != c, sampling=norm_sampling).astype(np.float32)
        better = (d <= outer) & (d < dist[sub])
        dist[sub][better] = d[better]
        owner[sub][better] = c
    region_any = dist <= 1.0 + 1e-6
    usable = ~region_any & ~candidates & np.isfinite(hu)
    if excluded is not None:
        usable &= ~excluded

    near = np.isfinite(dist)
    if excluded is not None:
        near &= ~excluded
    idx = np.nonzero(near)
    d = dist[idx]
    c = owner[idx]
    values = hu[idx].astype(np.float64)
    in_region = d <= 1.0 + 1e-6
    n = n_clusters + 1
    region_count = np.bincount(c[in_region], minlength=n)[1:]

    # ---- ring statistics: scalar S_bkg (median/mean), compartments, noise SD ---------------------
    ring = ~in_region & usable[idx]
    own = ring & (vessel[idx] == cluster_vessel[c])
    stat = np.mean if background == "mean" else np.median
    all_stat, all_n, all_sd = _grouped(c[ring], values[ring], n, stat)
    own_stat, own_n, own_sd = _grouped(c[own], values[own], n, stat)
    use_own = (own_n >= min_ring_voxels) if scope == "vessel" else np.zeros(n_clusters, dtype=bool)
    ring_bkg = np.where(use_own, own_stat, all_stat)
    noise = np.nan_to_num(np.where(use_own, own_sd, all_sd))

    # ---- per-voxel background over the regions ----------------------------------------------------
    rz, ry, rx = (a[in_region] for a in idx)
    rc = c[in_region]
    rv = values[in_region]
    bkg_vox = ring_bkg[rc - 1].copy()
    use_model = background == "model" and model is not None
    if background in ("compartments", "model") and mask_vessel is not None and rc.size:
        inside_all = mask_vessel[idx] == cluster_vessel[c]
        in_stat, in_n, in_sd = _grouped(c[ring & inside_all], values[ring & inside_all], n, np.median)
        outside = ring & ~inside_all
        if near_vessel is not None:
            # tissue just outside the vessel (same distance from the wall as the region's outer part),
            # not whatever lies farther away in the ring
            close = outside & (near_vessel[idx] == cluster_vessel[c])
            close_stat, close_n, _ = _grouped(c[close], values[close], n, np.median)
        out_stat, out_n, _ = _grouped(c[outside], values[outside], n, np.median)
        if near_vessel is not None:
            use_close = close_n >= min_ring_voxels
            out_stat = np.where(use_close, close_stat, out_stat)
            out_n = np.where(use_close, close_n, out_n)
        # a compartment with too few ring voxels borrows the other one, then the whole ring
        in_ok, out_ok = in_n >= min_ring_voxels, out_n >= min_ring_voxels
        # [T] the noise SD is read inside the vessel compartment: the MAD of a ring that mixes
        # lumen/wall (≈40 HU) and fat (≈−100 HU) measures the tissue step, not the noise, and would
        # flatten the object-HU plateau test and loosen nothing but the significance guard
        noise = np.where(in_ok & np.isfinite(in_sd), np.minimum(noise, np.nan_to_num(in_sd, nan=np.inf)), noise)
        s_in = np.where(in_ok, in_stat, np.where(out_ok, out_stat, ring_bkg))
        s_out = np.where(out_ok, out_stat, np.where(in_ok, in_stat, ring_bkg))
        inside_r = inside_all[in_region]
        bkg_vox = np.where(inside_r, s_in[rc - 1], s_out[rc - 1])
        if depth_mm is not None:
            bkg_vox, noise = _split_lumen_wall(bkg_vox, inside_r, rc, depth_mm[idx], c, ring & inside_all,
                                               values, n_clusters, noise, min_ring_voxels, in_region)
    elif background == "inpaint" and rc.size:
        sigma = (0.0,) + tuple(float(r / sp) for r, sp in zip(reach_r[1:], spacing[1:]))
        halo = tuple(int(np.ceil(3 * s)) for s in sigma)
        for k, box in enumerate(boxes, start=1):
            if box is None:
                continue
            sub = pad_box(box, tuple(p + h for p, h in zip(pad, halo)), hu.shape)
            w = usable[sub].astype(np.float32)
            num = ndi.gaussian_filter(np.where(w > 0, hu[sub], 0).astype(np.float32), sigma, mode="constant")
            den = ndi.gaussian_filter(w, sigma, mode="constant")
            sel = np.flatnonzero(rc == k)
            lz, ly, lx = rz[sel] - sub[0].start, ry[sel] - sub[1].start, rx[sel] - sub[2].start
            dd = den[lz, ly, lx]
            ok = dd > 1e-3
            bkg_vox[sel[ok]] = num[lz[ok], ly[ok], lx[ok]] / dd[ok]
    keep_model = np.ones(rc.size, dtype=bool)
    # per cluster: its vessel's model holds (else the compartments above stay its background)
    modelled = np.r_[False, model.valid][cluster_vessel[1:]] if use_model else np.zeros(n_clusters, dtype=bool)
    if use_model and rc.size:
        m_r = model.model_hu[rz, ry, rx]
        on = modelled[rc - 1]
        has_m = np.isfinite(m_r) & on
        bkg_vox = np.where(has_m, m_r, bkg_vox)
        d_r = model.depth_mm[rz, ry, rx]
        keep_model = ~on | (np.isfinite(d_r) & (d_r >= -model.band_mm))
        vessel_sd = np.r_[np.nan, model.residual_sd_hu][cluster_vessel[1:]]
        noise = np.where(np.isfinite(vessel_sd) & modelled, vessel_sd, noise)
        if LOCAL_OFFSET:
            # [T] the model's error is coherent over a few mm (a lumen that tapers within a segment,
            # an organ beside one side): its local level is read in the ring just outside the
            # cluster's region (calcium-free, inside the model's band) and removed from the region
            ring_m = ring & np.isfinite(model.model_hu[idx]) & (np.nan_to_num(model.depth_mm[idx], nan=-np.inf)
                                                               >= -model.band_mm)
            off, off_n, _ = _grouped(c[ring_m], values[ring_m] - model.model_hu[idx][ring_m], n, np.median)
            use_off = modelled & (off_n >= min_ring_voxels) & np.isfinite(off)
            bkg_vox = np.where(has_m & use_off[rc - 1], bkg_vox + np.nan_to_num(off)[rc - 1], bkg_vox)
    # voxels far below their own background (bowel gas, lung, air next to a vessel) carry no
    # calcium blur but would swamp the integral; they are left out of R with their background
    floor = np.maximum(4.0 * noise[rc - 1], 100.0)
    keep_r = ~(rv < bkg_vox - floor) & keep_model
    rc, rv, bkg_vox = rc[keep_r], rv[keep_r], bkg_vox[keep_r]
    rz, ry, rx = rz[keep_r], ry[keep_r], rx[keep_r]
    region_count = np.bincount(rc, minlength=n)[1:]
    region_labels = np.zeros(hu.shape, dtype=np.int32)
    region_labels[rz, ry, rx] = rc
    with np.errstate(invalid="ignore", divide="ignore"):
        net_vox = rv - bkg_vox
        net = np.bincount(rc, weights=np.nan_to_num(net_vox), minlength=n)[1:].astype(float)
        has_bkg = np.bincount(rc, weights=np.isfinite(bkg_vox).astype(float), minlength=n)[1:] > 0
        net[~has_bkg] = np.nan
        bkg = np.bincount(rc, weights=np.nan_to_num(bkg_vox), minlength=n)[1:].astype(float) / np.maximum(region_count, 1)
        bkg[~has_bkg] = np.nan

    # each cluster's net values as one contiguous, descending run (for the half-level search)
    order = np.lexsort((-np.nan_to_num(net_vox), rc))
    rc_sorted, net_sorted = rc[order], np.nan_to_num(net_vox[order])
    pos_sorted = np.stack([rz[order], ry[order], rx[order]], axis=1)
    bkg_sorted = bkg_vox[order]
    bounds = np.searchsorted(rc_sorted, np.arange(n + 1))
    own_hu = np.full(n_clusters, np.nan)
    # [T] background of the tissue the calcium displaced: the mean background of the plateau voxels
    # (the object's own place), not of the whole region, which reaches into fat or lumen
    obj_bkg = bkg.copy()
    # with the model, the residual is the calcium's own blurred signal over the wall it displaced
    wall = np.where(modelled, np.r_[np.nan, model.wall_hu][cluster_vessel[1:]], np.nan) if use_model \
        else np.full(n_clusters, np.nan)
    cross = np.zeros((1, 3, 3), dtype=bool)
    cross[0, 1, :] = cross[0, :, 1] = True
    for k in range(1, n):
        run = net_sorted[bounds[k]:bounds[k + 1]]
        if run.size and np.isfinite(net[k - 1]) and net[k - 1] > 0:
            tol = max(3.0 * noise[k - 1], 0.05 * run[0])
            on_top = run >= run[0] - tol
            top = pos_sorted[bounds[k]:bounds[k + 1]][on_top]
            top_bkg = bkg_sorted[bounds[k]:bounds[k + 1]][on_top]
            lo = top.min(axis=0)
            plateau = np.zeros(tuple(top.max(axis=0) - lo + 3), dtype=bool)
            plateau[tuple((top - lo + 1).T)] = True
            resolved = bool(ndi.binary_erosion(plateau, cross).any())
            # only a resolved plateau reads the object at its own place; an unresolved object's H
            # is a lower bound, and pairing it with the wall's background would inflate ρ/(ρ − B)
            if use_model and np.isfinite(wall[k - 1]):
                # the residual is over the displaced wall, resolved or not
                obj_bkg[k - 1] = wall[k - 1]
            elif resolved and np.isfinite(top_bkg).any():
                obj_bkg[k - 1] = float(np.nanmean(top_bkg))
            own_hu[k - 1] = obj_bkg[k - 1] + self_consistent_object_hu(run, 0.0, net[k - 1], noise[k - 1], resolved)
    v = float(np.prod(spacing))
    with np.errstate(invalid="ignore", divide="ignore"):
        if object_model == "lesion":
            s_obj = own_hu
            rho = (own_hu - calibration_a) / calibration_b
        else:
            s_obj = np.full(n_clusters, float(object_hu))
            rho = np.full(n_clusters, float(density_mg_cm3))
        n_obj = net / (s_obj - (obj_bkg if object_model == "lesion" else bkg))
        # a cluster whose net intensity is within noise of zero (a bright noise speck, e.g. in a
        # contrast-filled lumen above an adaptive threshold) has no measurable object HU, and the
        # small S_obj − S_bkg of the lesion model would turn its noise into volume: it counts 0
        noise_of_sum = significance_sd * noise * np.sqrt(np.maximum(region_count, 1))
        n_obj = np.where(np.isfinite(net) & (net <= noise_of_sum), 0.0, n_obj)
        volume = n_obj * v
        # a cluster counted as 0 has mass 0 even where its object HU (hence ρ) is undefined
        mass = np.where(n_obj == 0.0, 0.0, volume * rho / 1000.0)
        # volume fraction (R16): the reference rod as S_obj; S_bkg is the ring value of the reference
        # code, or each voxel's own model background where the vessel's model holds (one ring value
        # over a region that mixes contrast lumen, wall and fat turns the mixture into "calcium")
        s_bkg = np.where(modelled[rc - 1] & np.isfinite(bkg_vox), bkg_vox, ring_bkg[rc - 1]) if use_model \
            else ring_bkg[rc - 1]
        f = (rv - s_bkg) / (object_hu - s_bkg)
        if clip:
            f = np.clip(f, 0.0, 1.0)
        vf_mass = np.bincount(rc, weights=np.nan_to_num(f), minlength=n)[1:] * v * density_mg_cm3 / 1000.0
        vf_mass[~np.isfinite(ring_bkg)] = np.nan
    # blur-corrected volume: each modelled cluster's residual as a wall layer (moment method)
    vol_bc = volume.copy()
    thick_mm = np.full(n_clusters, np.nan)
    if use_model and rc.size:
        bv_axes = blur_variance_mm2(spacing, psf_fwhm_mm, slice_thickness_mm)
        depth_r = model.depth_mm[rz, ry, rx].astype(np.float64)
        bv_vox = _normal_blur_variance(model.depth_mm, rz, ry, rx, spacing, bv_axes)
        order_c = np.argsort(rc, kind="stable")
        cb = np.searchsorted(rc[order_c], np.arange(n + 1))
        for k in np.flatnonzero(modelled) + 1:
            if not (np.isfinite(volume[k - 1]) and volume[k - 1] > 0):
                continue
            sel = order_c[cb[k]:cb[k + 1]]
            fit = blurred_layer_fit(net_vox[sel], depth_r[sel], bv_vox[sel], v, float(noise[k - 1]))
            if fit.identifiable and np.isfinite(fit.volume_mm3) and fit.volume_mm3 > 0:
                thick_mm[k - 1] = fit.thickness_mm
                # the layer's Δ is over the displaced tissue, as the integrated net: V = net·v/Δ
                vol_bc[k - 1] = float(net[k - 1]) * v / fit.contrast_hu
    return ClusterPV(background_hu=bkg, region_voxels=region_count, volume_mm3=volume, mass_mg=mass,
                     volume_fraction_mass_mg=vf_mass, object_hu=s_obj, density_mg_cm3=rho,
                     region_labels=region_labels, volume_blur_corrected_mm3=vol_bc,
                     layer_thickness_mm=thick_mm)


def self_consistent_object_hu(values_desc: np.ndarray, background_hu: float, net_hu_voxels: float,
                              noise_sd_hu: float = 0.0, resolved: bool | None = None) -> float:
    """Object HU H of one blurred calcification from its region values (descending) [T].

    A blurred edge crosses the half level S_bkg + (H − S_bkg)/2 at the true boundary, so the voxel
    count n above the half level is the object's volume and H = S_bkg + J/n with J = Σ(HU − S_bkg).
    A fixed point is an n whose level J/(2n) + S_bkg lies between the n-th and (n+1)-th values
    (descending). The blurred plateau of a large object gives spurious fixed points at small n and
    background noise at large n, so the largest n whose level stays above 3 noise SDs is taken.
    A resolved object uses the median of its plateau (values within max(3 SD, 5 %) of the peak)
    instead, because curvature moves the half level of a compact object inwards. ``resolved`` says
    whether the object is resolved (:func:`cluster_pv` tests for plateau voxels whose in-plane
    neighbours are all on the plateau, which a thin wall plaque never has); None falls back to
    "at least 4 plateau voxels".
    Objects smaller than the blur have no fixed point (all their values sit below any consistent half level);
    then n maximising (x_n − S_bkg)·n, the closest approach, is used, which makes H larger than the
    blurred peak, as it must be.
    """
    x = np.asarray(values_desc, dtype=np.float64) - background_hu
    # a resolved object shows a plateau at its own HU: then the plateau is H (the half level of a
    # small convex object sits inside its edge by about σ²/R, so the plateau is the better reading)
    tol = max(3.0 * noise_sd_hu, 0.05 * x[0])
    plateau = x[x >= x[0] - tol]
    if resolved is None:
        resolved = plateau.size >= 4
    if resolved:
        return float(background_hu + np.median(plateau))
    i = np.arange(1, x.size + 1)
    level = net_hu_voxels / (2.0 * i)
    below_next = np.r_[x[1:], -np.inf]
    ok = (level <= x) & (level > below_next) & (level > 3.0 * noise_sd_hu)
    if ok.any():
        count = int(i[ok][-1])
    else:
        count = int(i[np.argmax(x * i)])
    # blur never raises the maximum: H is at least the peak (less 2 noise SDs for the noise on it)
    return float(background_hu + max(net_hu_voxels / count, x[0] - 2.0 * noise_sd_hu))


#: in-plane PSF (FWHM, mm) assumed by the blur-corrected volume when the scan states none [T]: a
#: standard body kernel at 120 kVp, and the vascalc phantoms' own PSF
DEFAULT_PSF_FWHM_MM = 1.0
#: slice-sensitivity profile: a box of the slice thickness blurred by a Gaussian of this fraction of
#: the thickness (FWHM) [T], as the vascalc phantoms render it
SSP_BLUR_FRACTION = 0.5


def blur_variance_mm2(spacing: tuple[float, float, float], psf_fwhm_mm: float = DEFAULT_PSF_FWHM_MM,
                      slice_thickness_mm: float | None = None,
                      ssp_blur_fwhm_mm: float | None = None) -> np.ndarray:
    """Variance (mm², per axis z, y, x) of the system blur a voxel value carries [T].

    In-plane: the Gaussian PSF (σ = FWHM/2.3548) plus the voxel's own box (d²/12, the image is a
    voxel average); along z: the slice-sensitivity profile, a box of the slice thickness (default the
    spacing) blurred by a Gaussian of FWHM ``ssp_blur_fwhm_mm`` (default half the thickness). Variances
    of independent blurs add, which is what the moment method of :func:`blurred_layer_fit` needs.
    """
    t = float(spacing[0] if slice_thickness_mm is None else slice_thickness_mm)
    ssp = SSP_BLUR_FRACTION * t if ssp_blur_fwhm_mm is None else float(ssp_blur_fwhm_mm)
    g = 1.0 / (8.0 * np.log(2.0))                      # (σ/FWHM)²
    return np.array([t * t / 12.0 + g * ssp * ssp,
                     g * psf_fwhm_mm ** 2 + spacing[1] ** 2 / 12.0,
                     g * psf_fwhm_mm ** 2 + spacing[2] ** 2 / 12.0])


@dataclass(frozen=True)
class LayerFit:
    """A wall layer recovered from its blurred residual (:func:`blurred_layer_fit`).

    ``thickness_mm`` t and ``contrast_hu`` Δ (HU over the displaced tissue) of the layer,
    ``volume_mm3`` = net/Δ, ``area_mm2`` = volume/t its footprint on the wall (unresolved: net/(Δ·t)),
    ``net_hu_mm3`` = Σ residual·v
    (= Δ·t·area, what blur conserves), ``thickness_contrast_hu_mm`` = Δ·t (the layer's HU·mm per unit
    area, identifiable at any thickness), ``blur_sd_mm`` the blur along the wall normal, and
    ``identifiable``: whether t stands out of the blur (else t, Δ, volume are NaN).
    """

    thickness_mm: float
    contrast_hu: float
    area_mm2: float
    volume_mm3: float
    net_hu_mm3: float
    thickness_contrast_hu_mm: float
    blur_sd_mm: float
    identifiable: bool


def blurred_layer_fit(residual_hu: np.ndarray, depth_mm: np.ndarray, blur_var_mm2: np.ndarray | float,
                      voxel_volume_mm3: float, noise_sd_hu: float = 0.0, window_sd: float = 3.0,
                      min_excess: float = 0.05) -> LayerFit:
    """Thickness, contrast and volume of a blurred wall layer by the moment method [T] (A.7 volume).

    A layer of thickness t and contrast Δ seen across the wall is a box of width t blurred by the
    system's profile along the wall normal (variance σ², :func:`blur_variance_mm2` projected on the
    normal, ``blur_var_mm2`` per voxel or one value). Blur is linear and conserves integrals, so the
    residual-weighted second central moment of the depth d (mm along the normal, e.g. the signed
    distance to the vessel surface) is m₂ = σ² + t²/12 whatever the footprint, and
    t = √(12·(m₂ − σ²)). Δ is the layer's level: each voxel's residual divided by the fitted profile
    at its depth, read over the footprint (:func:`_layer_level_hu`); then volume = Σ residual·v / Δ
    (= t × footprint area). An unresolved layer's Δ·t is read the same way with the blur's own
    Gaussian as profile (its peak is Δ·t/(√(2π)·σ)).
    Moments use the voxels within ``window_sd`` blur SDs (+ t/2) of the profile centre (the region's
    far voxels carry noise and background error, no layer signal; two passes).

    Identifiability: a layer much thinner than the blur adds t²/12 ≪ σ² to m₂, so only Δ·t (the
    profile's integral) is measured and t, Δ and the volume are not. The layer counts as resolved when
    m₂ − σ² exceeds ``min_excess``·σ² (t ≳ 0.77 σ at 0.05: a 5 % error of the assumed blur variance
    then moves t by < 35 %) and twice its noise standard error (``noise_sd_hu`` of one voxel).
    Inputs: residual (HU, image − calcium-free background) and depth (mm) of the region's voxels.
    """
    r = np.asarray(residual_hu, dtype=np.float64).ravel()
    d = np.asarray(depth_mm, dtype=np.float64).ravel()
    bv = np.broadcast_to(np.asarray(blur_var_mm2, dtype=np.float64), r.shape).ravel()
    ok = np.isfinite(r) & np.isfinite(d) & np.isfinite(bv)
    r, d, bv = r[ok], d[ok], bv[ok]
    net = float(r.sum() * voxel_volume_mm3)
    nan = float("nan")
    if r.size < 3 or net <= 0:
        return LayerFit(nan, nan, nan, nan, net, nan, nan, False)
    # centre and blur from the positive part (robust first guess), then the window around it
    wp = np.clip(r, 0.0, None)
    centre = float((wp * d).sum() / wp.sum())
    sig2 = float((wp * bv).sum() / wp.sum())
    half_t = 0.0
    sel = np.ones(r.size, dtype=bool)
    m2 = sig2
    for _ in range(2):
        sel = np.abs(d - centre) <= window_sd * np.sqrt(sig2) + half_t
        w = r[sel]
        if w.sum() <= 0:
            return LayerFit(nan, nan, nan, nan, net, nan, nan, False)
        centre = float((w * d[sel]).sum() / w.sum())
        sig2 = float((w * bv[sel]).sum() / w.sum())
        m2 = float((w * (d[sel] - centre) ** 2).sum() / w.sum())
        half_t = 0.5 * np.sqrt(12.0 * max(m2 - sig2, 0.0))
    w = r[sel]
    total = float(w.sum())
    # noise standard error of m2 (a ratio of sums; first order in the noise of each voxel)
    se_m2 = noise_sd_hu * float(np.sqrt((((d[sel] - centre) ** 2 - m2) ** 2).sum())) / total
    excess = m2 - sig2
    tc = total * voxel_volume_mm3      # Σ r·v over the window: Δ·t·area
    sd = float(np.sqrt(sig2))
    if not (excess > min_excess * sig2 and excess > 2.0 * se_m2):
        # only the integral across the wall is measured; report Δ·t per unit area from the peak band
        # the profile is the blur's own (t → 0): its peak reads Δ·t/(√(2π)·σ)
        tdelta = _layer_level_hu(r, d, centre, sd, 0.0) * np.sqrt(2.0 * np.pi) * sd
        return LayerFit(nan, nan, tc / tdelta, nan, net, tdelta, sd, False)
    t = float(np.sqrt(12.0 * excess))
    delta = _layer_level_hu(r, d, centre, sd, t)
    volume = net / delta
    return LayerFit(t, delta, volume / t, volume, net, delta * t, sd, True)


def _normal_blur_variance(depth: np.ndarray, z: np.ndarray, y: np.ndarray, x: np.ndarray,
                          spacing: tuple[float, float, float], var_axes: np.ndarray) -> np.ndarray:
    """Blur variance (mm²) along the surface normal at voxels (z, y, x): Σᵢ nᵢ²·varᵢ, the normal n
    from central differences of the signed depth (in-plane where they are undefined) [T]."""
    grads = []
    for axis, sp in enumerate(spacing):
        hi = [z, y, x]
        lo = [z, y, x]
        hi[axis] = np.minimum(hi[axis] + 1, depth.shape[axis] - 1)
        lo[axis] = np.maximum(lo[axis] - 1, 0)
        step = (hi[axis] - lo[axis]) * sp
        with np.errstate(invalid="ignore", divide="ignore"):
            grads.append((depth[tuple(hi)].astype(np.float64) - depth[tuple(lo)]) / np.where(step > 0, step, np.nan))
    g = np.stack(grads, axis=1)
    norm2 = (g * g).sum(axis=1)
    ok = np.isfinite(norm2) & (norm2 > 1e-6)
    n2 = np.where(ok[:, None], g * g / np.where(ok, norm2, 1.0)[:, None], np.array([0.0, 0.5, 0.5]))
    return n2 @ np.asarray(var_axes, dtype=np.float64)


def _layer_profile(x: np.ndarray, t: float, sd: float) -> np.ndarray:
    """Box of width t (centred on 0) blurred by a Gaussian of SD ``sd``: the layer's profile (peak ≤ 1)."""
    from scipy.special import erf

    if t <= 0:
        return np.exp(-0.5 * (x / sd) ** 2)
    k = 1.0 / (np.sqrt(2.0) * sd)
    return 0.5 * (erf((x + t / 2) * k) - erf((x - t / 2) * k))


def _layer_level_hu(r: np.ndarray, d: np.ndarray, centre: float, sd: float, t: float) -> float:
    """Δ of a layer whose profile across the wall is known (centre, t, blur SD) [T].

    Each voxel's residual divided by the profile p at its depth reads Δ·(lateral factor) (used where
    p ≥ half its peak, where noise/p stays small). The footprint's interior reads Δ and its
    blurred lateral edge less; the level is the fixed point "median of the readings at least half
    the level" (from the 99th percentile; a blurred edge crosses half on the true edge, so the set is
    the footprint), found in a few passes.
    """
    p = _layer_profile(d - centre, t, sd)
    band = p >= 0.5 * float(_layer_profile(np.zeros(1), t, sd)[0])
    if band.sum() < 3:
        return float("nan")
    u = r[band] / p[band]
    level = float(np.quantile(u, 0.99))
    for _ in range(6):
        if not level > 0:
            return float("nan")
        level = float(np.median(u[u >= 0.5 * level]))
    return level


def _grouped(keys: np.ndarray, values: np.ndarray, n: int, stat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per key 1..n−1: (stat of values, count, robust SD = 1.4826·MAD); NaN where a key is empty."""
    out = np.full(n - 1, np.nan)
    sd = np.full(n - 1, np.nan)
    counts = np.bincount(keys, minlength=n)[1:]
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    for k in np.flatnonzero(counts) + 1:
        sample = values[order[bounds[k]:bounds[k + 1]]]
        out[k - 1] = float(stat(sample))
        sd[k - 1] = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    return out, counts, sd


@dataclass(frozen=True)
class PVSeeds:
    """Regions scored by the partial-volume method only (:func:`pv_seed_regions`)."""

    labels: np.ndarray          # int32 crop array: 0, or the seed region's id (1..n)
    n: int
    vessel: np.ndarray          # vessel index 1..V per seed region (index id − 1)
    level_hu: np.ndarray        # per vessel index 1..V (index v − 1): seed level, NaN without a sample
    background_hu: np.ndarray   # per vessel: median of its calcium-free mask voxels
    noise_sd_hu: np.ndarray     # per vessel: 1.4826·MAD of the same voxels


def pv_seed_regions(hu: np.ndarray, owner: np.ndarray, mask_vessel: np.ndarray, calcium: np.ndarray,
                    n_vessels: int, sd_k: float = 3.0, floor_hu: float = 50.0, min_voxels: int = 3,
                    connectivity: int = 26) -> PVSeeds:
    """Calcium the threshold missed, for the partial-volume scores only [T] (A.7).

    At thick slices the blurred peak of a thin plaque can stay below 130 HU, so no threshold voxel
    seeds its PV region and its mass is lost. Per vessel v, the background B_v is the median and
    σ_v the robust SD (1.4826·MAD) of its own calcium-free mask voxels in its ROI; a seed voxel is
    an ROI voxel of v, not calcium, with HU > B_v + max(``sd_k``·σ_v, ``floor_hu``). Seed regions
    are their 3-D connected components (split by vessel) of at least ``min_voxels`` voxels that do
    not touch threshold calcium (a component touching it is that lesion's blurred rim, already in
    its PV region). The σ_v of a contrast lumen mixed with the wall is large, which keeps the
    level above the lumen's blurred edge; :func:`cluster_pv`'s significance guard then removes
    noise regions. All units HU; arrays are on the crop.
    """
    structure = ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    sample = (mask_vessel > 0) & (mask_vessel == owner) & ~calcium & np.isfinite(hu)
    keys = mask_vessel[sample].astype(np.int64)
    med, count, sd = _grouped(keys, hu[sample].astype(np.float64), n_vessels + 1, np.median)
    level = med + np.maximum(sd_k * np.nan_to_num(sd), floor_hu)
    level_full = np.r_[np.inf, np.where(count > 0, level, np.inf)]
    above = (owner > 0) & ~calcium & (hu > level_full[owner])
    empty = PVSeeds(np.zeros(hu.shape, dtype=np.int32), 0, np.zeros(0, dtype=np.int64), level, med, sd)
    if not above.any():
        return empty
    comp, _ = ndi.label(above | calcium, structure=structure)
    touches = np.zeros(int(comp.max()) + 1, dtype=bool)
    touches[comp[calcium]] = True
    z, y, x = np.nonzero(above & ~touches[comp])
    if z.size == 0:
        return empty
    v = owner[z, y, x].astype(np.int64)
    key = comp[z, y, x].astype(np.int64) * (n_vessels + 1) + v
    uniq, inverse, size = np.unique(key, return_inverse=True, return_counts=True)
    keep = size[inverse] >= min_voxels
    big = size >= min_voxels
    new_id = np.cumsum(big)
    labels = np.zeros(hu.shape, dtype=np.int32)
    labels[z[keep], y[keep], x[keep]] = new_id[inverse[keep]]
    return PVSeeds(labels, int(big.sum()), (uniq[big] % (n_vessels + 1)).astype(np.int64), level, med, sd)


def _split_lumen_wall(bkg_vox: np.ndarray, inside_r: np.ndarray, rc: np.ndarray, depth: np.ndarray,
                      c: np.ndarray, ring_in: np.ndarray, values: np.ndarray, n_clusters: int,
                      noise: np.ndarray, min_ring_voxels: int, in_region: np.ndarray,
                      min_contrast_hu: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Inside-mask background as two layers, wall over lumen, where they differ (CTA) [T].

    A mask of lumen + wall around a contrast lumen holds two tissues (≈40 and ≈350 HU); one median
    for both makes the wall voxels of a wall plaque's region look 300 HU too dark and cancels the
    plaque. Per cluster, the inside ring values split at the midpoint of their 10th and 90th
    percentiles when those differ by more than ``min_contrast_hu`` and by 6 robust SDs of the
    bright part: the dark part is the wall, the bright part the lumen. The wall is the outer layer
    of the mask, so the layer boundary is the depth (distance below the mask surface, mm) quantile
    equal to the dark fraction; region voxels shallower than it get the wall median, deeper ones
    the lumen median: the sharp background whose blurred integral over R the image shows.
    Returns (per-voxel background, per-cluster noise SD): the noise of a split cluster is the
    lumen's robust SD, because the SD of the mixed ring measures the tissue step, not the noise.
    """
    out = bkg_vox.copy()
    noise_out = noise.copy()
    order = np.argsort(c[ring_in], kind="stable")
    keys = c[ring_in][order]
    vals = values[ring_in][order]
    dep = depth[ring_in][order]
    bounds = np.searchsorted(keys, np.arange(n_clusters + 2))
    r_depth = depth[in_region]
    for k in range(1, n_clusters + 1):
        v = vals[bounds[k]:bounds[k + 1]]
        if v.size < 2 * min_ring_voxels:
            continue
        q10, q90 = np.quantile(v, [0.1, 0.9])
        mid = 0.5 * (q10 + q90)
        dark = v <= mid
        if dark.sum() < min_ring_voxels or (~dark).sum() < min_ring_voxels:
            continue
        bright = v[~dark]
        sd_bright = 1.4826 * float(np.median(np.abs(bright - np.median(bright))))
        if q90 - q10 <= max(min_contrast_hu, 6.0 * sd_bright):
            continue
        edge = float(np.quantile(dep[bounds[k]:bounds[k + 1]], dark.mean()))
        sel = (rc == k) & inside_r
        out[sel] = np.where(r_depth[sel] < edge, float(np.median(v[dark])), float(np.median(bright)))
        noise_out[k - 1] = sd_bright
    return out, noise_out
