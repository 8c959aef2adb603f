"""Local corner stage of the learned T12–L5 localiser: one patch per body, in the body's own frame.

The coarse localiser (:mod:`vascalc.learn.aac_localiser`) sees the whole film at 4 mm per pixel and
lands ≈ 3 mm off (docs/radiograph.md, round 15: retraining it on current films did not move that).
This stage looks again at each located body at ``mm_per_px`` (default 1.25 mm) on a
``patch_px`` × ``patch_px`` patch (default 64 px = 80 mm) centred on the body's coarse centre, rows
along its coarse superior → inferior axis u and columns along n = u rotated by +90° (so the anterior
side is left or right as on the film: the network decides from the image, not from the coarse
corner order). A small MONAI ``UNet`` predicts the body's 4 corner heatmaps (AS, PS, PI, AI), decoded
like the coarse net's (:func:`~vascalc.learn.aac_localiser.decode`) and mapped back to film pixels.

Why 80 mm at 1.25 mm: a body's corners lie ≤ 25 mm from its centre along either axis (depth 24–43 mm,
height 19–33 mm on 120 generated bodies), the coarse stage's centre is off by ≤ 6 mm and its axis by
≤ 10° for all but gross failures (which :func:`~vascalc.learn.aac_localiser.repair_heights` handles
first), so a corner stays ≥ 6 mm inside an 80-mm patch; 1.25 mm is a third of the coarse grid, and
64² px keeps CPU training within 20 min on one core.

Training: bodies of generated films (training seeds only), the patch centre jittered uniformly by
±``jitter_mm`` per axis and the axis by ±``jitter_deg`` — the coarse stage's error — and mirrored
left/right at random (a lateral film faces either way; the corner channels are anatomical, so only
the column coordinate of the targets is mirrored). Loss: cross-entropy between each channel's
spatial softmax and a Gaussian target (σ = ``sigma_px``), as for the coarse net. Inference averages
the patch and its mirror (``flip_average``).

Sampling is two-step, identically in training and inference: the film around the body is
anti-aliased (Gaussian σ = 0.4 × ``mm_per_px`` where the film is finer than 0.7 × that) and
resampled to an axis-aligned ``mm_per_px`` grid (:func:`resample_region`), from which the rotated
patch is read by linear interpolation (:func:`sample_patch`). Being in mm throughout, the stage does
not depend on the detector's pixel size.

Measured (docs/radiograph.md, round 16; 550 validation films): after the bundled coarse localiser's
repair and ±8 mm refinement, mean L1–L4 corner error 1.86 / 1.73 / 1.44 → 0.66 / 0.61 / 0.58 mm
(training chain / 0.15–0.3 mm pixels / DXA), 0.01–0.04 s per film; end to end with the bundled
grader the AAC-24 MAE then equals the true landmarks', pooled −0.046 [−0.127, +0.034] against the
bundled localiser — not below 0, so the bundled model folder has no local stage.
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

#: Block of ``localiser.json`` that describes the local stage; absent = no local stage (as before round 16).
LOCAL_BLOCK = "local_stage"
#: Training films of :func:`train_synthetic_local_stage`: seeds ``LOCAL_TRAINING_SEED_OFFSET + seed·10⁴ + i``,
#: inside the training range (< 10⁶) and disjoint from the graders' (< 10⁴ per seed) and the coarse
#: localiser's (``seed·10⁴ + 5000 …``).
LOCAL_TRAINING_SEED_OFFSET = 600_000
#: Where the local stage runs in :func:`~vascalc.learn.aac_localiser.locate_learned`: ``"after_refine"`` —
#: coarse → :func:`repair_heights` → :func:`refine_corners` → local stage; ``"replace_refine"`` — coarse →
#: repair → local stage (no edge snapping).
ORDERS = ("after_refine", "replace_refine")


@dataclass(frozen=True)
class LocalStageConfig:
    """Patch grid (``mm_per_px``, ``patch_px``), U-Net ``channels``, training settings; ``jitter_mm``
    (per axis, uniform) and ``jitter_deg`` (uniform) perturb the patch frame during training."""

    mm_per_px: float = 1.25
    patch_px: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 64)
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    sigma_px: float = 1.0
    jitter_mm: float = 6.0
    jitter_deg: float = 10.0
    seed: int = 0


@dataclass(frozen=True, eq=False)
class LocalStage:
    """The trained local stage: ``networks`` (averaged logits), its config, ``order`` (one of :data:`ORDERS`)
    and ``flip_average`` (test-time mirror averaging)."""

    networks: tuple
    config: LocalStageConfig
    order: str = "after_refine"
    flip_average: bool = True


def body_frame(corners_mm) -> tuple[np.ndarray, np.ndarray]:
    """(centre (2,), unit axis u (2,)) of a body from its corners AS, PS, PI, AI (mm, (row, col)):
    centre = mean of the corners, u from the superior to the inferior endplate midpoint.
    A degenerate body (both endplates at one point) gets u = (1, 0), the film's downward axis."""
    c = np.asarray(corners_mm, dtype=float)
    u = (c[2] + c[3] - c[0] - c[1]) / 2
    norm = np.linalg.norm(u)
    return c.mean(axis=0), (u / norm if norm > 1e-9 else np.array([1.0, 0.0]))


def _normal(axis: np.ndarray) -> np.ndarray:
    """u rotated by +90° in (row, col): u = (1, 0) (down the film) → n = (0, 1) (to the right)."""
    return np.array([-axis[1], axis[0]])


def patch_to_film_mm(q, centre_mm, axis, config: LocalStageConfig) -> np.ndarray:
    """Patch positions (…, 2) (row, col px) → film positions (mm): centre + (r − h)·s·u + (c − h)·s·n,
    h = (patch_px − 1)/2, s = ``mm_per_px``."""
    q = np.asarray(q, dtype=float)
    h = (config.patch_px - 1) / 2
    u = np.asarray(axis, dtype=float)
    s = config.mm_per_px
    return np.asarray(centre_mm, float) + ((q[..., :1] - h) * u + (q[..., 1:] - h) * _normal(u)) * s


def film_mm_to_patch(p, centre_mm, axis, config: LocalStageConfig) -> np.ndarray:
    """Inverse of :func:`patch_to_film_mm` (u, n orthonormal)."""
    d = np.asarray(p, dtype=float) - np.asarray(centre_mm, float)
    u = np.asarray(axis, dtype=float)
    h = (config.patch_px - 1) / 2
    return np.stack([d @ u, d @ _normal(u)], axis=-1) / config.mm_per_px + h


def resample_region(image: np.ndarray, spacing_mm, centre_mm, half_mm: float,
                    step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The film around ``centre_mm`` (± ``half_mm``) on an axis-aligned grid of ``step_mm``: (region
    (m, m) float32, origin (mm) of its pixel (0, 0)). Only the needed crop of the film is smoothed:
    a Gaussian of 0.4 × ``step_mm`` (in film pixels) where the film is finer than 0.7 × ``step_mm``,
    as the coarse canvas is anti-aliased; outside the film the nearest edge value is used."""
    img = np.asarray(image, dtype=np.float32)
    sp = np.asarray(spacing_mm, dtype=float)
    m = int(np.ceil(2 * half_mm / step_mm)) + 1
    origin = np.asarray(centre_mm, float) - (m - 1) / 2 * step_mm
    zoom = sp / step_mm
    sigma = np.where(zoom < 0.7, 0.4 / zoom, 0.0)
    reach = np.ceil(4 * sigma + 2).astype(int)
    lo = np.clip(np.floor(origin / sp).astype(int) - reach, 0, np.array(img.shape) - 1)
    hi = np.clip(np.ceil((origin + (m - 1) * step_mm) / sp).astype(int) + reach + 1, lo + 1, np.array(img.shape))
    crop = img[lo[0]:hi[0], lo[1]:hi[1]]
    if np.any(sigma > 0):
        crop = ndimage.gaussian_filter(crop, sigma, mode="nearest")
    g = origin[:, None] + np.arange(m)[None, :] * step_mm  # (2, m) mm along rows / cols
    rr = g[0][:, None] / sp[0] - lo[0]
    cc = g[1][None, :] / sp[1] - lo[1]
    region = ndimage.map_coordinates(crop, [np.broadcast_to(rr, (m, m)), np.broadcast_to(cc, (m, m))],
                                     order=1, mode="nearest")
    return region.astype(np.float32), origin


def _patch_grid(config: LocalStageConfig) -> np.ndarray:
    n = config.patch_px
    return np.stack(np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij"), axis=-1)


def sample_patch(region: np.ndarray, origin_mm, step_mm: float, centre_mm, axis,
                 config: LocalStageConfig) -> np.ndarray:
    """The body-frame patch (patch_px, patch_px), standardised (zero mean, unit SD), read from a
    :func:`resample_region` grid by linear interpolation."""
    pts = patch_to_film_mm(_patch_grid(config), centre_mm, axis, config)
    idx = (pts - np.asarray(origin_mm, float)) / step_mm
    patch = ndimage.map_coordinates(region, [idx[..., 0], idx[..., 1]], order=1, mode="nearest")
    return ((patch - patch.mean()) / (patch.std() + 1e-3)).astype(np.float32)


def _region_half_mm(config: LocalStageConfig, jitter_mm: float = 0.0) -> float:
    # the rotated patch's half-diagonal, plus the centre jitter, plus two grid steps for interpolation
    return 0.5 * config.patch_px * config.mm_per_px * np.sqrt(2) + jitter_mm * np.sqrt(2) + 2 * config.mm_per_px


def build_local_network(config: LocalStageConfig):
    require_monai()
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=4, channels=tuple(config.channels),
                strides=(2,) * (len(config.channels) - 1), num_res_units=1)


def body_regions(image: np.ndarray, spacing_mm, vertebrae, config: LocalStageConfig) -> list[dict]:
    """Training material of one film: per body, the :func:`resample_region` grid around its TRUE
    centre (large enough for any jittered patch) with the true corners (mm) and axis."""
    sp = np.asarray(spacing_mm, dtype=float)
    out = []
    for v in vertebrae:
        corners = np.asarray(v.corners_px, float) * sp
        centre, axis = body_frame(corners)
        region, origin = resample_region(image, sp, centre, _region_half_mm(config, config.jitter_mm), config.mm_per_px)
        out.append({"region": region, "origin": origin, "corners_mm": corners, "centre_mm": centre, "axis": axis})
    return out


def _rotate(axis: np.ndarray, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([c * axis[0] - s * axis[1], s * axis[0] + c * axis[1]])


def jittered_example(body: dict, rng: np.random.Generator, config: LocalStageConfig) -> tuple[np.ndarray, np.ndarray]:
    """(patch, corner targets (4, 2) in patch px) of a body with its frame perturbed like the coarse
    stage's error and mirrored left/right with probability ½."""
    centre = body["centre_mm"] + rng.uniform(-config.jitter_mm, config.jitter_mm, 2)
    axis = _rotate(body["axis"], rng.uniform(-config.jitter_deg, config.jitter_deg))
    patch = sample_patch(body["region"], body["origin"], config.mm_per_px, centre, axis, config)
    target = film_mm_to_patch(body["corners_mm"], centre, axis, config)
    if rng.random() < 0.5:
        patch = np.ascontiguousarray(patch[:, ::-1])
        target[:, 1] = config.patch_px - 1 - target[:, 1]
    return patch, target


def train_local_network(bodies: list[dict], config: LocalStageConfig, *, seed: int = 0):
    """Train one local U-Net on :func:`body_regions` material, a fresh jitter of every body each
    epoch; returns (network in eval mode, mean loss per epoch)."""
    torch = require_torch()
    from vascalc.learn.aac_localiser import _target_maps, heatmap_cross_entropy

    if len(bodies) < 2:
        raise InputError(f"the local stage needs at least 2 training bodies, got {len(bodies)}")
    n = config.patch_px
    with deterministic(seed):
        net = build_local_network(config)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=1e-5)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
        rng = np.random.default_rng([seed, 23])
        losses = []
        for _ in range(config.epochs):
            net.train()
            order = rng.permutation(len(bodies))
            total, count = 0.0, 0
            for s in range(0, len(order), config.batch_size):
                batch = order[s:s + config.batch_size]
                if len(batch) < 2:
                    continue
                pairs = [jittered_example(bodies[k], rng, config) for k in batch]
                x = torch.from_numpy(np.stack([p for p, _ in pairs])[:, None])
                y = torch.from_numpy(np.stack([_target_maps(t, n, config.sigma_px) for _, t in pairs]))
                loss = heatmap_cross_entropy(net(x).flatten(2), y.flatten(2))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
                count += len(batch)
            sched.step()
            losses.append(total / max(count, 1))
        net.eval()
    return net, losses


def local_logits(networks, patches: np.ndarray, *, flip_average: bool = True) -> np.ndarray:
    """(b, k, n, n) heatmap logits of the ensemble on ``patches`` (b, n, n), with the mirrored
    patches' logits mirrored back and averaged in when ``flip_average`` (also the coarse
    localiser's :func:`~vascalc.learn.aac_localiser.heatmap_logits`, with one canvas)."""
    torch = require_torch()
    views = [patches, patches[:, :, ::-1]] if flip_average else [patches]
    out = []
    with torch.no_grad():
        for k, view in enumerate(views):
            x = torch.from_numpy(np.ascontiguousarray(view)[:, None])
            logits = np.mean([net(x).numpy() for net in networks], axis=0)
            out.append(logits[..., ::-1] if k == 1 else logits)
    return np.mean(out, axis=0)


def apply_local_stage(stage: LocalStage, image: np.ndarray, spacing_mm, vertebrae) -> tuple[VertebraLandmark, ...]:
    """Re-place every body's corners with the local stage, in its frame from the given corners
    (one batched forward pass for all bodies); names and order are kept."""
    from vascalc.learn.aac_localiser import decode

    img = np.asarray(image, dtype=np.float32)
    sp = np.asarray(spacing_mm if spacing_mm is not None else (380.0 / img.shape[0],) * 2, dtype=float)
    cfg = stage.config
    if not vertebrae:
        return tuple(vertebrae)
    frames, patches = [], []
    for v in vertebrae:
        centre, axis = body_frame(np.asarray(v.corners_px, float) * sp)
        region, origin = resample_region(img, sp, centre, _region_half_mm(cfg), cfg.mm_per_px)
        patches.append(sample_patch(region, origin, cfg.mm_per_px, centre, axis, cfg))
        frames.append((centre, axis))
    logits = local_logits(stage.networks, np.stack(patches), flip_average=stage.flip_average)
    out = []
    for v, (centre, axis), lg in zip(vertebrae, frames, logits):
        px = patch_to_film_mm(decode(lg), centre, axis, cfg) / sp
        corners = tuple((round(float(r), 3), round(float(c), 3)) for r, c in px)
        out.append(VertebraLandmark(name=v.name, corners_px=corners,
                                    centre_px=tuple(round(float(x), 3) for x in px.mean(axis=0))))
    return tuple(out)


def save_local_stage(model_dir: str | Path, networks, config: LocalStageConfig, *, order: str = "after_refine",
                     flip_average: bool = True, metadata: dict | None = None) -> None:
    """Write ``localiser_local_fold{k}.pt`` and the ``local_stage`` block of the folder's existing
    ``localiser.json`` (the coarse localiser's settings are kept as they are)."""
    torch = require_torch()
    folder = Path(model_dir)
    path = folder / "localiser.json"
    if not path.is_file():
        raise InputError(f"{folder} has no learned localiser (no localiser.json) to add a local stage to")
    if order not in ORDERS:
        raise InputError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    meta = json.loads(path.read_text())
    try:
        for k, net in enumerate(networks):
            torch.save(net.state_dict(), folder / f"localiser_local_fold{k}.pt")
        meta[LOCAL_BLOCK] = {"n_networks": len(networks),
                             "config": {**asdict(config), "channels": list(config.channels)},
                             "order": order, "flip_average": bool(flip_average), **(metadata or {})}
        path.write_text(json.dumps(meta, indent=2))
    except OSError as error:
        raise OutputError(f"cannot write the local stage into {folder} ({error})") from None


def load_local_stage(model_dir: str | Path, meta: dict | None = None) -> LocalStage | None:
    """The folder's local stage, or None when ``localiser.json`` has no ``local_stage`` block."""
    folder = Path(model_dir)
    if meta is None:
        path = folder / "localiser.json"
        if not path.is_file():
            raise InputError(f"{folder} has no learned localiser (no localiser.json)")
        meta = json.loads(path.read_text())
    block = meta.get(LOCAL_BLOCK)
    if not block:
        return None
    cfg = block["config"]
    config = LocalStageConfig(**{**cfg, "channels": tuple(cfg["channels"])})
    if block.get("order", "after_refine") not in ORDERS:
        raise InputError(f"{folder}: unknown local-stage order {block.get('order')!r}")
    nets = tuple(load_weights(build_local_network(config), folder / f"localiser_local_fold{k}.pt")
                 for k in range(int(block["n_networks"])))
    return LocalStage(nets, config, block.get("order", "after_refine"), bool(block.get("flip_average", True)))


def train_synthetic_local_stage(model_dir: str | Path, n_films: int = 1200, seed: int = 0,
                                config: LocalStageConfig | None = None, *, order: str = "after_refine",
                                pixel_spacing_mm: tuple[float, float] = (0.3, 1.0)) -> dict:
    """Train the local stage on generated films and add it to the localiser in ``model_dir``.

    Films: ``make_lateral_spine(LOCAL_TRAINING_SEED_OFFSET + seed·10⁴ + i, pixel_spacing_mm=…)``,
    i < ``n_films`` (radiograph chain, training seeds only; spacing 0.3–1.0 mm by default, between the
    fine and the training chain), every T12–L5 body one example, freshly jittered each epoch. Returns
    the training report (also stored in the ``local_stage`` block): films, bodies, loss per epoch,
    data and training seconds."""
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    cfg = config or LocalStageConfig(seed=seed)
    start = time.perf_counter()
    bodies: list[dict] = []
    for i in range(int(n_films)):
        film = make_lateral_spine(LOCAL_TRAINING_SEED_OFFSET + seed * 10_000 + i,  # training seeds only
                                  pixel_spacing_mm=pixel_spacing_mm)
        bodies.extend(body_regions(film.image, film.pixel_spacing_mm, film.vertebrae, cfg))
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    net, losses = train_local_network(bodies, cfg, seed=seed)
    train_s = time.perf_counter() - start
    first = LOCAL_TRAINING_SEED_OFFSET + seed * 10_000
    report = {"n_films": int(n_films), "n_bodies": len(bodies), "seeds": [first, first + int(n_films) - 1],
              "pixel_spacing_mm": list(pixel_spacing_mm), "loss_per_epoch": [round(x, 4) for x in losses],
              "data_generation_s": round(data_s, 1), "training_s": round(train_s, 1)}
    save_local_stage(model_dir, [net], cfg, order=order, metadata={"training": report})
    return report


__all__ = ["LOCAL_BLOCK", "LOCAL_TRAINING_SEED_OFFSET", "ORDERS", "LocalStage", "LocalStageConfig",
           "apply_local_stage", "body_frame", "body_regions", "build_local_network", "film_mm_to_patch",
           "jittered_example", "load_local_stage",
           "local_logits", "patch_to_film_mm", "resample_region", "sample_patch", "save_local_stage",
           "train_local_network", "train_synthetic_local_stage"]
