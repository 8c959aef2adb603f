"""QC image of a radiograph AAC result: vertebrae, the 8 Kauppila segments coloured by grade, the score."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vascalc.radiograph.kauppila import LEVELS, to_image_coords

#: grade 0–3 → colour (none, mild, moderate, severe)
GRADE_COLOURS = ("#2ca02c", "#ffdd00", "#ff7f0e", "#d62728")


def write_xray_qc(result, path: Path, *, wall_depth_mm: float = 14.0, dpi: int = 110) -> Path:
    """Draw ``result`` (an :class:`~vascalc.workflows.xray.AacResult`) to a PNG at ``path``.

    Each segment is a strip in front of its vertebra between its two level boundaries: posterior
    wall 0–``wall_depth_mm`` in front of the body, anterior wall beyond; the colour is the grade.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    rg, k = result.radiograph, result.kauppila
    g = k.geometry
    h, w = rg.shape
    fig, ax = plt.subplots(figsize=(6.0, 6.0 * h / max(w, 1) + 0.6))
    ax.imshow(rg.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for v in result.localisation.vertebrae:
        c = np.asarray(v.corners_px)
        ax.add_patch(Polygon(c[:, ::-1], closed=True, fill=False, edgecolor="#1f77b4", linewidth=1.0))
        ax.text(c[:, 1].mean(), c[:, 0].mean(), v.name, color="#1f77b4", fontsize=7, ha="center", va="center")
    by_name = {s.name: s for s in k.segments}
    for i, level in enumerate(LEVELS):
        border = g.anterior_border_mm[i]
        for wall, (d0, d1) in (("posterior", (0.0, wall_depth_mm)), ("anterior", (wall_depth_mm, 2 * wall_depth_mm))):
            seg = by_name[f"{level}_{wall}"]
            t = np.array([seg.top_mm, seg.top_mm, seg.bottom_mm, seg.bottom_mm])
            s = border + np.array([d0, d1, d1, d0])
            r, cc = to_image_coords(g, t, s)
            ax.add_patch(Polygon(np.stack([cc, r], axis=1), closed=True, facecolor=GRADE_COLOURS[seg.grade],
                                 alpha=0.35, edgecolor=GRADE_COLOURS[seg.grade], linewidth=0.8))
    for wall, marker in (("anterior", "x"), ("posterior", "+")):
        pts = result.calcium_points_px.get(wall)
        if pts is not None and len(pts):
            ax.scatter(pts[:, 1], pts[:, 0], s=4, c="#ff00ff", marker=marker, linewidths=0.6)
    grades = " ".join(f"{s.grade}" for s in k.segments)
    ax.set_title(f"AAC-24 {k.aac24} ({k.severity})  AAC-8 {k.aac8}  facing {result.localisation.facing}\n"
                 f"grades L1–L4 ant/post: {grades}", fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)
