"""Learned T12–L5 corner localiser for lateral radiographs (corner heatmaps, MONAI U-Net).

The film is resampled (anti-aliased) to a fixed ``mm_per_px`` grid and centred on a square canvas
of ``canvas_px`` pixels (default 4 mm × 96 px = 384 mm, a lateral lumbar film), standardised, and
a small MONAI ``UNet`` predicts one heatmap per corner — 6 bodies (T12–L5) × 4 corners (AS, PS,
PI, AI, as :class:`~vascalc.phantoms.types.VertebraLandmark`) = 24 channels. Training minimises
the cross-entropy between each channel's spatial softmax and a Gaussian target (σ = 1 px): one
distribution per corner, as in integral / heatmap pose regression. A corner is decoded as the
probability-weighted mean over a 5 × 5 window around the channel's maximum (sub-pixel), mapped
back to film pixels. Fold models are averaged (heatmap logits) like the graders.

Test-time flip averaging (``localiser.json["inference"]["flip_average"]``): the canvas is also run
mirrored left/right and its heatmaps mirrored back before the logits are averaged. The corner
channels are anatomical (anterior/posterior, superior/inferior), and a mirrored lateral film is the
same spine facing the other way, so no channel is swapped — only the column axis is reversed.
:func:`check_landmarks` tests the decoded L1–L4 bodies for plausibility (order along the spine,
heights, depths, spacing, facing) so that the caller can flag or replace a gross failure.

Being on a fixed-mm grid, the localiser is indifferent to the detector's pixel size; with unknown
spacing the film is assumed 380 mm tall (as the model-free localiser does).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from vascalc.errors import InputError, OutputError, VascalcError
from vascalc.learn._deps import deterministic, require_monai, require_torch
from vascalc.learn.aac_local import apply_local_stage, load_local_stage, local_logits
from vascalc.learn.store import load_weights
from vascalc.phantoms.types import VertebraLandmark

NAMES = ("T12", "L1", "L2", "L3", "L4", "L5")
FORMAT = "vascalc-aac-localiser"


@dataclass(frozen=True)
class LocaliserConfig:
    """``mm_per_px`` of the network grid, ``canvas_px`` its side, U-Net ``channels``, training settings;
    ``n_folds``: networks in the ensemble of :func:`train_synthetic_localiser` (each on its own films)."""

    mm_per_px: float = 4.0
    canvas_px: int = 96
    channels: tuple[int, ...] = (8, 16, 32, 64)
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 3e-3
    sigma_px: float = 1.0
    n_folds: int = 1
    seed: int = 0


def to_canvas(image: np.ndarray, spacing_mm, config: LocaliserConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample ``image`` to the network grid and centre it on the canvas. Returns (canvas,
    offset (row, col) in canvas px, zoom = film px → canvas px, per axis equal)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise InputError(f"a radiograph must be a 2-D image, got shape {img.shape}")
    ps = np.asarray(spacing_mm, dtype=float) if spacing_mm is not None else np.array([380.0 / img.shape[0]] * 2)
    zoom = ps / config.mm_per_px
    if zoom.max() < 0.7:  # anti-alias before decimating
        img = ndimage.gaussian_filter(img, 0.4 / zoom)
    small = ndimage.zoom(img, zoom, order=1, grid_mode=True, mode="nearest")
    small = (small - small.mean()) / (small.std() + 1e-3)
    n = config.canvas_px
    canvas = np.zeros((n, n), dtype=np.float32)
    off = (np.array([n, n]) - np.array(small.shape)) // 2
    src0 = np.maximum(-off, 0)
    dst0 = np.maximum(off, 0)
    size = np.minimum(np.array(small.shape) - src0, n - dst0)
    canvas[dst0[0]:dst0[0] + size[0], dst0[1]:dst0[1] + size[1]] = small[src0[0]:src0[0] + size[0], src0[1]:src0[1] + size[1]]
    # film pixel p → canvas (p + 0.5)·zoom − 0.5 + off   (grid_mode zoom maps pixel areas)
    return canvas, off.astype(float), zoom


def _film_to_canvas(p, off, zoom):
    return (np.asarray(p, float) + 0.5) * zoom - 0.5 + off


def _canvas_to_film(q, off, zoom):
    return (np.asarray(q, float) - off + 0.5) / zoom - 0.5


def corner_targets(vertebrae, off, zoom) -> np.ndarray:
    """(24, 2) canvas coordinates of the T12–L5 corners (NaN for a missing level)."""
    by = {v.name: v for v in vertebrae}
    out = np.full((len(NAMES) * 4, 2), np.nan)
    for i, name in enumerate(NAMES):
        if name in by:
            out[4 * i:4 * i + 4] = _film_to_canvas(np.asarray(by[name].corners_px, float), off, zoom)
    return out


def build_localiser(config: LocaliserConfig):
    require_monai()
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=len(NAMES) * 4, channels=tuple(config.channels),
                strides=(2,) * (len(config.channels) - 1), num_res_units=1)


def heatmap_cross_entropy(logits, target):
    """Mean over corners of the cross-entropy between the target distribution and the spatial softmax
    of the logits; both (b, k, pixels) torch tensors (heatmap regression as a classification of the
    corner's pixel)."""
    torch = require_torch()
    return -(target * torch.log_softmax(logits, dim=2)).sum(dim=2).mean()


def _target_maps(points: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """Normalised Gaussian distributions (k, n, n) at ``points`` (k, 2); a zero map for NaN."""
    grid = np.arange(n, dtype=np.float32)
    gr = np.exp(-0.5 * ((grid[None, :] - points[:, :1]) / sigma) ** 2)
    gc = np.exp(-0.5 * ((grid[None, :] - points[:, 1:]) / sigma) ** 2)
    maps = gr[:, :, None] * gc[:, None, :]
    total = maps.sum(axis=(1, 2), keepdims=True)
    maps = np.where(total > 0, maps / np.maximum(total, 1e-12), 0.0)
    return np.nan_to_num(maps).astype(np.float32)


def decode(logits: np.ndarray) -> np.ndarray:
    """(k, n, n) logits → (k, 2) sub-pixel positions: softmax-weighted mean in a 5 × 5 window at the maximum."""
    k, n, _ = logits.shape
    out = np.zeros((k, 2))
    rr, cc = np.mgrid[-2:3, -2:3]
    for i in range(k):  # 24 channels: a loop over channels, not pixels
        r, c = np.unravel_index(int(np.argmax(logits[i])), (n, n))
        r0, c0 = np.clip(r, 2, n - 3), np.clip(c, 2, n - 3)
        w = logits[i, r0 - 2:r0 + 3, c0 - 2:c0 + 3].astype(np.float64)
        w = np.exp(w - w.max())
        w /= w.sum()
        out[i] = (r0 + (w * rr).sum(), c0 + (w * cc).sum())
    return out


def train_localiser(images: list[np.ndarray], spacings: list, vertebrae: list, config: LocaliserConfig,
                    *, seed: int = 0):
    """Train one U-Net on films with landmarks; returns (network in eval mode, loss per epoch)."""
    torch = require_torch()
    canv, maps = [], []
    for img, sp, verts in zip(images, spacings, vertebrae):
        c, off, zoom = to_canvas(img, sp, config)
        canv.append(c)
        maps.append(_target_maps(corner_targets(verts, off, zoom), config.canvas_px, config.sigma_px))
    x_all = torch.from_numpy(np.stack(canv)[:, None])
    y_all = torch.from_numpy(np.stack(maps))
    with deterministic(seed):
        net = build_localiser(config)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=1e-5)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
        rng = np.random.default_rng([seed, 17])
        losses = []
        for _ in range(config.epochs):
            net.train()
            order = rng.permutation(len(x_all))
            total = 0.0
            for s in range(0, len(order), config.batch_size):
                idx = torch.from_numpy(order[s:s + config.batch_size])
                if len(idx) < 2:
                    continue
                logits = net(x_all[idx]).flatten(2)
                target = y_all[idx].flatten(2)
                loss = heatmap_cross_entropy(logits, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            losses.append(total / len(x_all))
        net.eval()
    return net, losses


@dataclass(frozen=True, eq=False)
class LocaliserModel:
    """The coarse ensemble (``networks``, ``config``, ``localiser.json`` as ``metadata``) and, when the
    folder has one, the local corner stage (:class:`~vascalc.learn.aac_local.LocalStage`; None = none)."""

    networks: tuple
    config: LocaliserConfig
    metadata: dict
    local: object | None = None

    @property
    def flip_average(self) -> bool:
        """Whether inference averages the film with its left/right mirror (``localiser.json["inference"]``)."""
        return bool(self.metadata.get("inference", {}).get("flip_average", False))

    @property
    def refine_edges(self) -> bool:
        """Whether decoded corners are snapped to the film's edges (:func:`refine_corners`); on unless
        ``localiser.json["inference"]["refine_edges"]`` is false (validation: docs/radiograph.md)."""
        return bool(self.metadata.get("inference", {}).get("refine_edges", True))


def mirror_points(points, n_cols: int) -> np.ndarray:
    """(k, 2) (row, col) positions on an image ``n_cols`` wide → their positions on the image
    mirrored left/right (``image[:, ::-1]``): col ↦ n_cols − 1 − col, rows unchanged."""
    p = np.array(points, dtype=float)
    p[..., 1] = n_cols - 1 - p[..., 1]
    return p


def heatmap_logits(networks, canvas: np.ndarray, *, flip_average: bool = False) -> np.ndarray:
    """(k, n, n) corner-heatmap logits of the ensemble on ``canvas`` (n, n); with ``flip_average``
    the mirrored canvas's logits, mirrored back, are averaged in (test-time augmentation; on 200
    validation films it cut the mean L1–L4 corner error 4.6 → 3.8 mm, docs/radiograph.md)."""
    return local_logits(networks, np.asarray(canvas)[None], flip_average=flip_average)[0]


@dataclass(frozen=True)
class LandmarkCheck:
    """Plausibility of located vertebral bodies (:func:`check_landmarks`). ``problems``: one sentence
    each; ``flagged_levels``: the levels they implicate; ``heights_mm`` / ``depths_mm``: mean
    anterior/posterior height and mean endplate depth of each checked body; ``gaps_mm``: centre-to-centre
    distances along the spine between consecutive checked bodies."""

    ok: bool
    problems: tuple[str, ...]
    flagged_levels: tuple[str, ...]
    levels: tuple[str, ...]
    heights_mm: tuple[float, ...]
    depths_mm: tuple[float, ...]
    gaps_mm: tuple[float, ...]


#: Tolerances of :func:`check_landmarks`, as ratios to the median over the checked bodies. Chosen so that
#: the TRUE landmarks of 300 validation films (radiograph and DXA chains) never fail (docs/radiograph.md).
CHECK_LIMITS = {"height": (0.7, 1.4), "depth": (0.7, 1.4), "gap": (0.7, 1.4), "ant_post_ratio": (0.6, 1.67),
                "disc_overlap_mm": 3.0}


def check_landmarks(vertebrae, spacing_mm, levels=("L1", "L2", "L3", "L4")) -> LandmarkCheck:
    """Geometric sanity check of the bodies ``levels`` (corners AS, PS, PI, AI in film pixels, mm
    via ``spacing_mm``): each body's superior corners above its inferior ones along the spine axis
    (L-first → L-last centre), bodies in order with consecutive centre gaps, heights and depths within
    :data:`CHECK_LIMITS` of their medians, anterior/posterior height ratio bounded, the anterior side
    on the same side of the axis for every body (one facing direction), and no body overlapping the
    next by more than ``disc_overlap_mm``. A level missing from ``vertebrae`` is itself a problem."""
    by = {v.name: np.asarray(v.corners_px, float) for v in vertebrae}
    missing = [lv for lv in levels if lv not in by]
    if missing:
        return LandmarkCheck(False, (f"levels {', '.join(missing)} were not located",), tuple(missing), tuple(levels),
                             (), (), ())
    sp = np.asarray(spacing_mm, float)
    c = np.stack([by[lv] for lv in levels]) * sp  # (m, 4, 2) mm
    centres = c.mean(axis=1)
    axis = centres[-1] - centres[0]
    norm = np.linalg.norm(axis)
    problems: list[str] = []
    flagged: set[str] = set()
    if norm < 1e-6:
        return LandmarkCheck(False, ("the bodies collapse onto one point",), tuple(levels), tuple(levels), (), (), ())
    axis = axis / norm
    normal = np.array([-axis[1], axis[0]])
    along = c @ axis  # (m, 4) position of each corner along the spine
    height = 0.5 * (np.linalg.norm(c[:, 3] - c[:, 0], axis=1) + np.linalg.norm(c[:, 2] - c[:, 1], axis=1))
    depth = 0.5 * (np.linalg.norm(c[:, 1] - c[:, 0], axis=1) + np.linalg.norm(c[:, 2] - c[:, 3], axis=1))
    ratio = np.linalg.norm(c[:, 3] - c[:, 0], axis=1) / np.maximum(np.linalg.norm(c[:, 2] - c[:, 1], axis=1), 1e-6)
    gaps = np.diff(centres @ axis)
    lim = CHECK_LIMITS

    def outside(values, bounds):
        med = np.median(values)
        return (values < bounds[0] * med) | (values > bounds[1] * med)

    for k, lv in enumerate(levels):
        if not (along[k, 0] < along[k, 3] and along[k, 1] < along[k, 2]):
            problems.append(f"{lv}: superior corners not above the inferior ones")
            flagged.add(lv)
    for name, values in (("height", height), ("depth", depth)):
        for k in np.flatnonzero(outside(values, lim[name])):
            problems.append(f"{levels[k]}: body {name} {values[k]:.1f} mm far from the median {np.median(values):.1f} mm")
            flagged.add(levels[k])
    for k in np.flatnonzero((ratio < lim["ant_post_ratio"][0]) | (ratio > lim["ant_post_ratio"][1])):
        problems.append(f"{levels[k]}: anterior/posterior height ratio {ratio[k]:.2f} implausible")
        flagged.add(levels[k])
    if np.any(gaps <= 0):
        problems.append("bodies out of order along the spine")
        flagged.update(levels)
    elif len(gaps) > 1:
        for k in np.flatnonzero(outside(gaps, lim["gap"])):
            problems.append(f"{levels[k]}–{levels[k + 1]}: spacing {gaps[k]:.1f} mm far from the median {np.median(gaps):.1f} mm")
            flagged.update((levels[k], levels[k + 1]))
    side = np.sign((c[:, 0] + c[:, 3] - c[:, 1] - c[:, 2]) @ normal)  # anterior edge relative to posterior
    if np.any(side != side[0]) or np.any(side == 0):
        problems.append("anterior sides point both ways (facing direction inconsistent)")
        flagged.update(levels)
    for k in range(len(levels) - 1):
        # inferior endplate of body k (mean of PI, AI) against the superior endplate of body k + 1
        overlap = along[k, 2:].mean() - along[k + 1, :2].mean()
        if overlap > lim["disc_overlap_mm"]:
            problems.append(f"{levels[k]} overlaps {levels[k + 1]} by {overlap:.1f} mm")
            flagged.update((levels[k], levels[k + 1]))
    order = [lv for lv in levels if lv in flagged]
    return LandmarkCheck(ok=not problems, problems=tuple(problems), flagged_levels=tuple(order), levels=tuple(levels),
                         heights_mm=tuple(round(float(v), 2) for v in height),
                         depths_mm=tuple(round(float(v), 2) for v in depth), gaps_mm=tuple(round(float(v), 2) for v in gaps))


def save_localiser(out_dir: Path, networks, config: LocaliserConfig, metadata: dict) -> None:
    torch = require_torch()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the model folder {out} ({error})") from None
    for k, net in enumerate(networks):
        torch.save(net.state_dict(), out / f"localiser_fold{k}.pt")
    meta = {"format": FORMAT, "n_networks": len(networks), "config": {**asdict(config), "channels": list(config.channels)},
            **metadata}
    (out / "localiser.json").write_text(json.dumps(meta, indent=2))


def load_localiser(model_dir: str | Path) -> LocaliserModel:
    require_torch()
    folder = Path(model_dir)
    path = folder / "localiser.json"
    if not path.is_file():
        raise InputError(f"{folder} has no learned localiser (no localiser.json)")
    meta = json.loads(path.read_text())
    cfg = meta["config"]
    config = LocaliserConfig(**{**cfg, "channels": tuple(cfg["channels"])})
    nets = tuple(load_weights(build_localiser(config), folder / f"localiser_fold{k}.pt")
                 for k in range(int(meta["n_networks"])))
    return LocaliserModel(nets, config, meta, load_local_stage(folder, meta))


def place_corners(model: LocaliserModel, image: np.ndarray, spacing_mm, repaired) -> tuple[VertebraLandmark, ...]:
    """The shipped steps after :func:`repair_heights`: :func:`refine_corners` (edge snapping) and,
    when the model has a local stage, that stage after it (``order="after_refine"``) or instead of it
    (``"replace_refine"``; :mod:`vascalc.learn.aac_local`). Without a local stage this is exactly
    ``refine_corners`` (the behaviour before round 16)."""
    local = model.local
    if local is not None and local.order == "replace_refine":
        return apply_local_stage(local, image, spacing_mm, repaired)
    refined = refine_corners(image, spacing_mm, repaired)
    return refined if local is None else apply_local_stage(local, image, spacing_mm, refined)


def locate_learned(model: LocaliserModel | str | Path, image: np.ndarray, spacing_mm, *,
                   flip_average: bool | None = None, refine: bool | None = None) -> tuple[VertebraLandmark, ...]:
    """T12–L5 corners (film pixels) predicted by the localiser ensemble; ``flip_average`` (default:
    the model's ``localiser.json["inference"]`` setting) adds the mirrored film (test-time augmentation);
    ``refine`` (default :attr:`LocaliserModel.refine_edges`, on) re-places bodies of implausible height
    (:func:`repair_heights`) and snaps the corners to the film's endplate and anterior-border edges
    (:func:`refine_corners`); on 300 validation films this cut the mean L1–L4 corner error 3.1 → 1.9 /
    1.6 mm and the end-to-end AAC-24 MAE 1.22 → 0.98 / 1.33 → 1.09 (radiograph / DXA chain; round 6,
    ±4 mm search; round 8's ±8 mm: docs/radiograph.md). A model folder with a local corner stage
    applies it too (:func:`place_corners`; round 16); ``refine=False`` returns the coarse corners only."""
    m = model if isinstance(model, LocaliserModel) else load_localiser(model)
    canvas, off, zoom = to_canvas(image, spacing_mm, m.config)
    flip = m.flip_average if flip_average is None else bool(flip_average)
    logits = heatmap_logits(m.networks, canvas, flip_average=flip)
    pts = _canvas_to_film(decode(logits), off, zoom)
    out = []
    for i, name in enumerate(NAMES):
        corners = tuple((round(float(r), 3), round(float(c), 3)) for r, c in pts[4 * i:4 * i + 4])
        centre = tuple(round(float(v), 3) for v in pts[4 * i:4 * i + 4].mean(axis=0))
        out.append(VertebraLandmark(name=name, corners_px=corners, centre_px=centre))
    if m.refine_edges if refine is None else refine:
        return place_corners(m, image, spacing_mm, repair_heights(tuple(out), spacing_mm))
    return tuple(out)


#: Edge refinement of learned corners (:func:`refine_corners`): search half-width along each edge's
#: normal (mm), profile sample step (mm), the Gaussian pre-smoothing (mm), the minimum edge
#: strength (peak gradient over the median absolute gradient of the search window) and the anterior
#: border's own half-width (None = ``search_mm``). ±8 mm since round 8 (±4 mm before): 4–12 % of the
#: learned edges are more than 4 mm off; validation end-to-end MAE pooled over the radiograph,
#: fine-pixel and DXA chains 1.050 → 0.994 (docs/radiograph.md, "round 8").
REFINE_DEFAULTS = {"search_mm": 8.0, "step_mm": 0.5, "smooth_mm": 1.0, "min_strength": 2.0, "anterior_search_mm": None}


def _edge_offset(image: np.ndarray, starts: np.ndarray, direction: np.ndarray, offsets: np.ndarray,
                 sign: float, min_strength: float) -> float | None:
    """Offset (mm, like ``offsets``) of the strongest step along ``direction`` averaged over
    the profiles that start at ``starts`` (k, 2): the maximum of sign × dI/doffset of the mean
    profile, refined by a parabola; None when the step is not clearly above the window's gradients."""
    coords = starts[:, None, :] + offsets[None, :, None] * direction[None, None, :]  # (k, m, 2)
    prof = ndimage.map_coordinates(image, [coords[..., 0], coords[..., 1]], order=1, mode="nearest").mean(axis=0)
    grad = sign * np.gradient(prof, offsets)
    k = int(np.argmax(grad[1:-1])) + 1
    scale = float(np.median(np.abs(grad))) + 1e-12
    if grad[k] < min_strength * scale:
        return None
    a, b, c = grad[k - 1], grad[k], grad[k + 1]
    denom = a - 2 * b + c
    frac = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return float(offsets[k] + np.clip(frac, -0.5, 0.5) * (offsets[1] - offsets[0]))


#: Body heights (endplate centre to endplate centre along the spine) outside these ratios to the
#: median height are repaired by :func:`repair_heights` (the ratios of :data:`CHECK_LIMITS`).
REPAIR_LIMITS = (0.7, 1.4)


def repair_heights(vertebrae, spacing_mm, *,
                   limits: tuple[float, float] = REPAIR_LIMITS) -> tuple[VertebraLandmark, ...]:
    """Re-place the wrong endplate of a body whose height is implausible (a corner pair that jumped
    to another endplate — the learned localiser's gross failure mode).

    Heights h_k = (inferior − superior endplate centre) · spine axis (axis from the first to the last
    body centre), H = their median, G = the median disc gap (next superior − this inferior). A body
    with h outside ``limits`` × H, or whose anterior or posterior height is, is judged against its
    reliable neighbours (not flagged, or already repaired, bodies processed cranio-caudally): the
    endplate farther from its neighbour's endplate ± G is the wrong one (with one neighbour: that
    side's endplate is right when within 0.35 H, else wrong) and is moved to the other endplate
    ± H along the axis, corner by corner. A repaired body that then overlaps a neighbour by more than
    ``CHECK_LIMITS["disc_overlap_mm"]`` is put back. Needs ≥ 3 bodies; fewer are returned unchanged."""
    verts = list(vertebrae)
    if len(verts) < 3:
        return tuple(verts)
    sp = np.asarray(spacing_mm, dtype=float)
    c = np.stack([np.asarray(v.corners_px, float) for v in verts]) * sp  # (m, 4, 2) mm
    centres = c.mean(axis=1)
    axis = centres[-1] - centres[0]
    if np.linalg.norm(axis) < 1e-6:
        return tuple(verts)
    axis = axis / np.linalg.norm(axis)
    along = c @ axis  # (m, 4): AS, PS, PI, AI
    sup, inf = along[:, :2].mean(axis=1), along[:, 2:].mean(axis=1)
    h, h_ant, h_post = inf - sup, along[:, 3] - along[:, 0], along[:, 2] - along[:, 1]
    H = float(np.median(h))
    if not H > 0:
        return tuple(verts)
    G = float(np.median(sup[1:] - inf[:-1]))
    lo, hi = limits[0] * H, limits[1] * H
    bad = (h < lo) | (h > hi) | (h_ant < lo) | (h_ant > hi) | (h_post < lo) | (h_post > hi)
    reliable = ~bad
    for k in np.flatnonzero(bad):
        err_sup = abs(sup[k] - (inf[k - 1] + G)) if k > 0 and reliable[k - 1] else None
        err_inf = abs(inf[k] - (sup[k + 1] - G)) if k + 1 < len(verts) and reliable[k + 1] else None
        if err_sup is None and err_inf is None:
            continue
        if err_sup is not None and err_inf is not None:
            move_inferior = err_inf >= err_sup
        elif err_sup is not None:
            move_inferior = err_sup < 0.35 * H
        else:
            move_inferior = err_inf >= 0.35 * H
        if move_inferior:  # keep AS, PS; slide AI, PI along the axis to one median height below them
            c[k, 3] += (H - h_ant[k]) * axis
            c[k, 2] += (H - h_post[k]) * axis
        else:  # keep AI, PI; slide AS, PS to one median height above them
            c[k, 0] -= (H - h_ant[k]) * axis
            c[k, 1] -= (H - h_post[k]) * axis
        sup[k], inf[k] = (c[k, :2] @ axis).mean(), (c[k, 2:] @ axis).mean()
        reliable[k] = True
    # do no harm: a repaired body that now overlaps a neighbour by more than the check's limit is
    # put back as it was (its error is then left to the geometric check)
    limit = CHECK_LIMITS["disc_overlap_mm"]
    original = np.stack([np.asarray(v.corners_px, float) for v in verts]) * sp
    for k in np.flatnonzero(bad):
        ends = c[:, :2] @ axis, c[:, 2:] @ axis
        top, bottom = ends[0].mean(axis=1), ends[1].mean(axis=1)
        if (k > 0 and bottom[k - 1] - top[k] > limit) or (k + 1 < len(verts) and bottom[k] - top[k + 1] > limit):
            c[k] = original[k]
    out = []
    for v, corners in zip(verts, c / sp):
        if np.allclose(corners, np.asarray(v.corners_px, float)):
            out.append(v)
            continue
        out.append(VertebraLandmark(name=v.name, corners_px=tuple((round(float(r), 3), round(float(q), 3))
                                                                  for r, q in corners),
                                    centre_px=tuple(round(float(x), 3) for x in corners.mean(axis=0))))
    return tuple(out)


def refine_corners(image: np.ndarray, spacing_mm, vertebrae, *, search_mm: float = REFINE_DEFAULTS["search_mm"],
                   step_mm: float = REFINE_DEFAULTS["step_mm"], smooth_mm: float = REFINE_DEFAULTS["smooth_mm"],
                   min_strength: float = REFINE_DEFAULTS["min_strength"],
                   anterior_search_mm: float | None = REFINE_DEFAULTS["anterior_search_mm"]) -> tuple[VertebraLandmark, ...]:
    """Snap each body's endplates and anterior border to the nearest strong intensity step.

    Model-free and general: in each body's own frame (u from the superior to the inferior endplate
    midpoint, a from the posterior to the anterior corners), profiles across an edge are sampled on
    the film (smoothed by ``smooth_mm``) within ±``search_mm`` of the given edge, every ``step_mm``,
    and averaged along each half of the edge: the superior endplate is the strongest dark→bright step
    going caudally (disc into bone), the inferior the strongest bright→dark one, the anterior border
    the strongest bright→dark step going anteriorly (sub-sample by a parabola). The two halves'
    offsets are extended linearly to the edge's corners (at most ``search_mm``), so a tilted estimate
    is corrected too: endplate corners move along u, anterior corners along a; posterior corners only
    move with their endplates. A half whose step is below ``min_strength`` × the window's median
    gradient gives no offset (the other half's is used for both; with neither the edge stays).
    ``anterior_search_mm`` (None: ``search_mm``) is the anterior border's own half-width.
    Everything is in mm (profiles sampled every ``step_mm`` by interpolation, the smoothing σ converted
    per axis), so the result does not depend on the detector's pixel size.
    Levels keep their names; loops run over bodies and edges only (each profile set is one
    vectorised ``map_coordinates`` call), on the spine's box of the film only."""
    img = np.asarray(image, dtype=np.float32)
    sp = np.asarray(spacing_mm if spacing_mm is not None else (380.0 / img.shape[0],) * 2, dtype=float)
    # only the spine's neighbourhood is smoothed and sampled: crop to the corners' box plus the
    # search range and the smoothing kernel's reach (4 σ), which keeps fine films fast
    pts = np.concatenate([np.asarray(v.corners_px, float) for v in vertebrae]) if vertebrae else np.zeros((1, 2))
    ant_mm = search_mm if anterior_search_mm is None else float(anterior_search_mm)
    margin = np.ceil((max(search_mm, ant_mm) + 4.0 * smooth_mm + 2.0) / sp).astype(int)
    lo = np.clip(np.floor(pts.min(axis=0)).astype(int) - margin, 0, np.array(img.shape) - 1)
    hi = np.clip(np.ceil(pts.max(axis=0)).astype(int) + margin + 1, lo + 1, np.array(img.shape))
    img = img[lo[0]:hi[0], lo[1]:hi[1]]
    if smooth_mm > 0:
        img = ndimage.gaussian_filter(img, smooth_mm / sp)
    origin_mm = lo * sp
    out = []
    fr = np.linspace(0.15, 0.85, 8)
    for v in vertebrae:
        c = np.asarray(v.corners_px, float) * sp - origin_mm  # AS, PS, PI, AI in mm, crop frame
        u = (c[2] + c[3] - c[0] - c[1]) / 2
        a = (c[0] + c[3] - c[1] - c[2]) / 2
        if np.linalg.norm(u) < 1e-6 or np.linalg.norm(a) < 1e-6:
            out.append(v)
            continue
        u, a = u / np.linalg.norm(u), a / np.linalg.norm(a)
        new = c.copy()

        def shifts(p, q, direction, sign, reach=search_mm):
            # the edge p→q (mm) is located in its two halves; the two offsets, at the halves' mean
            # positions, are extended linearly to p and q (so a tilted estimate is corrected too)
            offs = np.arange(-reach, reach + 1e-9, step_mm)
            found = []
            for f0, f1 in ((0.0, 0.5), (0.5, 1.0)):
                f = fr[(fr >= f0) & (fr <= f1)]
                starts = (p[None, :] + f[:, None] * (q - p)[None, :]) / sp
                found.append((float(f.mean()), _edge_offset(img, starts, direction / sp, offs, sign, min_strength)))
            (fa, da), (fb, db) = found
            if da is None and db is None:
                return 0.0, 0.0
            if da is None or db is None:
                d = da if db is None else db
                return d, d
            slope = (db - da) / (fb - fa)
            return (float(np.clip(da - slope * fa, -reach, reach)),
                    float(np.clip(da + slope * (1.0 - fa), -reach, reach)))

        # superior endplate AS→PS: bone below (along +u) → intensity rises along +u
        d0, d1 = shifts(c[0], c[1], u, +1.0)
        new[0] += u * d0
        new[1] += u * d1
        # inferior endplate AI→PI: intensity falls along +u
        d3, d2 = shifts(c[3], c[2], u, -1.0)
        new[3] += u * d3
        new[2] += u * d2
        # anterior border AS→AI: soft tissue in front (along +a) → intensity falls along +a
        d0, d3 = shifts(c[0], c[3], a, -1.0, ant_mm)
        new[0] += a * d0
        new[3] += a * d3
        px = (new + origin_mm) / sp
        corners = tuple((round(float(r), 3), round(float(q), 3)) for r, q in px)
        out.append(VertebraLandmark(name=v.name, corners_px=corners,
                                    centre_px=tuple(round(float(x), 3) for x in px.mean(axis=0))))
    return tuple(out)


def with_true_edges(found, truth, spacing_mm, part: str, levels=("L1", "L2", "L3", "L4")) -> tuple[VertebraLandmark, ...]:
    """``found`` with one geometric quantity of each body in ``levels`` made true (an oracle for
    :func:`validate_localiser`): ``part="anterior"`` moves AS and AI along the true spine's anterior
    normal by their mean error along it; ``part="endplates"`` moves each endplate's two corners along
    the true spine axis by their mean error along it. Other components of the error are kept."""
    from vascalc.radiograph.kauppila import spine_geometry

    if part not in ("anterior", "endplates"):
        raise InputError(f"part must be 'anterior' or 'endplates', got {part!r}")
    sp = np.asarray(spacing_mm, dtype=float)
    g = spine_geometry(truth, sp)
    axis, ant = np.asarray(g.axis, float), np.asarray(g.anterior, float)
    true = {v.name: np.asarray(v.corners_px, float) * sp for v in truth}
    out = []
    for v in found:
        if v.name not in levels or v.name not in true:
            out.append(v)
            continue
        p = np.asarray(v.corners_px, float) * sp
        d = p - true[v.name]
        if part == "anterior":
            p[[0, 3]] -= ((d[0] + d[3]) @ ant / 2) * ant
        else:
            p[[0, 1]] -= ((d[0] + d[1]) @ axis / 2) * axis
            p[[2, 3]] -= ((d[2] + d[3]) @ axis / 2) * axis
        px = p / sp
        out.append(VertebraLandmark(name=v.name, corners_px=tuple((float(r), float(c)) for r, c in px),
                                    centre_px=tuple(float(x) for x in px.mean(axis=0))))
    return tuple(out)


def corner_error_mm(truth, predicted, spacing_mm, levels=("L1", "L2", "L3", "L4")) -> float:
    """Mean distance (mm) between true and predicted corners of ``levels``."""
    t = {v.name: np.asarray(v.corners_px, float) for v in truth}
    p = {v.name: np.asarray(v.corners_px, float) for v in predicted}
    sp = np.asarray(spacing_mm, float)
    return float(np.mean([np.linalg.norm((t[lv] - p[lv]) * sp, axis=1).mean() for lv in levels]))


#: Seeds of the localiser validation films (:func:`validate_localiser`): inside the validation range
#: (``learn.aac.VALIDATION_SEED_OFFSET`` = 4 000 000 …) and after the films of the v2 selection
#: (4 050 000 …, 4 060 000 …), never training (< 10⁶) or held-out (10⁶ … 2·10⁶ − 1) films.
LOCALISER_VALIDATION_OFFSET = 4_070_000


def _signed_and_abs(x: np.ndarray) -> list[float]:
    """[mean, mean absolute value] of signed errors (mm), rounded for a report."""
    return [round(float(x.mean()), 3), round(float(np.abs(x).mean()), 3)]


def validate_localiser(model_dir, n: int = 100, *, chain: str = "radiograph", seed_offset: int | None = None,
                       grader=None, refine_options: dict | None = None,
                       pixel_spacing_mm: float | tuple[float, float] | None = None) -> dict:
    """Where the learned localiser's error goes, on validation films, and what it costs end to end.

    Films: ``make_lateral_spine(seed_offset + i, chain=chain)`` (default seeds
    :data:`LOCALISER_VALIDATION_OFFSET` + i for the radiograph chain, + 5000 for DXA). For the
    learned landmarks, without and with :func:`refine_corners` (and with :func:`repair_heights` first),
    per level L1–L4: mean corner error
    (mm), the superior/inferior endplate-centre error along the true spine axis and the anterior
    border error along its normal (signed means and mean absolute values, mm) — the three quantities
    the grader's segments depend on (B.2 steps 1–2). With a ``grader`` (a model folder or
    :class:`~vascalc.learn.aac.AacEnsemble`): AAC-24 MAE with the true, learned and refined landmarks
    on the films every variant locates, and the MAE when a single level's learned corners are
    replaced by the true ones (how much each level's error costs); ``aac24_each_variant``: each
    variant on all the films it can grade by itself; ``repaired_true_anterior`` / ``…_endplates``: the
    repaired + refined corners with that quantity made true (:func:`with_true_edges`). ``"repaired"`` = :func:`repair_heights` then
    :func:`refine_corners`; ``"local"`` (only for a folder with a local corner stage) = :func:`place_corners`
    after the repair, i.e. what :func:`locate_learned` ships. ``pixel_spacing_mm`` (a value or a (lo, hi)
    range) overrides the films'
    spacing — ``(0.15, 0.3)`` is ``learn.aac``'s fine-pixel test chain; those films get their own
    validation seeds :data:`LOCALISER_VALIDATION_OFFSET` + 10 000 + i unless ``seed_offset`` is given."""
    from vascalc.learn.aac import AacEnsemble, load_aac_ensemble, predict_grades
    from vascalc.phantoms.lateral_spine import make_lateral_spine
    from vascalc.radiograph.kauppila import spine_geometry

    model = model_dir if isinstance(model_dir, LocaliserModel) else load_localiser(model_dir)
    ens = None if grader is None else (grader if isinstance(grader, AacEnsemble) else load_aac_ensemble(grader))
    if seed_offset is not None:
        offset = seed_offset
    elif pixel_spacing_mm is not None:  # e.g. the fine-pixel chain (0.15, 0.3) of learn.aac's "radiograph_fine"
        offset = LOCALISER_VALIDATION_OFFSET + 10_000
    else:
        offset = LOCALISER_VALIDATION_OFFSET + (5_000 if chain == "dxa" else 0)
    levels = ("L1", "L2", "L3", "L4")
    # "local": the folder's own finishing steps (repair, refinement, local corner stage) when it has a local stage
    variants = ("learned", "refined", "repaired") + (("local",) if model.local is not None else ())
    rows = {v: [] for v in variants}
    aac = {k: [] for k in ("truth", "true_landmarks", *variants, *(f"oracle_{lv}" for lv in levels),
                           "repaired_true_anterior", "repaired_true_endplates")}
    failed = 0
    refused: dict[str, int] = {}
    all_abs: dict[str, list] = {}
    t_refine = 0.0
    for i in range(int(n)):
        film = make_lateral_spine(offset + i, chain=chain, pixel_spacing_mm=pixel_spacing_mm)
        sp = film.pixel_spacing_mm
        true = {v.name: v for v in film.vertebrae}
        learned = locate_learned(model, film.image, sp, refine=False)
        start = time.perf_counter()
        refined = refine_corners(film.image, sp, learned, **(refine_options or {}))
        repaired = refine_corners(film.image, sp, repair_heights(learned, sp), **(refine_options or {}))
        t_refine += time.perf_counter() - start
        found_by = {"learned": learned, "refined": refined, "repaired": repaired}
        if model.local is not None:
            found_by["local"] = place_corners(model, film.image, sp, repair_heights(learned, sp))
        g = spine_geometry(film.vertebrae, sp)
        axis, ant = np.asarray(g.axis), np.asarray(g.anterior)
        for name, found in found_by.items():
            by = {v.name: v for v in found}
            row = []
            for lv in levels:
                t, p = np.asarray(true[lv].corners_px) * sp, np.asarray(by[lv].corners_px) * sp
                d = p - t
                row.append([float(np.linalg.norm(d, axis=1).mean()), float((d[0] + d[1]) @ axis / 2),
                            float((d[2] + d[3]) @ axis / 2), float((d[0] + d[3]) @ ant / 2)])
            rows[name].append(row)
        if ens is None:
            continue
        graded = {}
        marks = {"true_landmarks": film.vertebrae, **found_by}
        for lv in levels:
            marks[f"oracle_{lv}"] = tuple(true[v.name] if v.name == lv else v for v in learned)
        for part in ("anterior", "endplates"):  # which geometric quantity of the final corners costs the MAE
            marks[f"repaired_true_{part}"] = with_true_edges(repaired, film.vertebrae, sp, part)
        for name, found in marks.items():
            try:
                graded[name] = sum(predict_grades(ens, film.image, found, sp)[0].values())
            except VascalcError:  # implausible landmarks (spine_geometry refuses them)
                refused[name] = refused.get(name, 0) + 1
                all_abs.setdefault(name, []).append(None)
            else:
                all_abs.setdefault(name, []).append(abs(graded[name] - film.aac24))
        if len(graded) < len(marks):
            failed += 1
            continue
        aac["truth"].append(film.aac24)
        for k, val in graded.items():
            aac[k].append(val)
    report = {"n": int(n), "chain": chain, "seeds": [offset, offset + int(n) - 1],
              "pixel_spacing_mm": None if pixel_spacing_mm is None else list(np.atleast_1d(pixel_spacing_mm).astype(float)),
              "refine_options": {**REFINE_DEFAULTS, **(refine_options or {})},
              "refine_s_per_film": round(t_refine / max(1, n), 4), "levels": {}}
    for name in variants:
        arr = np.asarray(rows[name])  # (films, levels, 4)
        report[f"corner_error_mm_mean_{name}"] = round(float(arr[:, :, 0].mean()), 3)
        report[f"corner_error_mm_median_{name}"] = round(float(np.median(arr[:, :, 0].mean(axis=1))), 3)
        for k, lv in enumerate(levels):
            e = arr[:, k]
            report["levels"].setdefault(lv, {})[name] = {
                "corner_error_mm": round(float(e[:, 0].mean()), 3),
                "superior_endplate_along_axis_mm": _signed_and_abs(e[:, 1]),
                "inferior_endplate_along_axis_mm": _signed_and_abs(e[:, 2]),
                "anterior_border_mm": _signed_and_abs(e[:, 3])}
    if ens is not None and aac["truth"]:
        truth = np.asarray(aac["truth"], float)
        report["aac24_graded_films"] = len(truth)
        report["aac24_not_graded"] = failed
        report["aac24_refused_by_variant"] = refused
        report["aac24_mae"] = {k: round(float(np.mean(np.abs(np.asarray(v, float) - truth))), 3)
                               for k, v in aac.items() if k != "truth"}
        # each variant on every film it can grade by itself (as evaluate_aac counts them)
        report["aac24_each_variant"] = {k: {"graded": int(sum(x is not None for x in v)),
                                            "mae": round(float(np.mean([x for x in v if x is not None])), 3)}
                                        for k, v in all_abs.items() if any(x is not None for x in v)}
    return report


def train_synthetic_localiser(out_dir: str | Path, n_train: int = 600, seed: int = 0,
                              config: LocaliserConfig | None = None, n_test: int = 0, *,
                              flip_average: bool = True) -> dict:
    """Train ``config.n_folds`` localiser networks on generated films and save the ensemble into ``out_dir``.

    Network k is trained on its own films — radiograph chain at 1–2 mm pixels, seeds
    ``(seed + k)·10⁴ + 5000 + i``, i < ``n_train``, disjoint from the graders' and the test seeds —
    with training seed ``seed + k`` (so network 0 of ``seed=0`` is v1's single network). The ensemble
    averages the heatmap logits; ``flip_average`` is stored as the inference setting
    (``localiser.json["inference"]``). With ``n_test``, the mean L1–L4 corner error (mm) of the saved
    ensemble on held-out films of the radiograph and DXA chains is reported."""
    from vascalc.learn.aac import TEST_SEED_OFFSET
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    cfg = config or LocaliserConfig()
    nets, losses, data_s, train_s = [], [], 0.0, 0.0
    for k in range(max(1, int(cfg.n_folds))):
        start = time.perf_counter()
        films = [make_lateral_spine((seed + k) * 10_000 + 5_000 + i, pixel_spacing_mm=(1.0, 2.0)) for i in range(n_train)]
        data_s += time.perf_counter() - start
        start = time.perf_counter()
        net, loss = train_localiser([f.image for f in films], [f.pixel_spacing_mm for f in films],
                                    [f.vertebrae for f in films], cfg, seed=seed + k)
        train_s += time.perf_counter() - start
        nets.append(net)
        losses.append([round(loss[0], 4), round(loss[-1], 4)])
    report = {"n_train": n_train, "config": {**asdict(cfg), "channels": list(cfg.channels)},
              "loss_first_last": losses, "data_generation_s": round(data_s, 2), "training_s": round(train_s, 2)}
    inference = {"flip_average": bool(flip_average), "refine_edges": True}
    save_localiser(Path(out_dir), nets, cfg, {"n_train": n_train, "trained_on": "vascalc.phantoms.lateral_spine",
                                              "inference": inference})
    if n_test:
        model = LocaliserModel(tuple(nets), cfg, {"inference": inference})
        report["held_out"] = {}
        for chain in ("radiograph", "dxa"):
            errs = []
            t0 = time.perf_counter()
            for i in range(n_test):
                f = make_lateral_spine(TEST_SEED_OFFSET + seed * 10_000 + i, chain=chain)
                errs.append(corner_error_mm(f.vertebrae, locate_learned(model, f.image, f.pixel_spacing_mm),
                                            f.pixel_spacing_mm))
            report["held_out"][chain] = {"n": n_test, "corner_error_mm_mean": round(float(np.mean(errs)), 3),
                                         "corner_error_mm_median": round(float(np.median(errs)), 3),
                                         "corner_error_mm_p90": round(float(np.percentile(errs, 90)), 3),
                                         "s_per_image": round((time.perf_counter() - t0) / n_test, 4)}
    (Path(out_dir) / "localiser_report.json").write_text(json.dumps(report, indent=2))
    return report


__all__ = ["CHECK_LIMITS", "LOCALISER_VALIDATION_OFFSET", "REFINE_DEFAULTS", "REPAIR_LIMITS", "LandmarkCheck",
           "refine_corners", "repair_heights",
           "validate_localiser", "with_true_edges", "LocaliserConfig", "LocaliserModel", "build_localiser", "check_landmarks",
           "heatmap_logits", "mirror_points", "corner_error_mm", "decode", "load_localiser",
           "locate_learned", "place_corners", "save_localiser", "to_canvas", "train_localiser", "train_synthetic_localiser"]
