"""Chest phantom for coronary calcium on non-gated chest CT: heart, aortic root, RCA, left main + LAD,
LCX, lungs, spine, ribs, sternum, costal cartilages, and non-coronary *distractor* calcium.

Layout in LPS mm, z = 0 at the default top slice's upper edge. The heart is an ellipsoid (centre
90 mm below z = 0 in the fixed layout); the coronaries run in the epicardial fat just outside it,
along the atrioventricular and interventricular grooves, as simplified polylines (not an atlas).

Anatomical variation (``vary_anatomy=True``, the default): the seed moves, scales and rotates the
heart, and every point that hangs from it (coronary paths, aortic root, coronary ostia) follows by
the same affine map, so the grooves move with the heart. The *fixed layout* (``vary_anatomy=False``)
is the original single geometry; it is the identity of that map.

Distractors are calcium that a coronary scorer must *not* count (issue 8): aortic valve cusps,
aortic root wall, descending aortic wall, mitral annulus, pericardium, calcified costal cartilage,
calcified lymph nodes. Each is an exact analytic shape (annular wall sector, disc, cylinder or
ellipsoid) rendered with the same exact partial volume and slice profile as the plaques, so its
volume and mass are known exactly (docs/phantoms.md, "Chest phantom").

Random streams: one child of ``SeedSequence(seed)`` per component (anatomy, distractors, plaques,
motion, metal, noise), so that, for a given seed, switching distractors or plaques on or off keeps
the anatomy and the other components the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage

from vascalc.errors import InputError
from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume
from vascalc.phantoms import physics
from vascalc.phantoms.core import (TRUTH_SCHEMA_VERSION, CtPhysics, Vessel, make_grid, paint_vessels, place_sectors,
                                   plaque_records, random_plaques, render_ct, scan_info, sector_in_grid, spec_hash,
                                   structure_truth)
from vascalc.phantoms.geometry import (Canvas, WallSector, _frame, ellipse_stack_sdf, index_slices, paint,
                                       paint_capsule, render_fraction, segment_distance)
from vascalc.phantoms.metal import metal_streaks
from vascalc.phantoms.types import Phantom, PlaqueSpec
from vascalc.phantoms.vascular import TISSUE_HU

#: Fixed layout (``vary_anatomy=False``): heart centre and semi-axes (x, y, z), mm.
HEART_CENTRE = np.array([15.0, -20.0, -90.0])
HEART_SEMI = np.array([55.0, 45.0, 60.0])
#: Epicardial fat: a shell this thick (mm) around the myocardium.
EPICARDIAL_FAT_MM = 7.0
#: Fixed layout of the body outline (half-width, half-depth, mm) and the ascending aorta's top.
BODY_SEMI = (160.0, 118.0)
AORTA_TOP = (-2.0, -32.0, 10.0)
VESSEL_NAMES = ("aorta", "rca", "left_main", "lad", "lcx")
CORONARY_ARTERIES = ("rca", "lad", "lcx")
CHEST_VERTEBRAE = tuple(f"vertebrae_T{i}" for i in range(5, 11))
RIB_NAMES = tuple(f"rib_{side}_{k}" for side in ("left", "right") for k in range(1, 13))
LABEL_IDS = {"aorta": 1, "rca": 2, "lad": 3, "lcx": 4, "heart": 10,
             **{name: 20 + i for i, name in enumerate(CHEST_VERTEBRAE)},
             **{name: 30 + i for i, name in enumerate(RIB_NAMES)},
             "sternum": 60, "costal_cartilages": 61, "metal_implant": 70}
#: The left main is labelled and scored with the LAD (as in S5: "LM + LAD"); it keeps its own truth entry.
LABEL_OF_VESSEL = {"aorta": "aorta", "rca": "rca", "left_main": "lad", "lad": "lad", "lcx": "lcx"}

#: Calcium distractors (non-coronary calcium), and the bone kinds that may be named with them.
DISTRACTOR_KINDS = ("aortic_valve", "aortic_root_wall", "descending_aorta", "mitral_annulus", "pericardium",
                    "costal_cartilage", "lymph_node")
BONE_KINDS = ("ribs", "sternum", "spine")
#: Probability that ``distractors="random"`` includes each kind (drawn independently per seed).
DISTRACTOR_PROBABILITY = {"aortic_valve": 0.35, "aortic_root_wall": 0.3, "descending_aorta": 0.3,
                          "mitral_annulus": 0.3, "pericardium": 0.2, "costal_cartilage": 0.4, "lymph_node": 0.3}
#: Heart-borne distractors move with the heart (motion blur); the others do not.
MOVING_DISTRACTORS = ("aortic_valve", "mitral_annulus", "pericardium")
DISTRACTOR_DENSITY_MG_CM3 = (150.0, 900.0)
#: Random coronary calcium (``plaques="random"``, ``plaque_rate=None``): a heart is calcium-free with
#: probability 0.15; otherwise each artery (RCA, LM+LAD, LCX) is calcium-free with probability 0.18,
#: so that ≈ 0.15 + 0.85·0.18 ≈ 30 % of arteries are clean; a calcified artery has 1 + Poisson(mean)
#: plaques (the LM takes each LAD-system plaque with probability 0.15).
CALCIUM_FREE_HEART_P = 0.15
CALCIUM_FREE_ARTERY_P = 0.18
EXTRA_PLAQUES_MEAN = {"rca": 1.2, "lad": 1.5, "lcx": 0.8}
LEFT_MAIN_SHARE = 0.15
AORTA_PLAQUES_MEAN = 1.0
#: Old model (``plaque_rate`` a number): Poisson means per vessel, scaled by ``plaque_rate``.
PLAQUE_MEANS = {"rca": 2.0, "lad": 2.5, "lcx": 1.5, "left_main": 0.5, "aorta": 1.0}
PLAQUE_LENGTHS_MM = {"rca": (1.0, 8.0), "lad": (1.0, 8.0), "lcx": (1.0, 6.0), "left_main": (1.0, 4.0),
                     "aorta": (3.0, 15.0)}
RIB_RADIUS_MM = 4.0
CARTILAGE_RADIUS_MM = 4.0


# --------------------------------------------------------------------------------------------
# Anatomy


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation matrix about a unit axis (right-handed, degrees), Rodrigues' formula."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * (K @ K)


#: Horizontal axis about which a positive tilt swings the apex (fixed layout: straight down) towards
#: the patient's left and anterior (+x, −y), i.e. makes the long axis left-anterior-inferior.
_TILT_AXIS = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)


@dataclass(frozen=True)
class ChestAnatomy:
    """Sampled anatomy of one chest phantom (mm, degrees).

    The heart is the fixed-layout ellipsoid scaled to ``heart_semi_axes_mm``, rotated by
    ``R = Rz(heart_azimuth_deg) · R_tilt(heart_tilt_deg)`` (tilt swings the apex towards the
    left-anterior; azimuth turns the heart about the vertical, counter-clockwise seen from above:
    left → posterior) and centred at ``heart_centre_mm``. A point ``p`` of the fixed layout that hangs
    from the heart maps to ``c + R · ((p − c0) · s / s0)``. ``calibre_scale`` multiplies the lumen
    radius of each vessel; ``body_scale`` the body outline, lungs and rib cage (x, y).
    """

    heart_centre_mm: tuple[float, float, float] = tuple(HEART_CENTRE.tolist())
    heart_semi_axes_mm: tuple[float, float, float] = tuple(HEART_SEMI.tolist())
    heart_azimuth_deg: float = 0.0
    heart_tilt_deg: float = 0.0
    body_scale: tuple[float, float] = (1.0, 1.0)
    calibre_scale: dict[str, float] = field(default_factory=lambda: {n: 1.0 for n in VESSEL_NAMES})

    @property
    def rotation(self) -> np.ndarray:
        return _rotation([0.0, 0.0, 1.0], self.heart_azimuth_deg) @ _rotation(_TILT_AXIS, self.heart_tilt_deg)

    @property
    def long_axis(self) -> np.ndarray:
        """Unit vector of the heart's long axis, base → apex (LPS)."""
        return self.rotation @ np.array([0.0, 0.0, -1.0])

    def to_world(self, p_fixed) -> np.ndarray:
        """Where the point ``p_fixed`` (xyz mm of the fixed layout, attached to the heart) lies."""
        local = (np.asarray(p_fixed, float) - HEART_CENTRE) * (np.asarray(self.heart_semi_axes_mm) / HEART_SEMI)
        return np.asarray(self.heart_centre_mm) + local @ self.rotation.T

    def on_heart(self, theta_deg: float, z_fixed: float, offset_mm: float) -> tuple[float, float, float]:
        """Point ``offset_mm`` outside the heart at azimuth θ (0 = left, 270 = anterior) and the fixed
        layout's height ``z_fixed`` (the offset stays in mm whatever the heart's size)."""
        s = np.asarray(self.heart_semi_axes_mm)
        k = (z_fixed - HEART_CENTRE[2]) / HEART_SEMI[2]
        scale = np.sqrt(max(0.05, 1.0 - k * k))
        t = np.deg2rad(theta_deg)
        local = np.array([(s[0] * scale + offset_mm) * np.cos(t), (s[1] * scale + offset_mm) * np.sin(t), k * s[2]])
        p = np.asarray(self.heart_centre_mm) + self.rotation @ local
        return float(p[0]), float(p[1]), float(p[2])

    def extent_mm(self, pad_mm: float = 0.0) -> np.ndarray:
        """Half-extents (x, y, z) of the heart ellipsoid grown by ``pad_mm`` (axis-aligned box)."""
        S = np.asarray(self.heart_semi_axes_mm) + pad_mm
        return np.sqrt(((self.rotation * S[None, :]) ** 2).sum(axis=1))

    def blend(self, other: "ChestAnatomy", t: float) -> "ChestAnatomy":
        """``self + t·(other − self)`` for every parameter."""
        mix = lambda a, b: tuple(float(x + t * (y - x)) for x, y in zip(a, b))  # noqa: E731
        return ChestAnatomy(mix(self.heart_centre_mm, other.heart_centre_mm),
                            mix(self.heart_semi_axes_mm, other.heart_semi_axes_mm),
                            float(self.heart_azimuth_deg + t * (other.heart_azimuth_deg - self.heart_azimuth_deg)),
                            float(self.heart_tilt_deg + t * (other.heart_tilt_deg - self.heart_tilt_deg)),
                            mix(self.body_scale, other.body_scale),
                            {n: float(self.calibre_scale[n] + t * (other.calibre_scale[n] - self.calibre_scale[n]))
                             for n in self.calibre_scale})

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "ChestAnatomy":
        """Random anatomy: centre ±10 mm (x, y; ±6 mm in z, so that a 160-mm scan still holds the
        heart), semi-axes ±12 %, long axis tilted 15 ± 10° towards the left-anterior and turned
        ±15° about the vertical, vessel calibres ±15 %, body 0.9–1.0 wide and 0.95–1.07 deep.
        :func:`sample_anatomy` then makes it fit the chest."""
        u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
        centre = HEART_CENTRE + np.array([u(-10, 10), u(-10, 10), u(-6, 6)])
        semi = HEART_SEMI * np.array([u(0.88, 1.12) for _ in range(3)])
        return cls(tuple(round(float(v), 3) for v in centre), tuple(round(float(v), 3) for v in semi),
                   round(u(-15, 15), 3), round(15.0 + u(-10, 10), 3), (round(u(0.9, 1.0), 4), round(u(0.95, 1.07), 4)),
                   {n: round(u(0.85, 1.15), 4) for n in VESSEL_NAMES})


def rib_cage(anatomy: ChestAnatomy) -> dict:
    """The rib-cage ellipse (centre y, half-axes, mm) and the sternum's position for a body size."""
    bx, by = anatomy.body_scale
    a, b = BODY_SEMI[0] * bx - 17.0, BODY_SEMI[1] * by - 17.0
    cy = 10.0
    return {"centre_y_mm": cy, "semi_x_mm": a, "semi_y_mm": b, "sternum_y_mm": cy - b + 4.0,
            "sternum_half_width_mm": 13.0, "sternum_half_depth_mm": 5.5, "sternum_z_mm": (-135.0, 40.0)}


def _fits(anatomy: ChestAnatomy) -> bool:
    """True when the heart (with its fat) stays inside the rib cage and clear of the descending aorta."""
    cage = rib_cage(anatomy)
    g = np.random.default_rng(12345)  # a fixed probe set, not part of the phantom's randomness
    d = g.standard_normal((600, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    S = np.asarray(anatomy.heart_semi_axes_mm) + EPICARDIAL_FAT_MM
    pts = np.asarray(anatomy.heart_centre_mm) + (d * S) @ anatomy.rotation.T
    margin = RIB_RADIUS_MM + 4.0
    q = (pts[:, 0] / (cage["semi_x_mm"] - margin)) ** 2 + ((pts[:, 1] - cage["centre_y_mm"])
                                                          / (cage["semi_y_mm"] - margin)) ** 2
    if np.any(q > 1.0):
        return False
    desc = _descending_aorta(anatomy)
    clear = desc.lumen_radius_mm[0] + desc.wall_mm + 2.0
    for v in chest_vessels(anatomy):
        if v.name == "aorta":
            continue
        P = np.asarray(v.points)
        fine = np.concatenate([np.linspace(P[i], P[i + 1], 8) for i in range(len(P) - 1)])
        d_desc = segment_distance((fine[:, 0], fine[:, 1], fine[:, 2]), np.asarray(desc.points[0]),
                                  np.asarray(desc.points[1]))
        if np.any(d_desc < clear + max(v.lumen_radius_mm) + v.wall_mm):
            return False
    return True


def sample_anatomy(rng: np.random.Generator) -> tuple[ChestAnatomy, float, float]:
    """Random anatomy that fits (:func:`_fits`): a heart that would reach the ribs (narrow chest) or
    bring the LCX onto the descending aorta is first moved forwards or backwards (up to 12 mm, the
    smallest shift that fits); failing that, the draw is blended towards the fixed layout
    (t = 0.9, 0.8, …). Returns the anatomy, the blend weight (1 = as drawn) and the shift (mm, +y)."""
    fixed, drawn = ChestAnatomy(), ChestAnatomy.sample(rng)
    shifts = [0.0] + [float(v) for k in range(1, 13) for v in (k, -k)]
    for t in np.linspace(1.0, 0.0, 11):
        cand = fixed.blend(drawn, float(t))
        for dy in shifts:
            c = cand.heart_centre_mm
            moved = replace(cand, heart_centre_mm=(c[0], round(c[1] + dy, 3), c[2]))
            if _fits(moved):
                return moved, float(t), dy
    return fixed, 0.0, 0.0


def _aorta_root(anatomy: ChestAnatomy) -> np.ndarray:
    return anatomy.to_world((0.0, -28.0, -56.0))


def _descending_aorta(anatomy: ChestAnatomy) -> Vessel:
    r = 12.0 * anatomy.calibre_scale["aorta"]
    return Vessel("aorta_descending", ((22.0, 45.0, 10.0), (16.0, 45.0, -240.0)), (r,), 2.0)


def _ostium(anatomy: ChestAnatomy, p_fixed) -> tuple[float, float, float]:
    """A coronary origin on the aortic wall: the fixed point's height and direction from the aortic
    axis, at the same depth in the wall for the (scaled) aorta."""
    a0, b0 = np.array([0.0, -28.0, -56.0]), np.asarray(AORTA_TOP)
    p = np.asarray(p_fixed, float)
    t = float(np.clip((p - a0) @ (b0 - a0) / ((b0 - a0) @ (b0 - a0)), 0.0, 1.0))
    axis0 = a0 + t * (b0 - a0)
    depth = np.linalg.norm(p - axis0) - 14.0
    a1, b1 = _aorta_root(anatomy), np.asarray(AORTA_TOP)
    axis1 = a1 + t * (b1 - a1)
    direction = anatomy.to_world(p) - anatomy.to_world(axis0)
    u = (b1 - a1) / np.linalg.norm(b1 - a1)
    direction -= (direction @ u) * u
    direction /= np.linalg.norm(direction)
    out = axis1 + (14.0 * anatomy.calibre_scale["aorta"] + depth) * direction
    return float(out[0]), float(out[1]), float(out[2])


def chest_vessels(anatomy: ChestAnatomy | None = None) -> list[Vessel]:
    """Coronary centrelines on the heart surface and the (root + ascending) aorta, for an anatomy
    (default: the fixed layout)."""
    A = anatomy or ChestAnatomy()
    cal = A.calibre_scale
    wall = 1.0
    on = A.on_heart
    rca = [_ostium(A, (-6.0, -40.0, -46.0))] + [on(t, z, 4.0) for t, z in
                                                ((235, -52), (212, -62), (192, -78), (175, -98), (150, -116),
                                                 (122, -126))]
    lm = [_ostium(A, (8.0, -40.0, -44.0)), on(282, -47, 4.5)]
    lad = [lm[-1]] + [on(t, z, 4.0) for t, z in ((290, -62), (296, -82), (300, -104), (302, -124), (300, -140))]
    lcx = [lm[-1]] + [on(t, z, 4.0) for t, z in ((320, -52), (350, -58), (15, -66), (42, -76), (65, -86))]
    root = tuple(float(v) for v in _aorta_root(A))
    return [
        Vessel("rca", tuple(rca), (1.8 * cal["rca"],) * (len(rca) - 1), wall, start_margin_mm=4.0),
        Vessel("lad", tuple(lad), (1.7 * cal["lad"],) * (len(lad) - 1), wall, start_margin_mm=3.0),
        Vessel("lcx", tuple(lcx), (1.5 * cal["lcx"],) * (len(lcx) - 1), wall, start_margin_mm=3.0),
        Vessel("left_main", tuple(lm), (2.2 * cal["left_main"],), wall, start_margin_mm=3.0),
        Vessel("aorta", (root, AORTA_TOP), (14.0 * cal["aorta"],), 2.0, start_margin_mm=20.0),
    ]


# --------------------------------------------------------------------------------------------
# Shapes and painters


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid (centre xyz mm, semi-axes mm, rotation columns = its axes in LPS): the shape
    of a calcified lymph node. Same interface as :class:`~vascalc.phantoms.geometry.WallSector`."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def volume_mm3(self) -> float:
        a, b, c = self.semi_axes
        return float(4.0 / 3.0 * np.pi * a * b * c)

    def _R(self) -> np.ndarray:
        return np.asarray(self.rotation, float).reshape(3, 3)

    def contains(self, X, Y, Z) -> np.ndarray:
        R = self._R()
        f = np.float32
        d = [np.asarray(X, f) - f(self.centre[0]), np.asarray(Y, f) - f(self.centre[1]),
             np.asarray(Z, f) - f(self.centre[2])]
        q = 0.0
        for i in range(3):
            local = d[0] * f(R[0, i]) + d[1] * f(R[1, i]) + d[2] * f(R[2, i])
            q = q + (local / f(self.semi_axes[i])) ** 2
        return q < 1.0

    def smallest_feature_mm(self) -> float:
        return float(2.0 * min(self.semi_axes))

    def bbox_mm(self) -> tuple[np.ndarray, np.ndarray]:
        ext = np.sqrt(((self._R() * np.asarray(self.semi_axes)[None, :]) ** 2).sum(axis=1))
        c = np.asarray(self.centre)
        return c - ext - 0.1, c + ext + 0.1


def _paint_oriented_ellipsoid(canvas: Canvas, centre, semi_axes, rotation: np.ndarray, value: float,
                              label: int | None = None, only_labels: tuple[int, ...] | None = None) -> None:
    """Paint an ellipsoid whose axes are the columns of ``rotation`` (signed distance to first order)."""
    c = np.asarray(centre, float)
    s = np.asarray(semi_axes, float)
    R = np.asarray(rotation, float)
    ext = np.sqrt(((R * s[None, :]) ** 2).sum(axis=1))

    def sdf(Z, Y, X):
        dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
        u = [(dx * R[0, i] + dy * R[1, i] + dz * R[2, i]) / s[i] for i in range(3)]
        q = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
        grad = np.sqrt(sum((u[i] / s[i]) ** 2 for i in range(3))) / np.maximum(q, 1e-9)
        return np.where(q > 1e-9, (q - 1.0) / np.maximum(grad, 1e-9), -s.min()), None
    paint(canvas, c - ext, c + ext, sdf, value, label, only_labels)


def _angle_towards(u: np.ndarray, direction: np.ndarray) -> float:
    """Wall-sector angle (radians, in :func:`_frame` convention around axis u) of a direction."""
    e1, e2 = _frame(np.asarray(u, float))
    return float(np.arctan2(direction @ e2, direction @ e1))


def _sector(a, u, s0, s1, r0, r1, angle_rad, half_arc_rad) -> WallSector:
    u = np.asarray(u, float)
    u = u / np.linalg.norm(u)
    return WallSector(a=tuple(float(v) for v in a), u=tuple(float(v) for v in u), s0=float(s0), s1=float(s1),
                      r0=float(r0), r1=float(r1), angle_rad=float(angle_rad), half_arc_rad=float(half_arc_rad))


# --------------------------------------------------------------------------------------------
# Skeleton: ribs, costal cartilages, sternum


def _paint_skeleton(canvas: Canvas, anatomy: ChestAnatomy) -> dict:
    """Paint ribs 1–12 (cortical shell, marrow), costal cartilages of ribs 1–10 and the sternum.

    Ribs leave the spine at their vertebra's height and descend ~55 mm by the front along the rib-cage
    ellipse; ribs 1–7 reach the sternum through their cartilage, 8–10 join the cartilage above, 11–12
    float. Returns the cartilage segments (for calcified-cartilage distractors) and the sternum box.
    """
    H = TISSUE_HU
    cage = rib_cage(anatomy)
    a, b, cy = cage["semi_x_mm"], cage["semi_y_mm"], cage["centre_y_mm"]
    y_st, hw, hd = cage["sternum_y_mm"], cage["sternum_half_width_mm"], cage["sternum_half_depth_mm"]
    z_lo, z_hi = cage["sternum_z_mm"]
    # Sternum: a flat plate, thin cortex over marrow.
    for shrink, value, label in ((0.0, H["cortical"], LABEL_IDS["sternum"]), (1.2, H["trabecular"], None)):
        paint(canvas, (-hw - 2, y_st - hd - 2, z_lo), (hw + 2, y_st + hd + 2, z_hi),
              ellipse_stack_sdf(z_lo + shrink, z_hi - shrink, lambda Z: (0.0, y_st),
                                lambda Z, s=shrink: (hw - s, hd - s)), value, label)
    cartilages: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
    z_top_canvas = float(canvas.grid.origin_lps_mm[2] + canvas.grid.spacing_mm[0] * (canvas.grid.shape[0] + 1))
    z_bot_canvas = float(canvas.grid.origin_lps_mm[2] - canvas.grid.spacing_mm[0])
    for side, tag in ((1, "left"), (-1, "right")):
        for k in range(1, 13):
            z_post = -15.5 - (k - 5) * 26.0
            phi_end = 2.7 if k <= 7 else (2.35 if k <= 10 else 1.7)
            drop = 55.0 * phi_end / 2.7
            phis = np.linspace(0.2, phi_end, 10)
            pts = [(side * 18.0, 78.0, z_post)] + [
                (side * a * np.sin(p), cy + b * np.cos(p), z_post - drop * (p / phi_end) ** 1.5) for p in phis]
            end = pts[-1]
            if k <= 7:
                cartilages[f"{tag}_{k}"] = (end, (side * (hw - 1.0), y_st, -(k - 2) * 24.4))
            elif k <= 10:
                p0, p1 = cartilages[f"{tag}_{k - 1}"]
                cartilages[f"{tag}_{k}"] = (end, tuple(0.5 * (np.asarray(p0) + np.asarray(p1))))
            zs = [p[2] for p in pts]
            if max(zs) < z_bot_canvas - 10 or min(zs) > z_top_canvas + 10:
                continue
            for radius, value, label in ((RIB_RADIUS_MM, H["cortical"], LABEL_IDS[f"rib_{tag}_{k}"]),
                                         (RIB_RADIUS_MM - 1.3, 260.0, None)):
                for p, q in zip(pts[:-1], pts[1:]):
                    paint_capsule(canvas, p, q, radius, value, label)
    for p0, p1 in cartilages.values():
        paint_capsule(canvas, p0, p1, CARTILAGE_RADIUS_MM, H["cartilage"], LABEL_IDS["costal_cartilages"])
    return {"cartilages": {k: [list(map(float, p0)), list(map(float, p1))] for k, (p0, p1) in cartilages.items()},
            "sternum": {"centre_y_mm": y_st, "half_width_mm": hw, "half_depth_mm": hd, "z_range_mm": [z_lo, z_hi]},
            "rib_cage": cage}


# --------------------------------------------------------------------------------------------
# Distractors


@dataclass
class _Distractor:
    kind: str
    shape: object
    density_mg_cm3: float
    moving: bool
    where: str


def _coarse_fraction(shape, grid: Grid):
    """Partial volume of a shape, sampled just finely enough (≥ 8 steps across its smallest extent)
    that thin shapes are not missed; for placement checks and background HU, not for truth."""
    fine = int(min(32, max(2, np.ceil(8 * max(grid.spacing_mm[1:]) / max(shape.smallest_feature_mm(), 1e-3)))))
    return render_fraction(shape, grid, fine)


class _Placer:
    """Draws candidate distractor shapes and accepts those that lie wholly in the field of view and
    keep ≥ 2 mm (and ≥ 1 voxel) from every coronary label and from the forbidden labels of their kind."""

    def __init__(self, canvas: Canvas, rng: np.random.Generator) -> None:
        self.canvas = canvas
        self.rng = rng
        self.coronary = [LABEL_IDS[a] for a in CORONARY_ARTERIES]

    def clear(self, shape, forbidden: Sequence[int] = ()) -> bool:
        grid = self.canvas.grid
        if not sector_in_grid(shape, grid):
            return False
        rendered = _coarse_fraction(shape, grid)
        if rendered is None:
            return False
        sl, frac, _, _ = rendered
        pad = [max(1, int(np.ceil(2.0 / d))) for d in grid.spacing_mm]
        lo = [max(0, s.start - p) for s, p in zip(sl, pad)]
        hi = [min(n, s.stop + p) for s, p, n in zip(sl, pad, grid.shape)]
        big = tuple(slice(a, b) for a, b in zip(lo, hi))
        mask = np.zeros(tuple(b - a for a, b in zip(lo, hi)), bool)
        mask[tuple(slice(s.start - a, s.stop - a) for s, a in zip(sl, lo))] = frac > 0
        grown = ndimage.maximum_filter(mask, size=tuple(2 * p + 1 for p in pad))
        return not np.isin(self.canvas.labels[big][grown], [*self.coronary, *forbidden]).any()

    def density(self) -> float:
        return round(float(self.rng.uniform(*DISTRACTOR_DENSITY_MG_CM3)), 1)


def _aortic_valve(P: _Placer, A: ChestAnatomy, vessels: dict[str, Vessel]) -> list[_Distractor]:
    aorta = vessels["aorta"]
    a, b = np.asarray(aorta.points[0]), np.asarray(aorta.points[1])
    u = (b - a) / np.linalg.norm(b - a)
    R = aorta.lumen_radius_mm[0]
    out = []
    n = int(P.rng.integers(1, 4))
    base = float(P.rng.uniform(0, 360))
    for i in range(n):
        for _ in range(20):
            r0 = float(P.rng.uniform(0.3, 0.6)) * R
            s0 = float(P.rng.uniform(0.0, 4.0))
            shape = _sector(a, u, s0, s0 + float(P.rng.uniform(1.5, 4.0)), r0, r0 + float(P.rng.uniform(1.5, 3.0)),
                            np.deg2rad(base + 120.0 * i + float(P.rng.uniform(-15, 15))),
                            np.deg2rad(float(P.rng.uniform(25, 70))) / 2)
            if P.clear(shape):
                out.append(_Distractor("aortic_valve", shape, P.density(), True, f"aortic valve cusp {i + 1}"))
                break
    return out


def _aortic_root_wall(P: _Placer, A: ChestAnatomy, vessels: dict[str, Vessel]) -> list[_Distractor]:
    aorta = vessels["aorta"]
    a, b = np.asarray(aorta.points[0]), np.asarray(aorta.points[1])
    u = (b - a) / np.linalg.norm(b - a)
    R = aorta.lumen_radius_mm[0]
    for _ in range(30):
        # The root (s < 14 mm): the random aortic plaques start ≥ 20 mm up, so the two never touch.
        s0 = float(P.rng.uniform(1.0, 8.0))
        thick = float(P.rng.uniform(0.5, 1.0)) * aorta.wall_mm
        shape = _sector(a, u, s0, s0 + float(P.rng.uniform(3.0, 6.0)), R, R + thick,
                        np.deg2rad(float(P.rng.uniform(0, 360))), np.deg2rad(float(P.rng.uniform(30, 120))) / 2)
        if P.clear(shape):
            return [_Distractor("aortic_root_wall", shape, P.density(), False, "aortic root wall")]
    return []


def _descending_wall(P: _Placer, A: ChestAnatomy, vessels: dict[str, Vessel]) -> list[_Distractor]:
    desc = _descending_aorta(A)
    a, b = np.asarray(desc.points[0]), np.asarray(desc.points[1])
    u = (b - a) / np.linalg.norm(b - a)
    z = P.canvas.grid.origin_lps_mm[2]
    top = float(z + P.canvas.grid.spacing_mm[0] * (P.canvas.grid.shape[0] - 1))
    # Arc length along the descending aorta of the scan's z range (it runs almost straight down).
    s_lo, s_hi = max(5.0, (a[2] - top) / -u[2] + 5.0), (a[2] - z) / -u[2] - 20.0
    for _ in range(30):
        if s_hi <= s_lo:
            break
        s0 = float(P.rng.uniform(s_lo, s_hi))
        shape = _sector(a, u, s0, s0 + float(P.rng.uniform(3.0, 15.0)), desc.lumen_radius_mm[0],
                        desc.lumen_radius_mm[0] + float(P.rng.uniform(0.8, 2.0)),
                        np.deg2rad(float(P.rng.uniform(0, 360))), np.deg2rad(float(P.rng.uniform(30, 120))) / 2)
        if P.clear(shape):
            return [_Distractor("descending_aorta", shape, P.density(), False, "descending aortic wall")]
    return []


def _fit_circle(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares plane (normal by SVD) and circle (algebraic fit in that plane) through 3-D points."""
    c0 = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - c0)
    e1, e2, n = vt[0], vt[1], vt[2]
    x, y = (points - c0) @ e1, (points - c0) @ e2
    M = np.stack([x, y, np.ones_like(x)], axis=1)
    sol, *_ = np.linalg.lstsq(M, x * x + y * y, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    r = float(np.sqrt(sol[2] + cx * cx + cy * cy))
    return c0 + cx * e1 + cy * e2, n, r


def _mitral_annulus(P: _Placer, A: ChestAnatomy, vessels: dict[str, Vessel]) -> list[_Distractor]:
    # The annulus lies in the plane of the left atrioventricular groove, where the LCX runs, a few mm
    # deeper: the circle through the LCX, shrunk by 7–12 mm, and the C-shaped band on its posterior part.
    lcx = np.asarray(vessels["lcx"].points)
    centre, n, r = _fit_circle(lcx)
    if n @ A.long_axis < 0:
        n = -n
    post = lcx[-2] - centre
    post -= (post @ n) * n
    for attempt in range(30):
        depth = float(P.rng.uniform(7.0, 12.0)) + 0.2 * attempt
        width, thick = float(P.rng.uniform(2.0, 4.0)), float(P.rng.uniform(2.0, 4.0))
        rc = r - depth
        if rc - width / 2 < 5.0:
            break
        shape = _sector(centre - 0.5 * thick * n, n, 0.0, thick, rc - width / 2, rc + width / 2,
                        _angle_towards(n, post) + np.deg2rad(float(P.rng.uniform(-25, 25))),
                        np.deg2rad(float(P.rng.uniform(80, 170))) / 2)
        if P.clear(shape):
            return [_Distractor("mitral_annulus", shape, P.density(), True, "posterior mitral annulus")]
    return []


def _polyline_distance(p: np.ndarray, vessels: dict[str, Vessel], names: Sequence[str]) -> float:
    best = np.inf
    for name in names:
        pts = np.asarray(vessels[name].points)
        for a, b in zip(pts[:-1], pts[1:]):
            best = min(best, float(segment_distance((p[0], p[1], p[2]), a, b)))
    return best


def _pericardium(P: _Placer, A: ChestAnatomy, vessels: dict[str, Vessel]) -> list[_Distractor]:
    S = np.asarray(A.heart_semi_axes_mm)
    R = A.rotation
    for _ in range(40):
        t = float(P.rng.uniform(0, 2 * np.pi))
        k = float(P.rng.uniform(-0.7, 0.2))
        d = np.array([np.cos(t) * np.sqrt(1 - k * k), np.sin(t) * np.sqrt(1 - k * k), k])
        q = S * d
        normal = R @ (q / S ** 2)
        normal /= np.linalg.norm(normal)
        thick, radius = float(P.rng.uniform(1.0, 2.0)), float(P.rng.uniform(3.0, 7.0))
        # 2–4 mm outside the epicardial fat.
        centre = np.asarray(A.heart_centre_mm) + R @ q + (EPICARDIAL_FAT_MM + float(P.rng.uniform(2.0, 4.0))
                                                          + 0.5 * thick) * normal
        if _polyline_distance(centre, vessels, ("rca", "lad", "lcx", "left_main")) < radius + 10.0:
            continue
        shape = _sector(centre - 0.5 * thick * normal, normal, 0.0, thick, 0.0, radius, 0.0, np.pi)
        if P.clear(shape, forbidden=[LABEL_IDS["aorta"]]):
            # The calcium lies in a small patch of thickened pericardium (soft tissue).
            frame = np.stack([*_frame(normal), normal], axis=1)
            _paint_oriented_ellipsoid(P.canvas, centre, (radius + 2.0, radius + 2.0, 0.5 * thick + 1.5), frame,
                                      TISSUE_HU["soft_tissue"], only_labels=(0,))
            return [_Distractor("pericardium", shape, P.density(), True, "pericardial patch")]
    return []


def _costal_cartilage(P: _Placer, A: ChestAnatomy, skeleton: dict | None) -> list[_Distractor]:
    if not skeleton:
        return []
    names = [k for k in skeleton["cartilages"] if 2 <= int(k.split("_")[1]) <= 7]
    for _ in range(40):
        key = names[int(P.rng.integers(len(names)))]
        p0, p1 = (np.asarray(p) for p in skeleton["cartilages"][key])
        L = float(np.linalg.norm(p1 - p0))
        length = float(P.rng.uniform(4.0, min(12.0, L - 8.0)))
        s0 = float(P.rng.uniform(4.0, L - 4.0 - length))
        shape = _sector(p0, p1 - p0, s0, s0 + length, 0.0, float(P.rng.uniform(1.2, CARTILAGE_RADIUS_MM - 1.0)),
                        0.0, np.pi)
        if P.clear(shape):
            return [_Distractor("costal_cartilage", shape, P.density(), False, f"costal cartilage {key}")]
    return []


#: Lymph node stations (fixed to the mediastinum, not the heart): (name, centre xyz mm).
NODE_STATIONS = (("subcarinal", (0.0, 12.0, -22.0)), ("right paratracheal", (-16.0, -6.0, 2.0)),
                 ("left hilar", (48.0, 8.0, -22.0)), ("right hilar", (-48.0, 8.0, -22.0)))


def _lymph_node(P: _Placer, A: ChestAnatomy, vessels: dict[str, Vessel]) -> list[_Distractor]:
    forbidden = [LABEL_IDS["heart"], LABEL_IDS["aorta"], *(LABEL_IDS[n] for n in CHEST_VERTEBRAE)]
    for _ in range(40):
        name, c = NODE_STATIONS[int(P.rng.integers(len(NODE_STATIONS)))]
        centre = np.asarray(c) + P.rng.uniform(-5, 5, 3)
        semi = tuple(float(v) for v in P.rng.uniform(1.5, 4.0, 3))
        shape = Ellipsoid(tuple(float(v) for v in centre), semi)
        node_semi = np.maximum(np.asarray(semi) + 2.5, P.rng.uniform(5.0, 8.0, 3))
        if not P.clear(Ellipsoid(shape.centre, tuple(float(v) for v in node_semi)), forbidden):
            continue
        _paint_oriented_ellipsoid(P.canvas, centre, node_semi, np.eye(3), 35.0, only_labels=(0,))
        return [_Distractor("lymph_node", shape, P.density(), False, f"{name} lymph node")]
    return []


def choose_distractor_kinds(distractors: str | Sequence[str], rng: np.random.Generator, *, skeleton: bool
                            ) -> tuple[list[str], list[str]]:
    """(calcium kinds, bone kinds) named by ``distractors``: "none" or False, "random", "all" or True
    (every calcium kind), or a list of kinds."""
    if isinstance(distractors, (bool, np.bool_)):
        distractors = "all" if distractors else "none"
    if distractors == "all":
        return list(DISTRACTOR_KINDS), []
    if isinstance(distractors, str):
        if distractors == "none":
            return [], []
        if distractors != "random":
            raise InputError(f"distractors must be 'none', 'random', 'all' or a list of kinds "
                             f"({', '.join(DISTRACTOR_KINDS + BONE_KINDS)}), got {distractors!r}")
        draws = rng.random(len(DISTRACTOR_KINDS))
        kinds = [k for k, u in zip(DISTRACTOR_KINDS, draws) if u < DISTRACTOR_PROBABILITY[k]]
        return [k for k in kinds if skeleton or k != "costal_cartilage"], []
    kinds = list(distractors)
    unknown = [k for k in kinds if k not in DISTRACTOR_KINDS + BONE_KINDS]
    if unknown:
        raise InputError(f"unknown distractor kind(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(DISTRACTOR_KINDS + BONE_KINDS)}")
    return [k for k in DISTRACTOR_KINDS if k in kinds], [k for k in BONE_KINDS if k in kinds]


# --------------------------------------------------------------------------------------------
# Motion, field of view, metal


def line_blur(image: np.ndarray, spacing_mm: tuple[float, float, float], length_mm: float,
              direction_xy: tuple[float, float], *, mode: str = "constant") -> np.ndarray:
    """Motion blur: the mean of copies of ``image`` shifted along an in-plane unit direction (x, y)
    over ``length_mm`` (a box kernel, sampled every quarter voxel, linear interpolation). With
    ``mode="constant"`` and content away from the borders, the sum of the image is kept exactly."""
    if length_mm <= 0:
        return image
    dy, dx = spacing_mm[1], spacing_mm[2]
    n = int(np.ceil(length_mm / (0.25 * min(dy, dx)))) + 1
    out = np.zeros_like(image, dtype=np.float32)
    for t in np.linspace(-0.5 * length_mm, 0.5 * length_mm, n):
        out += ndimage.shift(image, (0.0, t * direction_xy[1] / dy, t * direction_xy[0] / dx), order=1, mode=mode,
                             prefilter=False)
    out /= np.float32(n)
    return out


def _blur_nonzero(image: np.ndarray, spacing_mm, length_mm: float, direction_xy) -> np.ndarray:
    """:func:`line_blur` of the non-zero part of ``image`` only (cropped, padded so nothing is lost)."""
    nz = np.nonzero(image.any(axis=0))
    if nz[0].size == 0:
        return image
    zs = np.flatnonzero(image.any(axis=(1, 2)))
    pad_y = int(np.ceil(0.5 * length_mm / spacing_mm[1])) + 2
    pad_x = int(np.ceil(0.5 * length_mm / spacing_mm[2])) + 2
    sl = (slice(zs[0], zs[-1] + 1), slice(max(0, nz[0].min() - pad_y), nz[0].max() + pad_y + 1),
          slice(max(0, nz[1].min() - pad_x), nz[1].max() + pad_x + 1))
    out = np.zeros_like(image)
    out[sl] = line_blur(image[sl], spacing_mm, length_mm, direction_xy)
    return out


def _blur_heart_anatomy(canvas: Canvas, A: ChestAnatomy, length_mm: float, direction_xy, bone_ids) -> None:
    """Blur the heart, its fat and the coronaries (not the bones) along the motion, in place."""
    pad = EPICARDIAL_FAT_MM + length_mm + 4.0
    c = np.asarray(A.heart_centre_mm)
    ext = A.extent_mm(pad)
    sl = index_slices(canvas.grid, c - ext, c + ext)
    if sl is None:
        return
    Z, Y, X = canvas.block_coords(sl)
    R, S = A.rotation, np.asarray(A.heart_semi_axes_mm) + EPICARDIAL_FAT_MM + 2.0
    q = sum(((((X - c[0]) * R[0, i] + (Y - c[1]) * R[1, i] + (Z - c[2]) * R[2, i]) / S[i]) ** 2) for i in range(3))
    # Full blur inside the fat shell (+2 mm), fading out over ~ the next 10 %, none on bone.
    w = np.clip((1.1 - np.sqrt(q)) / 0.1, 0.0, 1.0).astype(np.float32)
    w = np.where(np.isin(canvas.labels[sl], bone_ids), np.float32(0.0), w)
    block = canvas.hu[sl]
    blurred = line_blur(block, canvas.grid.spacing_mm, length_mm, direction_xy, mode="nearest")
    block += w * (blurred - block)


def _fov_grid(grid: Grid, A: ChestAnatomy, cut_mm: float) -> Grid:
    """The grid shifted to the patient's right so that the heart's left ``cut_mm`` lies outside it."""
    if cut_mm <= 0:
        return grid
    heart_left = A.heart_centre_mm[0] + A.extent_mm()[0]
    last_edge = grid.origin_lps_mm[0] + (grid.shape[2] - 0.5) * grid.spacing_mm[2]
    shift = min(0.0, heart_left - cut_mm - last_edge)
    o = grid.origin_lps_mm
    return Grid(grid.shape, grid.spacing_mm, (o[0] + shift, o[1], o[2]), grid.direction)


def heart_fraction_in_fov(A: ChestAnatomy, grid: Grid) -> float:
    """Fraction of the heart ellipsoid's volume inside the grid (a fixed 1-mm-equivalent lattice)."""
    g = np.linspace(-1.0, 1.0, 31)
    U = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    U = U[(U ** 2).sum(axis=1) <= 1.0]
    P = np.asarray(A.heart_centre_mm) + (U * np.asarray(A.heart_semi_axes_mm)) @ A.rotation.T
    origin = np.asarray(grid.origin_lps_mm)
    sp = np.asarray(grid.spacing_mm)[::-1]
    lo, hi = origin - 0.5 * sp, origin + (np.asarray(grid.shape)[::-1] - 0.5) * sp
    return float(np.mean(np.all((P >= lo) & (P <= hi), axis=1)))


def _paint_metal(canvas: Canvas, kind: str, A: ChestAnatomy, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Solid metal (never over a coronary label) and its streaks: a pacemaker lead or sternal wires."""
    metal_id = LABEL_IDS["metal_implant"]
    allowed = tuple(i for i in (0, *LABEL_IDS.values()) if i not in [LABEL_IDS[a] for a in CORONARY_ARTERIES])
    hu = TISSUE_HU["metal"]
    if kind == "pacemaker_lead":
        # Left subclavian vein → superior vena cava → right atrium → right-ventricular apex.
        pts = [np.array([75.0, -35.0, 30.0]), np.array([-18.0, -14.0, 8.0]), np.array([-28.0, -18.0, -25.0]),
               A.to_world((-30.0, -15.0, -80.0)), A.to_world((20.0, -30.0, -125.0))]
        for p, q in zip(pts[:-1], pts[1:]):
            paint_capsule(canvas, p, q, 1.0, hu, metal_id, only_labels=allowed)
        info = {"kind": kind, "path_lps_mm": [p.tolist() for p in pts], "radius_mm": 1.0}
    elif kind == "sternal_wires":
        cage = rib_cage(A)
        y, hw, hd = cage["sternum_y_mm"], cage["sternum_half_width_mm"] + 1.5, cage["sternum_half_depth_mm"] + 1.5
        # Each wire loop lies in one axial plane: snap it to a slice centre, or a wire thinner than the
        # slice increment could fall between two slices' centres and vanish from the painted canvas.
        z0, dz = canvas.grid.origin_lps_mm[2], canvas.grid.spacing_mm[0]
        levels = [float(z0 + dz * np.round((z - z0) / dz)) for z in (-15.0, -40.0, -65.0, -90.0, -115.0)]
        for z in levels:
            corners = [(-hw, y - hd, z), (hw, y - hd, z), (hw, y + hd, z), (-hw, y + hd, z)]
            for p, q in zip(corners, corners[1:] + corners[:1]):
                paint_capsule(canvas, p, q, 0.7, hu, metal_id, only_labels=allowed)
        info = {"kind": kind, "z_levels_mm": levels, "wire_radius_mm": 0.7}
    else:
        raise InputError(f"metal must be None, 'pacemaker_lead' or 'sternal_wires', got {kind!r}")
    info.update({"hu": hu, "label": "metal_implant"})
    return metal_streaks(canvas.labels == metal_id, canvas.grid, rng), info


# --------------------------------------------------------------------------------------------
# The phantom


def _random_coronary_plaques(rng: np.random.Generator, vessels: list[Vessel], plaque_rate: float | None
                             ) -> tuple[list[PlaqueSpec], dict]:
    if plaque_rate is not None:
        means = {k: v * plaque_rate for k, v in PLAQUE_MEANS.items()}
        return random_plaques(rng, vessels, means, length_range_mm=PLAQUE_LENGTHS_MM, density_range=(150.0, 900.0)), \
            {"model": "poisson", "means": means}
    heart_free = bool(rng.random() < CALCIUM_FREE_HEART_P)
    counts: dict[str, int] = {}
    free = []
    for artery in CORONARY_ARTERIES:
        is_free = heart_free or bool(rng.random() < CALCIUM_FREE_ARTERY_P)
        n = 0 if is_free else 1 + int(rng.poisson(EXTRA_PLAQUES_MEAN[artery]))
        if is_free:
            free.append(artery)
        if artery == "lad":
            n_lm = int(rng.binomial(n, LEFT_MAIN_SHARE))
            counts["left_main"], counts["lad"] = n_lm, n - n_lm
        else:
            counts[artery] = n
    counts["aorta"] = int(rng.poisson(AORTA_PLAQUES_MEAN))
    specs = random_plaques(rng, vessels, {}, length_range_mm=PLAQUE_LENGTHS_MM, density_range=(150.0, 900.0),
                           counts=counts)
    return specs, {"model": "per_artery", "calcium_free_heart": heart_free, "calcium_free_arteries": free,
                   "requested_counts": counts}


def make_chest_phantom(seed: int = 0, *, shape: tuple[int, int, int] = (64, 256, 256),
                       spacing_mm: tuple[float, float, float] = (2.5, 1.25, 1.25),
                       slice_thickness_mm: float | None = None, noise_sd_hu: float = 15.0, lumen_hu: float = 40.0,
                       plaques: str | list[PlaqueSpec] = "random", supersample: int = 4, psf_fwhm_mm: float = 1.0,
                       ssp_blur_fwhm_mm: float | None = None, noise_corr_fwhm_mm: float = 0.0,
                       hu_per_mg_cm3: float = physics.HU_PER_MG_HA_CM3, plaque_rate: float | None = None,
                       vary_anatomy: bool = True, distractors: str | bool | Sequence[str] = "random",
                       ribs: bool | None = None, motion_blur_mm: float | str | None = "random",
                       fov_cut_mm: float = 0.0, metal: str | None = None) -> Phantom:
    """Non-gated chest CT phantom with coronary (RCA, LM+LAD, LCX), aortic and distractor calcium of exact truth.

    Labels: ``heart``, ``aorta`` (root + ascending + descending), ``rca``, ``lad`` (left main
    included, ``truth["lad_includes_left_main"] = True``), ``lcx``, ``vertebrae_T5``…``T10``; with
    the skeleton ``rib_left_1``…``rib_right_12``, ``sternum``, ``costal_cartilages``
    (TotalSegmentator v2 names); ``metal_implant`` with ``metal``. Coronary walls are 1 mm thick, so
    coronary plaques are ≤ 1 mm thick: thin, small calcium. Physics arguments as
    :func:`vascalc.phantoms.make_vascular_phantom`. Issue 8; docs/phantoms.md, "Chest phantom".

    - ``vary_anatomy``: heart position, size, axis, vessel calibres and body size from the seed
      (:class:`ChestAnatomy`); False gives the fixed layout.
    - ``plaque_rate``: None → per-artery model (≈ 30 % of arteries and ≈ 15 % of hearts without
      coronary calcium, see :data:`CALCIUM_FREE_HEART_P`); a number → Poisson counts × that number.
    - ``distractors``: "random" (each kind with :data:`DISTRACTOR_PROBABILITY`), "none" (or False),
      "all" (or True), or a list of :data:`DISTRACTOR_KINDS` (``ribs``/``sternum``/``spine`` may be
      listed: they are bone, painted and labelled, see ``truth["bones"]``).
    - ``ribs``: paint ribs, costal cartilages and sternum; None → as ``vary_anatomy``.
    - ``motion_blur_mm``: cardiac motion during a non-gated scan: the coronary calcium, heart-borne
      distractors and the heart's anatomy are blurred along one in-plane direction over this length
      (mm), the calcium integral kept; "random" → uniform 0–3 mm; None or 0 → none.
    - ``fov_cut_mm``: shift the field of view to the patient's right so that the heart's left
      ``fov_cut_mm`` lies outside it (an unsuitable scan); ``metal``: None, "pacemaker_lead" or
      "sternal_wires" (solid metal with streaks).

    ``calcium_fraction`` holds all true calcium (plaques and distractors, unmoved); ``plaque_ids``
    the plaques, ``distractor_ids`` the distractors.
    """
    phys = CtPhysics(slice_thickness_mm, ssp_blur_fwhm_mm, psf_fwhm_mm, noise_sd_hu, noise_corr_fwhm_mm, supersample,
                     hu_per_mg_cm3).resolved(spacing_mm[0])
    if fov_cut_mm < 0:
        raise InputError(f"fov_cut_mm must not be negative, got {fov_cut_mm}")
    if metal not in (None, "pacemaker_lead", "sternal_wires"):
        raise InputError(f"metal must be None, 'pacemaker_lead' or 'sternal_wires', got {metal!r}")
    if isinstance(plaques, str) and plaques not in ("random", "none"):
        raise InputError(f"plaques must be 'random', 'none' or a list of PlaqueSpec, got {plaques!r}")
    if plaque_rate is not None and plaque_rate < 0:
        raise InputError(f"plaque_rate must not be negative, got {plaque_rate}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_anat, rng_dist, rng_plaque, rng_motion, rng_metal, rng_noise = streams
    anatomy, blend, fit_shift = sample_anatomy(rng_anat) if vary_anatomy else (ChestAnatomy(), 0.0, 0.0)
    A = anatomy
    kinds, bone_kinds = choose_distractor_kinds(distractors, rng_dist, skeleton=True)
    skeleton_on = (vary_anatomy if ribs is None else bool(ribs)) or bool({"ribs", "sternum"} & set(bone_kinds))
    if "costal_cartilage" in kinds and not skeleton_on:
        if isinstance(distractors, (str, bool, np.bool_)):
            kinds.remove("costal_cartilage")
        else:
            raise InputError("a costal_cartilage distractor needs the rib cage: leave ribs=None/True")
    if isinstance(motion_blur_mm, str):
        if motion_blur_mm != "random":
            raise InputError(f"motion_blur_mm must be a number, None or 'random', got {motion_blur_mm!r}")
        blur_mm = round(float(rng_motion.uniform(0.0, 3.0)), 3)
    else:
        blur_mm = float(motion_blur_mm or 0.0)
        if blur_mm < 0:
            raise InputError(f"motion_blur_mm must not be negative, got {blur_mm}")
    blur_angle = float(rng_motion.uniform(0.0, 2.0 * np.pi))
    blur_dir = (float(np.cos(blur_angle)), float(np.sin(blur_angle)))

    grid = _fov_grid(make_grid(shape, spacing_mm, z_top_mm=0.0), A, fov_cut_mm)
    H = TISSUE_HU
    contrast = lumen_hu > 100.0
    canvas = Canvas.empty(grid, H["air"])
    top, bottom = 20.0, -250.0
    bx, by = A.body_scale
    for shrink, value in ((0.0, H["fat"]), (15.0, H["muscle"]), (28.0, H["soft_tissue"])):
        paint(canvas, (-170, -130, bottom), (170, 150, top),
              ellipse_stack_sdf(bottom, top, lambda Z: (0.0, 10.0),
                                lambda Z, s=shrink: (BODY_SEMI[0] * bx - s, BODY_SEMI[1] * by - s)), value)
    # Lungs; with varied anatomy they reach forward to the chest wall, in front of the heart, as real
    # lungs do (the fixed layout keeps its original, shallower lungs).
    lung_cy, lung_ay = (10.0, 90.0 * by) if vary_anatomy else (15.0, 85.0)
    for side in (1, -1):
        paint(canvas, (-160, -110, bottom), (160, 120, top),
              ellipse_stack_sdf(bottom, top, lambda Z, sd=side: (70.0 * bx * sd, lung_cy),
                                lambda Z: (62.0 * bx, lung_ay)), -850.0)
    # Spine (T5–T10 bodies with discs) behind the heart.
    paint(canvas, (-25, 50, bottom), (25, 95, top),
          ellipse_stack_sdf(bottom, top, lambda Z: (0.0, 72.0), lambda Z: (17.0, 14.0)), H["disc"])
    z = -5.0
    vert_truth = {}
    for name in CHEST_VERTEBRAE:
        z0, z1 = z - 21.0, z
        for d, shrink, value in ((0.0, 0.0, H["cortical"]), (1.2, 1.4, H["trabecular"])):
            paint(canvas, (-20, 55, z0), (20, 90, z1), ellipse_stack_sdf(z0 + d, z1 - d, lambda Z: (0.0, 72.0),
                                                                         lambda Z, s=shrink: (17.0 - s, 14.0 - s)),
                  value, LABEL_IDS[name])
        vert_truth[name] = {"z_top_mm": z1, "z_bottom_mm": z0}
        z = z0 - 5.0
    # Heart: epicardial fat, myocardium, blood pool.
    R = A.rotation
    c = np.asarray(A.heart_centre_mm)
    S = np.asarray(A.heart_semi_axes_mm)
    _paint_oriented_ellipsoid(canvas, c, S + EPICARDIAL_FAT_MM, R, H["fat"])
    _paint_oriented_ellipsoid(canvas, c, S, R, H["muscle"], LABEL_IDS["heart"])
    _paint_oriented_ellipsoid(canvas, A.to_world(HEART_CENTRE + np.array([-5.0, 0.0, 5.0])), S - 11.0, R, lumen_hu,
                              LABEL_IDS["heart"])
    skeleton = _paint_skeleton(canvas, A) if skeleton_on else None
    vessels = chest_vessels(A)
    desc = _descending_aorta(A)
    ids_all = dict(LABEL_IDS, aorta_descending=LABEL_IDS["aorta"], left_main=LABEL_IDS["lad"])
    paint_vessels(canvas, [*vessels, desc], ids_all, wall_hu=H["wall"], lumen_hu=lumen_hu)
    by_name = {v.name: v for v in vessels}

    # Distractor calcium, placed clear of the coronaries.
    placer = _Placer(canvas, rng_dist)
    makers = {"aortic_valve": _aortic_valve, "aortic_root_wall": _aortic_root_wall,
              "descending_aorta": _descending_wall, "mitral_annulus": _mitral_annulus, "pericardium": _pericardium,
              "lymph_node": _lymph_node}
    found: list[_Distractor] = []
    for kind in kinds:
        if kind == "costal_cartilage":
            found += _costal_cartilage(placer, A, skeleton)
        else:
            found += makers[kind](placer, A, by_name)
    metal_streak, metal_info = (None, None)
    if metal is not None:
        metal_streak, metal_info = _paint_metal(canvas, metal, A, rng_metal)

    if isinstance(plaques, str):
        specs, plaque_model = ([], {"model": "none"}) if plaques == "none" else \
            _random_coronary_plaques(rng_plaque, vessels, plaque_rate)
    else:
        specs, plaque_model = list(plaques), {"model": "given"}
    sectors_specs = place_sectors(specs, by_name, grid, drop_outside=isinstance(plaques, str))
    sectors = [(sec, physics.ha_density_to_hu(sp.density_mg_cm3, hu_per_mg_cm3=hu_per_mg_cm3), H["wall"])
               for sp, sec in sectors_specs]
    moving = [sp.vessel != "aorta" for sp, _ in sectors_specs]
    for d in found:
        # The calcium replaces what was painted there: the coverage-weighted mean of the canvas.
        sl, frac, _, _ = _coarse_fraction(d.shape, grid)
        hu_bg = float(np.average(canvas.hu[sl], weights=frac)) if frac.sum() > 0 else 0.0
        sectors.append((d.shape, physics.ha_density_to_hu(d.density_mg_cm3, hu_per_mg_cm3=hu_per_mg_cm3), hu_bg))
        moving.append(d.kind in MOVING_DISTRACTORS)
    bone_ids = [LABEL_IDS[n] for n in (*CHEST_VERTEBRAE, *RIB_NAMES, "sternum", "costal_cartilages")]
    if blur_mm > 0:
        _blur_heart_anatomy(canvas, A, blur_mm, blur_dir, bone_ids)
    bone_labels = canvas.labels.copy()
    motion = (lambda im: _blur_nonzero(im, grid.spacing_mm, blur_mm, blur_dir)) if blur_mm > 0 else None
    hu, fraction, ids, voxelised = render_ct(canvas, sectors, phys, rng_noise, streaks=metal_streak, moving=moving,
                                             motion=motion)
    n_pl = len(sectors_specs)
    plaque_ids = np.where(ids <= n_pl, ids, 0).astype(np.int32)
    distractor_ids = np.where(ids > n_pl, ids - n_pl, 0).astype(np.int32)
    records = plaque_records(sectors_specs, voxelised[:n_pl], phys, bone_labels, grid,
                             [LABEL_IDS[n] for n in (*CHEST_VERTEBRAE, *RIB_NAMES, "sternum")])
    structures = structure_truth(list(VESSEL_NAMES), records)
    lm = structures["left_main"]
    lad = structures["lad"]
    structures["lad"] = {k: (lad[k] + lm[k]) for k in ("calcium_volume_mm3", "calcium_volume_voxelised_mm3",
                                                       "mass_mg", "n_lesions", "plaque_ids")}
    structures["lad"]["plaque_ids"] = sorted(structures["lad"]["plaque_ids"])
    distractor_truth = []
    for i, (d, vox) in enumerate(zip(found, voxelised[n_pl:]), start=1):
        lo, hi = d.shape.bbox_mm()
        vol = float(d.shape.volume_mm3)
        distractor_truth.append({
            "id": i, "kind": d.kind, "where": d.where, "centre_lps_mm": [round(float(v), 3) for v in 0.5 * (lo + hi)],
            "volume_mm3": vol, "volume_voxelised_mm3": vox, "density_mg_cm3": d.density_mg_cm3,
            "mass_mg": d.density_mg_cm3 * vol / 1000.0,
            "hu": round(float(physics.ha_density_to_hu(d.density_mg_cm3, hu_per_mg_cm3=hu_per_mg_cm3)), 2),
            "bbox_lps_mm": [[round(float(v), 3) for v in lo], [round(float(v), 3) for v in hi]],
            "moves_with_heart": d.moving, "shape": {"type": type(d.shape).__name__, **asdict(d.shape)}})
    present = set(np.unique(canvas.labels).tolist())
    bones = [{"kind": "spine", "labels": [n for n in CHEST_VERTEBRAE if LABEL_IDS[n] in present]}]
    if skeleton is not None:
        bones += [{"kind": "ribs", "labels": [n for n in RIB_NAMES if LABEL_IDS[n] in present]},
                  {"kind": "sternum", "labels": ["sternum"] if LABEL_IDS["sternum"] in present else []},
                  {"kind": "costal_cartilage",
                   "labels": ["costal_cartilages"] if LABEL_IDS["costal_cartilages"] in present else []}]
    params = {"seed": seed, "shape": list(shape), "spacing_mm": list(spacing_mm), "lumen_hu": lumen_hu,
              "plaques": plaques if isinstance(plaques, str) else [asdict(p) for p in plaques],
              "plaque_rate": plaque_rate, "physics": asdict(phys), "vary_anatomy": vary_anatomy,
              "distractors": distractors if isinstance(distractors, (str, bool)) else list(distractors),
              "ribs": ribs, "motion_blur_mm": motion_blur_mm, "fov_cut_mm": fov_cut_mm, "metal": metal}
    truth = {
        "schema_version": TRUTH_SCHEMA_VERSION, "kind": "chest", "seed": seed, "parameters": params,
        "parameters_hash": spec_hash(params), "contrast": contrast,
        "hu_model": {"formula": "plaque HU = hu_per_mg_cm3 * density_mg_cm3 (over water, 0 HU)",
                     "hu_per_mg_cm3": hu_per_mg_cm3, "calibration_factor_mg_cm3_per_hu": 1.0 / hu_per_mg_cm3,
                     "wall_hu": H["wall"], "lumen_hu": lumen_hu},
        "mask_definition": "vessel labels are lumen + wall; calcium lies in the wall, from the lumen surface outwards",
        "lad_includes_left_main": True,
        "structures": structures, "plaques": records,
        "coronary_presence": {a: structures[a]["n_lesions"] > 0 for a in CORONARY_ARTERIES},
        "plaque_model": plaque_model,
        "distractors": distractor_truth, "bones": bones,
        "vessels": {v.name: {"centreline_lps_mm": [list(p) for p in v.points],
                             "lumen_radius_mm": list(v.lumen_radius_mm),
                             "wall_mm": v.wall_mm, "label": LABEL_OF_VESSEL[v.name]} for v in vessels},
        "anatomy": {"varied": vary_anatomy, "blend_towards_drawn": blend, "heart_shift_to_fit_mm": fit_shift,
                    **asdict(A),
                    "heart_rotation": R.round(6).tolist(), "heart_long_axis_lps": A.long_axis.round(6).tolist()},
        "landmarks": {"vertebrae": vert_truth, "heart_centre_lps_mm": list(A.heart_centre_mm),
                      "heart_semi_axes_mm": list(A.heart_semi_axes_mm),
                      "aortic_root_lps_mm": _aorta_root(A).round(3).tolist(),
                      "coronary_ostia_lps_mm": {"rca": list(vessels[0].points[0]),
                                                "left_main": list(by_name["left_main"].points[0])},
                      "skeleton": skeleton},
        "motion": {"blur_mm": blur_mm, "direction_lps": [blur_dir[0], blur_dir[1], 0.0],
                   "applies_to": "coronary calcium and vessels, heart, " + ", ".join(MOVING_DISTRACTORS)},
        "fov": {"cut_mm": fov_cut_mm, "heart_fraction_in_fov": heart_fraction_in_fov(A, grid)},
        "metal": metal_info,
    }
    truth["total"] = {k: float(sum(structures[n][k] for n in ("aorta", "rca", "lad", "lcx")))
                      for k in ("calcium_volume_mm3", "calcium_volume_voxelised_mm3", "mass_mg")}
    truth["total"]["n_lesions"] = len(records)
    volume = Volume(hu=hu, grid=grid, info=scan_info(grid, phys, "vascalc chest phantom", contrast))
    always = {"heart", "aorta", *CORONARY_ARTERIES, *CHEST_VERTEBRAE}
    names = {i: n for n, i in LABEL_IDS.items() if i in present or n in always}
    return Phantom(volume=volume, labels=LabelMap(labels=canvas.labels, grid=grid, names=names),
                   calcium_fraction=fraction, plaque_ids=plaque_ids, truth=truth, distractor_ids=distractor_ids)
