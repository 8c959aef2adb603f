"""Learned T12–L5 corner localiser for lateral radiographs (corner heatmaps, MONAI U-Net).

The film is resampled (anti-aliased) to a fixed ``mm_per_px`` grid and centred on a square canvas
of ``canvas_px`` pixels (default 4 mm × 96 px = 384 mm, a lateral lumbar film), standardised, and
a small MONAI ``UNet`` predicts one heatmap per corner — 6 bodies (T12–L5) × 4 corners (AS, PS,
PI, AI, as :class:`~vascalc.phantoms.types.VertebraLandmark`) = 24 channels. Training minimises
the cross-entropy between each channel's spatial softmax and a Gaussian target (σ = 1 px): one
distribution per corner, as in integral / heatmap pose regression. A corner is decoded as the
probability-weighted mean over a 5 × 5 window around the channel's maximum (sub-pixel), mapped
back to film pixels. Fold models are averaged (heatmap logits) like the graders.

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
from vascalc.phantoms.types import VertebraLandmark

NAMES = ("T12", "L1", "L2", "L3", "L4", "L5")
FORMAT = "vascalc-aac-localiser"


@dataclass(frozen=True)
class LocaliserConfig:
    """``mm_per_px`` of the network grid, ``canvas_px`` its side, U-Net ``channels``, training settings."""

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
    torch = require_torch()
    folder = Path(model_dir)
    path = folder / "localiser.json"
    if not path.is_file():
        raise InputError(f"{folder} has no learned localiser (no localiser.json)")
    meta = json.loads(path.read_text())
    cfg = meta["config"]
    config = LocaliserConfig(**{**cfg, "channels": tuple(cfg["channels"])})
    nets = []
    for k in range(int(meta["n_networks"])):
        net = build_localiser(config)
        net.load_state_dict(torch.load(folder / f"localiser_fold{k}.pt", weights_only=True))
        net.eval()
        nets.append(net)
    return LocaliserModel(tuple(nets), config, meta)


def locate_learned(model: LocaliserModel | str | Path, image: np.ndarray, spacing_mm) -> tuple[VertebraLandmark, ...]:
    """T12–L5 corners (film pixels) predicted by the localiser ensemble."""
    torch = require_torch()
    m = model if isinstance(model, LocaliserModel) else load_localiser(model)
    canvas, off, zoom = to_canvas(image, spacing_mm, m.config)
    with torch.no_grad():
        logits = np.mean([net(torch.from_numpy(canvas[None, None]))[0].numpy() for net in m.networks], axis=0)
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
                              config: LocaliserConfig | None = None, n_test: int = 0) -> dict:
    """Train the localiser on generated films (radiograph chain at 1–2 mm pixels, seeds ``seed·10⁴ + 5000 + i``,
    disjoint from the graders' and the test seeds), save it into ``out_dir`` and, with ``n_test``,
    report the mean L1–L4 corner error (mm) on held-out films of the radiograph and DXA chains."""
    from vascalc.learn.aac import TEST_SEED_OFFSET
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    cfg = config or LocaliserConfig()
    start = time.perf_counter()
    films = [make_lateral_spine(seed * 10_000 + 5_000 + i, pixel_spacing_mm=(1.0, 2.0)) for i in range(n_train)]
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    net, losses = train_localiser([f.image for f in films], [f.pixel_spacing_mm for f in films],
                                  [f.vertebrae for f in films], cfg, seed=seed)
    train_s = time.perf_counter() - start
    report = {"n_train": n_train, "config": {**asdict(cfg), "channels": list(cfg.channels)},
              "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)], "data_generation_s": round(data_s, 2),
              "training_s": round(train_s, 2)}
    save_localiser(Path(out_dir), [net], cfg, {"n_train": n_train, "trained_on": "vascalc.phantoms.lateral_spine"})
    if n_test:
        model = LocaliserModel((net,), cfg, {})
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


__all__ = ["LocaliserConfig", "LocaliserModel", "build_localiser", "corner_error_mm", "decode", "load_localiser",
           "locate_learned", "save_localiser", "to_canvas", "train_localiser", "train_synthetic_localiser"]
