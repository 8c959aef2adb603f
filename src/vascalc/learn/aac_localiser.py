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

from vascalc.errors import InputError, OutputError
from vascalc.learn._deps import deterministic, require_monai, require_torch
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
                # cross-entropy between the target distribution and the spatial softmax, per corner
                loss = -(target * torch.log_softmax(logits, dim=2)).sum(dim=2).mean()
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
    networks: tuple
    config: LocaliserConfig
    metadata: dict

    @property
    def flip_average(self) -> bool:
        """Whether inference averages the film with its left/right mirror (``localiser.json["inference"]``)."""
        return bool(self.metadata.get("inference", {}).get("flip_average", False))


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
    torch = require_torch()
    views = [canvas, canvas[:, ::-1]] if flip_average else [canvas]
    with torch.no_grad():
        out = []
        for k, view in enumerate(views):
            x = torch.from_numpy(np.ascontiguousarray(view)[None, None])
            logits = np.mean([net(x)[0].numpy() for net in networks], axis=0)
            out.append(logits[:, :, ::-1] if k == 1 else logits)
    return np.mean(out, axis=0)


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
    return LocaliserModel(nets, config, meta)


def locate_learned(model: LocaliserModel | str | Path, image: np.ndarray, spacing_mm, *,
                   flip_average: bool | None = None) -> tuple[VertebraLandmark, ...]:
    """T12–L5 corners (film pixels) predicted by the localiser ensemble; ``flip_average`` (default:
    the model's ``localiser.json["inference"]`` setting) adds the mirrored film (test-time augmentation)."""
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
    return tuple(out)


def corner_error_mm(truth, predicted, spacing_mm, levels=("L1", "L2", "L3", "L4")) -> float:
    """Mean distance (mm) between true and predicted corners of ``levels``."""
    t = {v.name: np.asarray(v.corners_px, float) for v in truth}
    p = {v.name: np.asarray(v.corners_px, float) for v in predicted}
    sp = np.asarray(spacing_mm, float)
    return float(np.mean([np.linalg.norm((t[lv] - p[lv]) * sp, axis=1).mean() for lv in levels]))


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
    inference = {"flip_average": bool(flip_average)}
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


__all__ = ["CHECK_LIMITS", "LandmarkCheck", "LocaliserConfig", "LocaliserModel", "build_localiser", "check_landmarks",
           "heatmap_logits", "mirror_points", "corner_error_mm", "decode", "load_localiser",
           "locate_learned", "save_localiser", "to_canvas", "train_localiser", "train_synthetic_localiser"]
