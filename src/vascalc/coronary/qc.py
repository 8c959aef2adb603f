"""QC pictures a cardiac reader checks at a glance: an axial slice through each lesion with the
artery colour, and heart-centred maximum-intensity projections with every lesion coloured."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: lesion-map code → (name, RGBA): RCA red, LAD green, LCX blue, not coronary yellow
COLOURS = {1: ("RCA", (0.95, 0.15, 0.15, 1.0)), 2: ("LAD", (0.1, 0.85, 0.2, 1.0)),
           3: ("LCX", (0.2, 0.45, 1.0, 1.0)), 4: ("not coronary", (1.0, 0.85, 0.0, 0.9))}
WINDOW_HU = (-250.0, 750.0)
CODE_OF = {"rca": 1, "lad": 2, "lcx": 3, "not_coronary": 4}


def _overlay(codes: np.ndarray) -> np.ndarray:
    rgba = np.zeros(codes.shape + (4,))
    for code, (_, colour) in COLOURS.items():
        rgba[codes == code] = colour
    return rgba


def lesion_tiles(hu: np.ndarray, lesion_map: np.ndarray, spacing_mm: tuple[float, float, float], lesions, path: Path,
                 half_mm: float = 30.0, max_tiles: int = 24, title: str = "") -> Path:
    """One axial tile (±``half_mm``) per lesion, counted lesions first, artery colour over the CT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = sorted(lesions, key=lambda l: (not l.counted, -l.agatston_raw, l.id))[:max_tiles]
    n = max(1, len(chosen))
    cols = min(6, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows + 0.4), squeeze=False)
    hy, hx = (int(round(half_mm / s)) for s in spacing_mm[1:])
    for ax in axes.ravel():
        ax.axis("off")
    if not chosen:
        axes[0, 0].text(0.5, 0.5, "no calcium candidate", ha="center", va="center")
    for ax, lesion in zip(axes.ravel(), chosen):
        z, y, x = (int(round(v)) for v in lesion.centroid_zyx)
        y0, y1 = max(0, y - hy), min(hu.shape[1], y + hy + 1)
        x0, x1 = max(0, x - hx), min(hu.shape[2], x + hx + 1)
        extent = (x0 * spacing_mm[2], x1 * spacing_mm[2], y1 * spacing_mm[1], y0 * spacing_mm[1])
        ax.imshow(np.clip(hu[z, y0:y1, x0:x1], *WINDOW_HU), cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1],
                  extent=extent, interpolation="nearest")
        ax.imshow(_overlay(lesion_map[z, y0:y1, x0:x1]), extent=extent, interpolation="nearest", alpha=0.6)
        name = lesion.artery.upper() if lesion.counted else "rejected"
        ax.set_title(f"#{lesion.id} {name} {lesion.confidence:.2f} ({lesion.method})\nslice {z}, "
                     f"{lesion.agatston_raw:.0f} AU", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def heart_mip(hu: np.ndarray, lesion_map: np.ndarray, heart: np.ndarray, spacing_mm: tuple[float, float, float],
              path: Path, title: str = "") -> Path:
    """Axial and coronal MIPs of the heart box (+15 mm) with lesions coloured by artery."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage as ndi

    box = ndi.find_objects(heart.astype(np.uint8))[0]
    pad = [int(np.ceil(15.0 / s)) for s in spacing_mm]
    box = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, hu.shape))
    # only the heart and its epicardial fat: the spine and ribs would dominate a plain MIP
    near = ndi.distance_transform_edt(~heart[box], sampling=spacing_mm) <= 15.0
    h = np.where(near, np.clip(hu[box].astype(np.float32), *WINDOW_HU), WINDOW_HU[0])
    codes = lesion_map[box]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    dz, dy, dx = spacing_mm
    # axial: project along z; coronal: along y (anterior–posterior), superior up
    ax_ext = (0, h.shape[2] * dx, h.shape[1] * dy, 0)
    axes[0].imshow(h.max(axis=0), cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=ax_ext)
    axes[0].imshow(_overlay(codes.max(axis=0)), extent=ax_ext, interpolation="nearest")
    axes[0].set_title("axial MIP (anterior up, patient right on the left)", fontsize=8)
    cor = h.max(axis=1)
    cor_codes = codes.max(axis=1)
    cor_ext = (0, h.shape[2] * dx, 0, h.shape[0] * dz)
    axes[1].imshow(cor, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=cor_ext, origin="lower", aspect="auto")
    axes[1].imshow(_overlay(cor_codes), extent=cor_ext, origin="lower", aspect="auto", interpolation="nearest")
    axes[1].set_title("coronal MIP (slice index up)", fontsize=8)
    handles = [plt.Line2D([], [], marker="s", linestyle="", color=c, label=name) for name, c in COLOURS.values()]
    axes[1].legend(handles=handles, loc="lower right", fontsize=7)
    for ax in axes:
        ax.set_xlabel("mm")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
