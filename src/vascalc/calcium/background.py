"""Model-based calcium-free background of each vessel for the partial-volume scores (SCORING.md A.7 [T]).

A.7 integrates HU − S_bkg over a region that holds the blurred calcification; the result is as good
as the background. Around a vessel the calcium-free image is far from constant: a contrast lumen
(≈350 HU), the wall (≈45 HU) and the surrounding fat or muscle are blurred into one another by the
in-plane PSF and the slice profile, and a small artery next to the aorta sits in the aorta's blur.

The model here is the image a calcium-free vessel would give. A vessel is a tube whose sharp image is
piecewise constant across its surface (lumen, wall, tissue), blurred by a linear, shift-invariant
system, so its calcium-free HU depends on the signed distance ``s`` (mm, > 0 inside) to the mask
surface (sub-voxel: :func:`signed_depth_mm`) and, because the slice profile is wider than the PSF, on
whether the surface faces along z. Per vessel and segment of ``segment_mm`` along its principal axis,
the profile P(s, orientation) is fitted robustly from the vessel's own voxels in each depth bin:

* inside the mask, one value over the whole circumference: a plaque covers part of it (arcs < 180°),
  so the first-pass *median* reads the calcium-free sectors, with no angular model to fit;
* outside the mask, per angular sector (8 of 45°): the tissue around a vessel differs by side (fat,
  a vein, an organ), and calcium lies in the wall, not there; inside, the blur of that side's tissue
  through the surface is added to the circumferential profile (``SIDE_EDGE``, :func:`_side_edge_hu`);
* the fit is trimmed once (voxels more than ``trim_sd`` robust SDs above it dropped) and refitted
  with *means*: the PV mass is a sum, and a median over a bin that straddles a steep edge is biased.

Blur is linear, so neighbouring vessels add: the model is ``T_owner + Σ_k (P_k(s_k) − T_k)`` over the
vessels k whose band holds the voxel, T_k the tissue level of k's outermost bins; a renal artery next
to the aorta sees the aorta's blurred edge in its background instead of fat. Where the tube model
cannot hold, the model says so: branch junctions (an ostium opens the parent's wall), the z-facing
caps of a vessel in thick slices (the surface lies somewhere within the slice), and vessels whose
mask is mostly calcium (``valid`` False; the caller falls back to the compartments background).
Junctions and caps seed no calcium, but one found in the tube grows through them (scored against
their own, larger error).

The residual ``image − model`` is the calcium's own blurred signal. :func:`residual_detection` scores
it against the model's own error per depth bin (this finds plaques darker than a contrast lumen,
which no threshold above the lumen can), and :func:`vascalc.calcium.pv.cluster_pv` integrates it over
each PV region (``background="model"``), less the model's local offset read in a ring around the
region, and fits it as a wall layer for the blur-corrected volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from vascalc.calcium.roi import margin_voxels, pad_box

#: fewest samples for one (segment, orientation, depth) median; below it the vessel-wide bin is used
MIN_BIN_SAMPLES = 12
#: the voxel-staircase surface replaces the smooth one only when its mean |residual| is this much
#: lower [T]
STAIRCASE_GAIN = 0.7
#: least calcium-free fraction of a vessel's mask for its model to hold [T]
MIN_VALID_FRACTION = 0.5
#: Gaussian (voxels) that turns a voxelised mask into a smooth surface (its 0.5 level) [T]
SMOOTH_VOXELS = 1.0
#: residual detection level in robust spreads of the model's own smoothed residual [T]
RESIDUAL_K_SD = 4.0
#: level a PV-only region's core must reach (regions not touching threshold calcium) [T]; round 4
#: tried 5 (raw 4) with the local offset: clean on the seed-7 dev cohort (177 calcium-free vessels
#: at 0.00 mg) but 11 mg in a calcium-free external iliac of the seed-0 bench at 3 mm: kept at 8
RESIDUAL_SEED_K_SD = 8.0
#: raw-residual level (residual SDs, after a 5-voxel in-plane median) of a PV-only region's core [T]
RESIDUAL_RAW_K_SD = 5.0
#: depth range (mm outside the mask) whose residual must stay dark beside a PV-only region [T]
OUTSIDE_CHECK_MM = (1.0, 2.4)
#: zones (1 thick-slice cap, 2 branch junction) through which a calcification found in the tube
#: may grow, scored against their own model error but never seeding one [T] (round 4: seeding
#: there too gave calcium-free external iliacs and renals 10–24 mg on the dev cohort)
GROW_ZONES: tuple[int, ...] = (1, 2)
#: level (zone spreads) at which a junction or cap voxel joins a calcification grown from the tube [T]
#: (round 4: at the tube's 4, small horizontal branches at 3 mm, 60 % cap, grew over their own
#: model error: +100 to +170 points on 4–6 mm³ renal plaques of the seed-0 bench)
ZONE_GROW_K_SD = 6.0
#: zones of :func:`residual_detection`: 0 tube, 1 thick-slice cap, 2 branch junction
N_ZONES = 3
#: PV region half-size (mm, at least one voxel) around the model's grown clusters: the blur tail [T]
MODEL_REGION_MM = 1.2


@dataclass(frozen=True)
class VesselBackground:
    """The calcium-free model of every vessel on a crop (arrays indexed by vessel index − 1).

    ``model_hu``: float32 crop array, the expected calcium-free HU, NaN outside every vessel's band.
    ``depth_mm``: signed distance to the owning vessel's mask surface (mm, > 0 inside; NaN outside
    the bands). ``residual_sd_hu``: 1.4826·MAD of image − model over the vessel's calcium-free
    samples (the noise the detection and the significance test use). ``tissue_hu``: T_k, median
    of the outermost bins; ``inside_hu``: median of the deepest bins (lumen); ``wall_hu``: the
    calcium-free HU the calcium displaces (see :func:`displaced_hu`). ``n_segments``: profile
    segments; ``n_samples``: samples kept after trimming; ``depth_owner``: the vessel index whose
    surface ``depth_mm`` measures (0 outside the bands); ``sampled``: the calcium-free samples of
    the final fit; ``junction``: voxels within ``junction_mm`` of two or more vessels (branch
    origins, bifurcations), where the tube model does not hold (an ostium opens the wall); ``cap``:
    with slices thicker than 1.5× the pixel, mask voxels with an outside neighbour along z (the
    surface lies somewhere inside such a slice); ``valid``: per vessel, whether the model holds (at
    least ``MIN_VALID_FRACTION`` of its mask is calcium-free sample).
    """

    model_hu: np.ndarray
    depth_mm: np.ndarray
    residual_sd_hu: np.ndarray
    tissue_hu: np.ndarray
    inside_hu: np.ndarray
    wall_hu: np.ndarray
    n_segments: np.ndarray
    n_samples: np.ndarray
    depth_owner: np.ndarray
    sampled: np.ndarray
    junction: np.ndarray
    cap: np.ndarray
    valid: np.ndarray
    band_mm: float
    bin_mm: float
    segment_mm: float

    def to_dict(self, names: list[str]) -> dict:
        """Per-vessel model parameters for ``result.json`` (``method.pv.background_model``)."""
        def num(x):
            return None if not np.isfinite(x) else round(float(x), 2)
        return {"band_mm": self.band_mm, "bin_mm": self.bin_mm, "segment_mm": self.segment_mm,
                "vessels": {name: {"valid": bool(self.valid[i]), "tissue_hu": num(self.tissue_hu[i]),
                                   "inside_hu": num(self.inside_hu[i]), "wall_hu": num(self.wall_hu[i]),
                                   "residual_sd_hu": num(self.residual_sd_hu[i]),
                                   "n_segments": int(self.n_segments[i]), "n_samples": int(self.n_samples[i])}
                            for i, name in enumerate(names)}}


def group_median(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(median, count) of ``values`` per integer key 0..n_keys−1 (NaN where empty), by one sort."""
    counts = np.bincount(keys, minlength=n_keys)
    out = np.full(n_keys, np.nan)
    if keys.size == 0:
        return out, counts
    order = np.lexsort((values, keys))
    sv = values[order]
    start = np.r_[0, np.cumsum(counts)[:-1]]
    has = counts > 0
    lo = start[has] + (counts[has] - 1) // 2
    hi = start[has] + counts[has] // 2
    out[has] = 0.5 * (sv[lo] + sv[hi])
    return out, counts


def group_mean(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, count) of ``values`` per integer key 0..n_keys−1 (NaN where empty)."""
    counts = np.bincount(keys, minlength=n_keys)
    sums = np.bincount(keys, weights=values, minlength=n_keys)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts


def signed_depth_mm(inside: np.ndarray, spacing: tuple[float, float, float], reach_mm: float | None = None,
                    staircase: bool = False) -> np.ndarray:
    """Signed distance (mm) to the surface of a voxelised mask: + inside, − outside.

    The Euclidean distance transform measures to the voxel staircase, which is off the smooth
    surface it samples by up to half a voxel in a pattern that changes from voxel to voxel; at a
    contrast lumen's edge (≈ 300 HU per mm) that is a 100 HU error. Here the surface is the 0.5
    level of the mask smoothed by a one-voxel Gaussian (``skimage.measure.marching_cubes``, sub-voxel
    vertices), and the distance of every voxel within ``reach_mm`` of it is the distance to the
    nearest vertex (``scipy.spatial.cKDTree``); farther voxels keep the distance transform's value.
    ``staircase=True`` keeps the distance transform everywhere (the surface half a voxel beyond the
    outermost mask voxel centres).
    """
    from scipy.spatial import cKDTree
    from skimage.measure import marching_cubes

    reach = float(reach_mm) if reach_mm is not None else 4.0 * max(spacing)
    # a vessel cut by the edge of the scan goes on beyond it: the mask is extended by its edge
    # values, so that the cut is no surface
    width = tuple(int(np.ceil(reach / sp)) + 2 for sp in spacing)
    ext = np.pad(inside, [(w, w) for w in width], mode="edge")
    core = tuple(slice(w, w + n) for w, n in zip(width, inside.shape))
    d_in = ndi.distance_transform_edt(ext, sampling=spacing)[core]
    d_out = ndi.distance_transform_edt(~ext, sampling=spacing)[core]
    s = np.where(inside, d_in - 0.5 * min(spacing), -(d_out - 0.5 * min(spacing)))
    if staircase:
        return s.astype(np.float32)
    smooth_ext = ndi.gaussian_filter(ext.astype(np.float32), sigma=SMOOTH_VOXELS, mode="nearest")
    smooth = smooth_ext[core]
    if smooth.max() <= 0.5 or smooth.min() >= 0.5:
        return s.astype(np.float32)
    verts, _, _, _ = marching_cubes(smooth_ext, level=0.5, spacing=spacing)
    verts -= np.asarray(width) * np.asarray(spacing)      # back to the unpadded frame
    near = np.abs(s) <= reach
    idx = np.nonzero(near)
    pts = np.stack(idx, axis=1) * np.asarray(spacing)
    dist, _ = cKDTree(verts).query(pts, workers=1)
    sign = np.where(smooth[idx] >= 0.5, 1.0, -1.0)
    s[idx] = sign * dist
    return s.astype(np.float32)


def vessel_background(hu: np.ndarray, mask_index: np.ndarray, near_index: np.ndarray, boxes: list,
                      spacing: tuple[float, float, float], exclude: np.ndarray | None = None,
                      band_mm: float = 4.0, bin_mm: float | None = None, segment_mm: float = 15.0,
                      trim_sd: float = 3.0, n_sectors: int = 8, junction_mm: float = 3.5) -> VesselBackground:
    """Fit the calcium-free profile model of every vessel and render it on the crop (module docstring).

    ``mask_index``: vessel index (1..V, 0 = none) of the undilated masks; ``near_index``: the
    nearest vessel within the background band (0 beyond), whose voxels are each vessel's samples;
    ``boxes``: per vessel index − 1 the mask's bounding box (None when absent); ``exclude``: voxels
    never sampled (calcium candidates, bone margin). ``band_mm``: how far outside the mask the model
    reaches; ``bin_mm`` (default half the finest spacing): depth bin; ``segment_mm``: profile segment
    length along the vessel. HU in, HU out; deterministic.
    """
    shape = hu.shape
    n_v = len(boxes)
    bin_mm = float(bin_mm if bin_mm is not None else 0.5 * min(spacing))
    model = np.full(shape, np.nan, dtype=np.float32)
    depth = np.full(shape, np.nan, dtype=np.float32)
    owner_depth = np.full(shape, np.inf, dtype=np.float32)   # |s| of the vessel that set ``depth``
    tissue_of = np.full(shape, np.nan, dtype=np.float32)
    depth_owner = np.zeros(shape, dtype=np.int16)
    sampled = np.zeros(shape, dtype=bool)
    n_close = np.zeros(shape, dtype=np.int8)
    cap = np.zeros(shape, dtype=bool)
    thick = spacing[0] > 1.5 * max(spacing[1], spacing[2])
    bump_sum = np.zeros(shape, dtype=np.float32)
    sd = np.full(n_v, np.nan)
    tissue = np.full(n_v, np.nan)
    inside_hu = np.full(n_v, np.nan)
    wall = np.full(n_v, np.nan)
    n_seg_out = np.zeros(n_v, dtype=np.int64)
    n_samp = np.zeros(n_v, dtype=np.int64)
    valid = np.zeros(n_v, dtype=bool)
    pad = margin_voxels(max(band_mm, junction_mm), spacing)
    finite = np.isfinite(hu)
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        sub = pad_box(box, pad, shape)
        inside = mask_index[sub] == k
        if not inside.any():
            continue
        best = None
        # two readings of the surface: the smooth one (anti-aliased, blurred images) and the voxel
        # staircase (images whose edges follow the mask voxels, e.g. a mask thresholded from the
        # image itself); the one whose model fits the vessel better (robust residual SD) is kept
        for staircase in (False, True):
            s = signed_depth_mm(inside, spacing, reach_mm=max(band_mm, 5.0), staircase=staircase)
            band = s >= -band_mm
            # orientation: |n_z| of the surface normal, from the gradient of the signed distance; the
            # slice profile blurs a surface facing z more than one facing sideways
            gz, gy, gx = (np.gradient(s, sp, axis=a) if s.shape[a] > 1 else np.zeros_like(s)
                          for a, sp in enumerate(spacing))
            facing_z = (np.abs(gz) > 0.5 * np.sqrt(gz * gz + gy * gy + gx * gx)).astype(np.int64)
            # segments along the vessel's principal axis (PCA of the mask voxels, in mm)
            pts = np.argwhere(inside).astype(np.float64) * np.asarray(spacing)
            centre = pts.mean(axis=0)
            step = max(1, pts.shape[0] // 20000)
            _, _, vt = np.linalg.svd(pts[::step] - centre, full_matrices=False)
            axis = vt[0]
            zz, yy, xx = np.nonzero(band)
            coords = np.stack([zz, yy, xx], axis=1).astype(np.float64)
            coords += np.array([sl.start for sl in sub], dtype=np.float64)
            t = (coords * np.asarray(spacing) - centre) @ axis
            # segments centred on the vessel's middle: the partition does not depend on the sign of
            # the axis, so the same scan stored flipped gives the same model
            t_mid = 0.5 * (float(t.min()) + float(t.max()))
            seg = np.floor((t - t_mid) / segment_mm).astype(np.int64)
            seg -= int(seg.min())
            n_seg = int(seg.max()) + 1
            sv = s[zz, yy, xx]
            b = np.floor((sv + band_mm) / bin_mm).astype(np.int64)
            nb = int(b.max()) + 1
            ori = facing_z[zz, yy, xx]
            vals = hu[sub][zz, yy, xx].astype(np.float64)
            ok = (near_index[sub][zz, yy, xx] == k) & finite[sub][zz, yy, xx]
            if exclude is not None:
                ok &= ~exclude[sub][zz, yy, xx]
            # angular sector around the local axis: the tissue outside a vessel differs by side (fat,
            # a vein, an organ), so outside the mask the profile is per sector; inside it is one median
            # over the circumference, which a plaque (arc < 180°) cannot move
            pmm = coords * np.asarray(spacing)
            inside_b = inside[zz, yy, xx]
            cnt = np.bincount(seg[inside_b], minlength=n_seg).astype(float)
            seg_c = np.stack([np.bincount(seg[inside_b], weights=pmm[inside_b, a], minlength=n_seg) for a in range(3)],
                             axis=1) / np.maximum(cnt, 1)[:, None]
            q = pmm - seg_c[seg]
            q -= np.outer(q @ axis, axis)
            u = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
            u /= np.linalg.norm(u)
            w = np.cross(axis, u)
            theta = np.arctan2(q @ w, q @ u)
            # sector edges half a sector off the axes: voxels on the grid axes through the centre are
            # common, and an edge through them would split them differently when the scan is flipped
            sector = np.floor((theta + np.pi) / (2 * np.pi) * n_sectors + 0.5).astype(np.int64) % n_sectors
            sector = np.where(sv < 0, sector, 0)
            n_keys = (n_seg * n_sectors * 2 * nb, n_seg * 2 * nb, 2 * nb, nb)
            keys = ((((seg * n_sectors + sector) * 2 + ori) * nb + b), (seg * 2 + ori) * nb + b, ori * nb + b, b)
            use = ok.copy()
            pred = np.full(vals.size, np.nan)
            sigma = np.nan
            for it in range(2):
                pred = np.full(vals.size, np.nan)
                # first pass medians (robust to the calcium still in the samples); after trimming,
                # means: the PV mass is a sum, and a median across a steep edge within a bin is biased
                stat = group_median if it == 0 else group_mean
                for key, nk in zip(keys, n_keys):
                    med_k, cnt_k = stat(key[use], vals[use], nk)
                    fill = ~np.isfinite(pred) & (cnt_k[key] >= MIN_BIN_SAMPLES)
                    pred[fill] = med_k[key[fill]]
                pred[~np.isfinite(pred)] = med_k[key[~np.isfinite(pred)]]
                r = vals - pred
                good = ok & np.isfinite(r)
                if not good.any():
                    break
                med = float(np.median(r[good]))
                sigma = 1.4826 * float(np.median(np.abs(r[good] - med)))
                # trim: calcium (and gas) in the samples, then refit once on the rest
                use = good & (r <= med + trim_sd * max(sigma, 1.0)) & (r >= med - max(2 * trim_sd * sigma, 100.0))
            # mean |residual| (not the MAD): the edge misfit is a minority of the samples, invisible to it
            err = float(np.mean(np.abs(r[good]))) if good.any() else np.inf
            # the staircase must fit clearly better: on anti-aliased images it wins by chance on
            # some vessels while misplacing their lumen edge
            if best is None or err < STAIRCASE_GAIN * best["err"]:
                best = dict(err=err, s=s, sigma=sigma, use=use, ok=ok, b=b, sv=sv, seg=seg, n_seg=n_seg, nb=nb,
                            vals=vals, ori=ori,
                            pred=pred, inside_b=inside_b, sector=sector, zz=zz, yy=yy, xx=xx)
        s, sigma, use, ok, b, sv, seg, n_seg, nb, vals, pred, inside_b, sector, zz, yy, xx, ori = (
            best[key] for key in ("s", "sigma", "use", "ok", "b", "sv", "seg", "n_seg", "nb", "vals", "pred",
                                  "inside_b", "sector", "zz", "yy", "xx", "ori"))
        sd[k - 1] = sigma
        n_samp[k - 1] = int(use.sum())
        # the tube model needs the vessel's own calcium-free inside: a mask that is mostly calcium
        # (an insert phantom's cylinder, a fully calcified segment) has no tissue to model
        inside_ok = ok & inside_b
        valid[k - 1] = bool(inside_ok.sum() >= MIN_VALID_FRACTION * inside_b.sum()
                            and inside_ok.sum() >= MIN_BIN_SAMPLES)
        n_seg_out[k - 1] = n_seg
        t_bins = max(1, int(round(0.75 / bin_mm)))
        outer = use & (b <= t_bins)
        deep = use & (sv >= np.quantile(sv[inside_b], 0.75)) if inside_b.any() else use & (sv > 0)
        tissue[k - 1] = float(np.median(vals[outer])) if outer.any() else np.nan
        inside_hu[k - 1] = float(np.median(vals[deep])) if deep.any() else np.nan
        wall[k - 1] = displaced_hu(inside_hu[k - 1])
        # tissue level T per (segment, sector): the model's outermost bins there
        ts_key = seg * n_sectors + np.where(sv < 0, sector, 0)
        outer_all = b <= t_bins
        t_med, t_cnt = group_median(ts_key[outer_all], pred[outer_all], n_seg * n_sectors)
        t_seg = np.where(t_cnt > 0, t_med, tissue[k - 1])
        # inside voxels take their segment's circumferential mean tissue level
        t_in, _ = group_median(seg[outer_all], pred[outer_all], n_seg)
        t_vox = np.where(sv < 0, t_seg[ts_key], np.where(np.isfinite(t_in[seg]), t_in[seg], tissue[k - 1]))
        t_vox = np.where(np.isfinite(t_vox), t_vox, tissue[k - 1])
        if SIDE_EDGE:
            pred = pred + _side_edge_hu(np.where(near_index[sub] == k, hu[sub], np.nan), s, zz, yy, xx, sv, ori, seg,
                                        n_seg, spacing)
        bump = np.nan_to_num(pred - t_vox).astype(np.float32)
        gz_ = zz + sub[0].start
        gy_ = yy + sub[1].start
        gx_ = xx + sub[2].start
        bump_sum[gz_, gy_, gx_] += bump
        # the voxel's own vessel (the one whose surface is nearest) gives depth and tissue level
        a = np.abs(sv).astype(np.float32)
        nearer = a < owner_depth[gz_, gy_, gx_]
        owner_depth[gz_[nearer], gy_[nearer], gx_[nearer]] = a[nearer]
        depth[gz_[nearer], gy_[nearer], gx_[nearer]] = sv[nearer]
        tissue_of[gz_[nearer], gy_[nearer], gx_[nearer]] = t_vox[nearer]
        depth_owner[gz_[nearer], gy_[nearer], gx_[nearer]] = k
        sampled[gz_[ok], gy_[ok], gx_[ok]] = True
        n_close[sub] += s >= -junction_mm
        if thick:
            # a mask slice with an outside neighbour along z: with thick slices the surface lies
            # anywhere within that slice, so depth (hence the model) is uncertain there
            out_z = np.zeros_like(inside)
            out_z[1:] |= ~inside[:-1]
            out_z[:-1] |= ~inside[1:]
            # only where the surface faces z: voxels deeper in-plane than the pixel (the in-plane rim
            # of a tilted vessel also has outside z-neighbours, but its surface is the in-plane edge)
            d_xy = ndi.distance_transform_edt(inside, sampling=(1e6, spacing[1], spacing[2]))
            cap[sub] |= inside & out_z & (d_xy > 1.01 * max(spacing[1], spacing[2]))
    has = np.isfinite(tissue_of)
    model[has] = tissue_of[has] + bump_sum[has]
    return VesselBackground(model, depth, sd, tissue, inside_hu, wall, n_seg_out, n_samp, depth_owner, sampled,
                            n_close > 1,
                            cap, valid,
                            float(band_mm), bin_mm,
                            float(segment_mm))


#: inside the mask, add the tissue just outside each side blurred in through the surface
#: (:func:`_side_edge_hu`) [T] (round 5: calcium-free dev phantoms' false aortic PV-only regions
#: 11–24 mg → 0)
SIDE_EDGE = True


def _side_edge_hu(hu_sub: np.ndarray, s_sub: np.ndarray, zz: np.ndarray, yy: np.ndarray, xx: np.ndarray,
                  sv: np.ndarray, facing_z: np.ndarray, seg: np.ndarray, n_seg: int,
                  spacing: tuple[float, float, float]) -> np.ndarray:
    """Correction (HU) of the circumferential inside profile for the tissue beside the vessel [T].

    The inside profile is one value over the circumference, but the blur carries the tissue outside
    the surface into the outer wall, and that tissue differs from side to side (fat at −100 HU; a
    muscle or organ touching the vessel at +50 to +90 HU). Blur is linear, so where the tissue just
    outside, T_loc, differs from its segment's mean over the circumference T̄, the image inside at
    depth s is raised by (T_loc − T̄)·Φ(−s/σ_n) (Φ the normal CDF: the part of the blur kernel beyond
    the surface; σ_n the system blur along the surface normal, in-plane or along z,
    :func:`vascalc.calcium.pv.blur_variance_mm2` with the default PSF and contiguous slices).
    T_loc is the Gaussian-weighted mean (2 mm in-plane, 1 mm along z) of the image over the shell
    1–2 mm outside the surface, where a wall calcification's blur has died out, among the voxels
    whose nearest vessel is this one (``hu_sub`` NaN elsewhere: a neighbour vessel's blur is the
    model's neighbour term). Without this the outer wall beside an
    organ is a +50 HU residual over centimetres, which the residual detection seeds as calcium while
    the outside check sees nothing (the outside profile is per sector and fits the organ).
    Returns the correction for the band voxels (zz, yy, xx) of the vessel's box; 0 outside the mask.
    """
    from scipy.special import ndtr

    from vascalc.calcium.pv import blur_variance_mm2

    var = blur_variance_mm2(spacing)
    sd = np.sqrt(np.where(facing_z > 0, var[0], 0.5 * (var[1] + var[2])))
    shell = (s_sub <= -1.0) & (s_sub >= -2.0) & np.isfinite(hu_sub)
    out = np.zeros(sv.shape)
    inside = (sv > 0) & (sv < 3.0 * float(np.sqrt(var.max())))
    if not shell.any() or not inside.any():
        return out
    # T_loc: normalised Gaussian average of the shell (2 mm in-plane, 1 mm along z; symmetric, so the
    # same scan stored flipped gives the same model), read at each inside voxel
    sigma = (1.0 / spacing[0], 2.0 / spacing[1], 2.0 / spacing[2])
    num = ndi.gaussian_filter(np.where(shell, hu_sub, 0.0).astype(np.float32), sigma, mode="constant")
    den = ndi.gaussian_filter(shell.astype(np.float32), sigma, mode="constant")
    zi, yi, xi = zz[inside], yy[inside], xx[inside]
    d_in = den[zi, yi, xi].astype(np.float64)
    has = d_in > 1e-3
    t_loc = np.where(has, num[zi, yi, xi] / np.maximum(d_in, 1e-3), np.nan)
    inside_idx = np.flatnonzero(inside)
    inside = np.zeros_like(inside)
    inside[inside_idx[has]] = True
    t_loc = t_loc[has]
    t_mean, _ = group_mean(seg[inside], t_loc, n_seg)
    w = ndtr(-sv[inside] / sd[inside])
    out[inside] = (t_loc - t_mean[seg[inside]]) * w
    return out


def displaced_hu(inside_hu: float) -> float:
    """HU of the tissue a wall calcification displaces [T]: the wall's soft tissue.

    Without contrast, lumen (blood) and wall are alike, and the vessel's deep inside level is read
    from the scan. In a contrast vessel (inside level more than 100 HU above soft tissue) the wall is
    thinner than the blur and its own HU never shows in the image (the blurred profile between a
    350 HU lumen and fat passes through it), so ``SOFT_TISSUE_HU`` is used.
    """
    if not np.isfinite(inside_hu):
        return float("nan")
    return SOFT_TISSUE_HU if inside_hu > SOFT_TISSUE_HU + 100.0 else float(inside_hu)


#: soft tissue (arterial wall) HU at 120 kVp used when a contrast vessel's wall is not resolved [T]
SOFT_TISSUE_HU = 45.0


def _binned_score(rs: np.ndarray, key_all: np.ndarray, group_all: np.ndarray, samp: np.ndarray, n_groups: int,
                  nb: int, min_bin_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(rs − bin median) / bin spread (1.4826·MAD over the calcium-free samples ``samp``), bins
    ``key_all`` = group·nb + depth bin; bins with fewer than ``min_bin_samples`` samples use their
    group's. Returns (score, per-group MAD, index 0..n_groups)."""
    keys = key_all[samp]
    vals = rs[samp].astype(np.float64)
    n_keys = (n_groups + 1) * nb
    med, cnt = group_median(keys, vals, n_keys)
    mad, _ = group_median(keys, np.abs(vals - np.nan_to_num(med[keys])), n_keys)
    g_keys = group_all[samp].astype(np.int64)
    g_med, _ = group_median(g_keys, vals, n_groups + 1)
    g_mad, _ = group_median(g_keys, np.abs(vals - np.nan_to_num(g_med[g_keys])), n_groups + 1)
    ok = cnt >= min_bin_samples
    spread = np.maximum(np.where(ok, 1.4826 * mad, np.repeat(1.4826 * g_mad, nb)), 1e-3)
    centre = np.where(ok, med, np.repeat(g_med, nb))
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((rs - centre[key_all]) / spread[key_all]).astype(np.float32), g_mad


def residual_detection(hu: np.ndarray, bg: VesselBackground, owner: np.ndarray, smooth_voxels: float = 1.0,
                       min_bin_samples: int = 30, min_depth_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Calcium of the model: ROI voxels whose smoothed residual stands out of the model's own error [T].

    The residual ``image − model`` of a calcium-free vessel is noise plus the model's error, and the
    error is not uniform: at a contrast lumen's edge (≈ 300 HU per mm) a 0.1 mm misplacement of
    the edge is ±30 HU, alternating from voxel to voxel, while in the lumen and wall it is nil. The
    residual is therefore smoothed by a Gaussian of ``smooth_voxels`` in-plane (half a voxel along z;
    a calcification's blurred signal is coherent over neighbouring voxels, the edge error is not),
    and compared per vessel and depth bin with the robust spread (1.4826·MAD) of the same smoothed
    residual over the fit's calcium-free samples. Bins with fewer than ``min_bin_samples`` samples
    use the vessel's spread. Only ROI voxels at least ``min_depth_mm`` inside their vessel's mask are
    scored. Branch junctions and thick-slice caps (``GROW_ZONES``), where the tube model is uncertain,
    are scored against the spread of their own zone's samples (per vessel and depth bin), rescaled so
    that ``RESIDUAL_K_SD`` means ``ZONE_GROW_K_SD`` of it, and capped just below
    ``RESIDUAL_SEED_K_SD``: a calcification found in the tube grows through them, none is seeded
    there. Returns (score = (smoothed residual − bin median) / bin spread, −inf where not
    scored; per-vessel spread in HU): calcium is score > ``RESIDUAL_K_SD``.
    """
    r = np.where(np.isfinite(bg.model_hu), hu - bg.model_hu, 0.0).astype(np.float32)
    sigma = (min(smooth_voxels, 0.5),) + (smooth_voxels,) * 2
    rs = ndi.gaussian_filter(r, sigma, mode="nearest")
    n_v = bg.residual_sd_hu.size
    has = np.isfinite(bg.depth_mm) & (bg.depth_owner > 0)
    nb = int(np.ceil((bg.band_mm + float(np.max(np.where(has, bg.depth_mm, 0.0)))) / bg.bin_mm)) + 2
    b_all = np.zeros(hu.shape, dtype=np.int64)
    b_all[has] = np.clip(np.floor((bg.depth_mm[has] + bg.band_mm) / bg.bin_mm).astype(np.int64), 0, nb - 1)
    samp = bg.sampled & has
    score, v_mad = _binned_score(rs, bg.depth_owner.astype(np.int64) * nb + b_all, bg.depth_owner, samp, n_v, nb,
                                 min_bin_samples)
    # calcium lies in the wall: inside the mask, where the tissue around is the model's own (outside
    # it, a missing fat plane or a touching vein is a brighter neighbour no tube model knows)
    valid = (owner > 0) & has & (bg.depth_mm >= min_depth_mm) & np.isfinite(score)
    valid &= np.r_[False, bg.valid][bg.depth_owner]
    zone = np.where(bg.junction, 2, np.where(bg.cap, 1, 0)).astype(np.int64)
    grow = np.isin(zone, GROW_ZONES) & valid
    if grow.any():
        # [T] junctions and thick-slice caps, where the tube model is uncertain, are scored against
        # their own model error (per vessel, zone and depth bin) and only below the seed level: a
        # calcification found in the tube grows through them, none starts there
        z_owner = bg.depth_owner.astype(np.int64) * N_ZONES + zone
        z_score, _ = _binned_score(rs, z_owner * nb + b_all, z_owner, samp, n_v * N_ZONES + N_ZONES - 1, nb,
                                   min_bin_samples)
        # rescaled so that the growth level RESIDUAL_K_SD means ZONE_GROW_K_SD of the zone's own spread
        z_score = z_score * (RESIDUAL_K_SD / ZONE_GROW_K_SD)
        score = np.where(grow, np.minimum(z_score, RESIDUAL_SEED_K_SD - 1e-3), score)
    valid &= (zone == 0) | grow
    score = np.where(valid, score, -np.inf).astype(np.float32)
    return score, 1.4826 * v_mad[1:]
