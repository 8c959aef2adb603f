"""Fast, varied lateral lumbar radiographs by analytic projection of a 3-D scene, with exact Kauppila truth.

The scene is built from 3-D primitives in millimetres — vertebral bodies T12–L5 as elliptic
cylinders cut by their two endplates (cortical shell + trabecular core), discs, pedicles,
transverse and spinous processes, ribs 11–12, iliac wings (thin ellipsoidal shells), psoas, the
soft-tissue body (fat layer + muscle/organs), bowel gas and contrast, osteophytes at the anterior
body corners, and the abdominal aorta (a tube with its own tortuous course in front of the spine)
carrying calcified plaques as thin shell sectors on its anterior or posterior wall.

The image is a parallel-beam projection along the left–right axis (x). Every primitive is convex
(a quadric cut by planes) or an annular sector, so each ray's path length through it has a closed
form: the line integral P = Σ μ_i · chord_i is exact, without a voxel grid, and each primitive is
evaluated only inside its bounding box. Frame: x left→right (projection), r = image row axis in mm
(superior → inferior), c = image column axis in mm (anterior → posterior, the patient facing left
before an optional mirror).

The detector integrates over each pixel's area (``ChainParams.detector_supersampling`` k, default
:data:`DETECTOR_SUPERSAMPLING`): pixels that an outline or a plaque crosses are the mean of k × k
sub-pixel rays, so sub-millimetre plaque shells are not aliased at 0.4–0.9 mm pixels (round 14; k = 1
is the point-sampled generator of earlier rounds).

The image chain (:class:`ChainParams`) turns P into a displayed film: effective-energy bone/calcium
contrast, primary + scatter (low-frequency fraction of the primary), detector blur, quantum
(Poisson, Gaussian approximation) + electronic noise per pixel from photons per mm², log
transform, display window, optional unsharp masking (CR/DR processing), gamma LUT, 8/12/16-bit
quantisation, and a DXA-VFA-like chain (coarse pixels, heavy blur, high noise, optionally
dual-energy soft-tissue suppression).

Truth (SCORING.md B.1–B.2): L1–L4 (plus T12 and L5) corners of each body's mid-sagittal section;
each plaque's projected footprint is projected onto the spinal axis through the true landmarks
and the per-wall intervals are graded with :func:`vascalc.radiograph.kauppila.score_intervals` —
the same code that grades a radiograph's calcium mask, so truth and grading share one rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage

from vascalc.errors import InputError
from vascalc.phantoms.types import VertebraLandmark

#: Linear attenuation (1/mm) at an effective radiographic energy of ~50–60 keV [T, rounded from
#: NIST XCOM mass attenuation × density]: water/soft tissue, fat, muscle, trabecular and cortical
#: bone, calcified plaque (hydroxyapatite-rich) and iodinated/barium contrast.
MU = {"tissue": 0.0215, "fat": 0.0190, "muscle": 0.0225, "disc": 0.0230, "trabecular": 0.0300,
      "cortical": 0.0600, "plaque": 0.0550, "contrast": 0.0700}
VERTEBRA_NAMES = ("T12", "L1", "L2", "L3", "L4", "L5")
WALLS = ("anterior", "posterior")
#: Default detector supersampling (sub-pixels per side): each pixel records the mean line integral
#: over its area, as an integrating flat-panel/CR detector does. 1 = point sampling at pixel centres
#: (the sampling before round 14). 6: a plaque shell's pixels are within ≈ 1 % (relative L1) of
#: the exact area mean at 0.4–0.9 mm pixels (point sampling: 7–15 %), for ≈ +0.025 s of CPU per
#: film, because only the pixels an outline crosses are supersampled (round 14).
DETECTOR_SUPERSAMPLING = 6


# ----------------------------------------------------------------------------- analytic chords

def _rotation(sagittal_rad: float, coronal_rad: float, axial_rad: float) -> np.ndarray:
    """Columns = body axes (lr, si, anterior) in scene (x, r, c) coordinates.

    Axial rotation about the body's long axis, then lateral bending about the AP axis, then the
    sagittal (lordotic) tilt about x; positive sagittal tilt moves the caudal end anteriorly."""
    ca, sa = np.cos(axial_rad), np.sin(axial_rad)
    axial = np.array([[ca, 0, -sa], [0, 1, 0], [sa, 0, ca]])  # about r (si)
    cb, sb = np.cos(coronal_rad), np.sin(coronal_rad)
    coronal = np.array([[cb, -sb, 0], [sb, cb, 0], [0, 0, 1]])  # about c (ap)
    cs, ss = np.cos(sagittal_rad), np.sin(sagittal_rad)
    sagittal = np.array([[1, 0, 0], [0, cs, ss], [0, -ss, cs]])  # about x
    base = np.array([[1, 0, 0], [0, 1, 0], [0, 0, -1]], dtype=float).T  # lr, si (caudal), anterior (−c)
    return sagittal @ coronal @ axial @ base


@dataclass(frozen=True)
class Solid:
    """A convex solid: quadric (p−c)ᵀA(p−c) ≤ 1 cut by slabs |n·(p−c)| ≤ h, attenuation ``mu`` (1/mm,
    may be negative: a cavity replacing tissue); ``hard`` marks bone/calcium/contrast (kept by the
    dual-energy chain). ``half_extent`` (r, c) bounds its footprint."""

    centre: np.ndarray
    A: np.ndarray
    slabs: tuple[tuple[np.ndarray, float], ...]
    mu: float
    hard: bool
    half_extent: tuple[float, float]


def ellipsoid(centre, semi_axes, rot, mu, hard=False) -> Solid:
    s = np.asarray(semi_axes, dtype=float)
    A = rot @ np.diag(1.0 / s ** 2) @ rot.T
    ext = np.sqrt((rot ** 2) @ s ** 2)
    return Solid(np.asarray(centre, float), A, (), mu, hard, (float(ext[1]), float(ext[2])))


def cylinder_body(centre, a_lr, b_ap, half_height, rot, mu, hard=True) -> Solid:
    """Elliptic cylinder (semi-axes a_lr, b_ap) along the body's si axis, cut by the two endplates."""
    e_lr, e_si, e_ant = rot[:, 0], rot[:, 1], rot[:, 2]
    A = np.outer(e_lr, e_lr) / a_lr ** 2 + np.outer(e_ant, e_ant) / b_ap ** 2
    # extent along each scene axis: the elliptic cross-section's reach plus the axial half-height
    # (the ellipsoid formula used before round 14 clipped a tilted body's corners, up to 7 % of it)
    ext = (np.sqrt(rot[:, 0] ** 2 * a_lr ** 2 + rot[:, 2] ** 2 * b_ap ** 2) + np.abs(rot[:, 1]) * half_height) * 1.01
    return Solid(np.asarray(centre, float), A, ((e_si, half_height),), mu, hard, (float(ext[1]), float(ext[2])))


def chord_lengths(solid: Solid, dr: np.ndarray, dc: np.ndarray) -> np.ndarray:
    """Path length (mm) along x through ``solid`` of the rays at offsets (dr, dc) from its centre."""
    A = solid.A
    alpha = A[0, 0]
    beta = A[0, 1] * dr + A[0, 2] * dc
    gamma = A[1, 1] * dr * dr + 2 * A[1, 2] * dr * dc + A[2, 2] * dc * dc
    disc = beta * beta - alpha * (gamma - 1.0)
    root = np.sqrt(np.maximum(disc, 0.0))
    lo = (-beta - root) / alpha
    hi = (-beta + root) / alpha
    inside = disc > 0
    for n, h in solid.slabs:
        w = n[1] * dr + n[2] * dc
        if abs(n[0]) > 1e-9:
            x1, x2 = (-h - w) / n[0], (h - w) / n[0]
            lo = np.maximum(lo, np.minimum(x1, x2))
            hi = np.minimum(hi, np.maximum(x1, x2))
        else:
            inside &= np.abs(w) <= h
    return np.where(inside, np.clip(hi - lo, 0.0, None), 0.0)


def shell_sector_chord(u: np.ndarray, radius: float, thickness: float, half_arc_rad: float) -> np.ndarray:
    """Path length along x through an annular sector of a tube seen side-on (plaque on one wall).

    ``u`` = distance (mm) from the tube axis towards the wall's side (u > 0 on the plaque side);
    the sector spans radii [radius − thickness, radius] and ±half_arc around that side. Each of the
    two symmetric halves (x > 0, x < 0) covers [√((R−t)²−u²), min(√(R²−u²), u·tan α)]."""
    outer = np.sqrt(np.clip(radius ** 2 - u ** 2, 0.0, None))
    inner = np.sqrt(np.clip((radius - thickness) ** 2 - u ** 2, 0.0, None))
    cap = np.where(u > 0, u * np.tan(min(half_arc_rad, 1.5)), 0.0)
    return 2.0 * np.clip(np.minimum(outer, cap) - inner, 0.0, None)


# ----------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class ChainParams:
    """Image chain of one film. Lengths in mm; ``photons_per_mm2`` reach the detector without patient.

    ``detector_supersampling`` (default :data:`DETECTOR_SUPERSAMPLING`): each pixel integrates the
    line integral over its area (k × k sub-pixel rays wherever an outline or a plaque crosses it);
    1 samples pixel centres only, as before round 14 (aliases sub-millimetre shells)."""

    kind: str = "radiograph"           # "radiograph" | "dxa"
    pixel_spacing_mm: float = 0.6
    bone_contrast: float = 1.0         # scales (μ − μ_water) of hard material: low kVp → > 1
    scatter_to_primary: float = 0.5
    scatter_sigma_mm: float = 40.0
    blur_fwhm_mm: float = 0.5
    photons_per_mm2: float = 3.0e6
    electronic_noise: float = 2.0      # SD in photons per pixel
    soft_tissue_weight: float = 1.0    # < 1: dual-energy soft-tissue suppression (DXA bone image)
    unsharp_amount: float = 0.0
    unsharp_sigma_mm: float = 5.0
    equalisation: float = 0.0          # 0–1: share of the large-scale log signal removed (latitude compression)
    equalisation_sigma_mm: float = 25.0
    gamma: float = 1.0
    bits: int = 16
    facing: str = "left"
    detector_supersampling: int = DETECTOR_SUPERSAMPLING  # k × k rays per edge pixel; 1 = point sampling


@dataclass(frozen=True)
class LateralSpine:
    """One generated film: ``image`` float32 in [0, 1] (bone bright), spacing (row, col) mm, T12–L5
    landmarks (pixels), the 8 true grades/fractions, AAC-24, and every parameter drawn (JSON-able)."""

    image: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    vertebrae: tuple[VertebraLandmark, ...]
    segment_grades: dict[str, int]
    segment_fractions: dict[str, float]
    aac24: int
    plaques: tuple[dict, ...]
    chain: ChainParams
    anatomy: dict = field(default_factory=dict)

    @property
    def grades(self) -> dict[str, int]:
        return self.segment_grades


def sample_chain(rng: np.random.Generator, kind: str = "radiograph",
                 pixel_spacing_mm: float | tuple[float, float] | None = None) -> ChainParams:
    """Draw an image chain. ``radiograph``: spacing U(0.4, 0.9) mm by default (the training
    resolution; real films are 0.1–0.3 mm — pass a spacing or a range), blur FWHM U(0.2, 0.9) mm,
    10^U(5.5, 7) photons/mm², scatter-to-primary U(0.2, 1.5), unsharp masking in half the films.
    ``dxa``: spacing U(0.4, 1.0), blur U(1.0, 2.5) mm, 10^U(4.8, 5.8) photons/mm², half of them
    dual-energy (soft tissue weighted 0.1–0.3), no unsharp masking."""
    def spacing(lo, hi):
        if pixel_spacing_mm is None:
            return float(rng.uniform(lo, hi))
        if np.isscalar(pixel_spacing_mm):
            return float(pixel_spacing_mm)
        return float(rng.uniform(*pixel_spacing_mm))

    facing = "left" if rng.random() < 0.5 else "right"
    if kind == "radiograph":
        return ChainParams(kind=kind, pixel_spacing_mm=spacing(0.4, 0.9), bone_contrast=float(rng.uniform(0.75, 1.35)),
                           scatter_to_primary=float(rng.uniform(0.2, 1.5)), scatter_sigma_mm=float(rng.uniform(25, 60)),
                           blur_fwhm_mm=float(rng.uniform(0.2, 0.9)), photons_per_mm2=float(10 ** rng.uniform(5.5, 7.0)),
                           electronic_noise=float(rng.uniform(0.5, 5.0)),
                           unsharp_amount=float(rng.uniform(0.3, 1.5)) if rng.random() < 0.5 else 0.0,
                           unsharp_sigma_mm=float(rng.uniform(2, 10)), equalisation=float(rng.uniform(0.4, 0.85)),
                           equalisation_sigma_mm=float(rng.uniform(15, 40)), gamma=float(rng.uniform(0.6, 1.6)),
                           bits=int(rng.choice([8, 12, 16])), facing=facing)
    if kind == "dxa":
        dual = rng.random() < 0.5
        return ChainParams(kind=kind, pixel_spacing_mm=spacing(0.4, 1.0), bone_contrast=float(rng.uniform(0.9, 1.5)),
                           scatter_to_primary=float(rng.uniform(0.05, 0.4)), scatter_sigma_mm=float(rng.uniform(20, 50)),
                           blur_fwhm_mm=float(rng.uniform(1.0, 2.5)), photons_per_mm2=float(10 ** rng.uniform(4.8, 5.8)),
                           electronic_noise=float(rng.uniform(1.0, 8.0)),
                           soft_tissue_weight=float(rng.uniform(0.1, 0.3)) if dual else 1.0,
                           equalisation=float(rng.uniform(0.2, 0.7)), equalisation_sigma_mm=float(rng.uniform(20, 50)),
                           gamma=float(rng.uniform(0.7, 1.4)), bits=int(rng.choice([8, 16])), facing=facing)
    raise InputError(f"image chain must be 'radiograph' or 'dxa', got {kind!r}")


def sample_burden(rng: np.random.Generator) -> float:
    """Latent calcification burden: 0 in 35 % of films, else Gamma(1.1, 0.9) — many 0s and a long
    tail, so that AAC-24 spreads over 0–24 (most films low, a few above 15) [T]."""
    return 0.0 if rng.random() < 0.35 else float(rng.gamma(1.1, 0.9))


# ----------------------------------------------------------------------------- scene

def _vertebral_column(rng: np.random.Generator, fov_c: float, anomalies: bool) -> list[dict]:
    """T12–L5 bodies walked caudally along a lordotic curve: sizes, tilts, rotations per level."""
    size = rng.uniform(0.85, 1.15)
    heights = size * (np.array([24.0, 25.0, 26.5, 27.5, 28.0, 27.0]) + rng.normal(0, 1.0, 6))
    depths = size * (np.array([30.0, 32.0, 34.0, 35.0, 36.0, 36.0]) + rng.normal(0, 1.2, 6))
    widths = size * (np.array([38.0, 40.0, 43.0, 45.0, 47.0, 49.0]) + rng.normal(0, 1.5, 6))
    discs = size * (np.array([7.0, 8.5, 9.5, 10.5, 11.0]) + rng.normal(0, 1.0, 5))
    if anomalies and rng.random() < 0.25:  # a degenerate (narrowed) disc
        discs[rng.integers(0, 5)] *= rng.uniform(0.3, 0.6)
    lordosis = np.deg2rad(rng.uniform(5, 45))
    tilt = np.deg2rad(rng.uniform(-10, 10))
    angles = tilt + lordosis * np.linspace(0.5, -0.5, 6)
    scoliosis = np.deg2rad(rng.uniform(0, 8)) if anomalies and rng.random() < 0.4 else 0.0
    coronal = scoliosis * np.sin(np.linspace(0, np.pi, 6) + rng.uniform(0, np.pi)) + np.deg2rad(rng.normal(0, 1.0, 6))
    axial = np.deg2rad(rng.normal(0, 3.0 if anomalies else 1.0, 6)) + (scoliosis * 0.8 * rng.choice([-1, 1]))
    # T12's upper endplate 10–50 mm below the top edge, the column 58–70 % across the field
    r = rng.uniform(10, 50) + heights[0] / 2
    c = fov_c * rng.uniform(0.58, 0.70)
    out = []
    for k in range(6):
        rot = _rotation(angles[k], coronal[k], axial[k])
        out.append({"name": VERTEBRA_NAMES[k], "centre": np.array([0.0, r, c]), "rot": rot,
                    "half_height": heights[k] / 2, "half_depth": depths[k] / 2, "half_width": widths[k] / 2,
                    "sagittal_deg": float(np.rad2deg(angles[k])), "coronal_deg": float(np.rad2deg(coronal[k])),
                    "axial_deg": float(np.rad2deg(axial[k]))})
        if k < 5:
            # walk down the mean of this and the next tilt: half this body, the disc, half the next body
            step_angle = 0.5 * (angles[k] + angles[k + 1])
            step = heights[k] / 2 + discs[k] + heights[k + 1] / 2
            r += step * np.cos(step_angle)
            c -= step * np.sin(step_angle)
    return out


def _landmarks(column: list[dict]) -> tuple[VertebraLandmark, ...]:
    """Corners (r, c mm) of each body's mid-sagittal section: centre ∓ h·e_si ± b·e_ant, x dropped."""
    out = []
    for v in column:
        e_si, e_ant = v["rot"][1:, 1], v["rot"][1:, 2]
        ctr, h, b = v["centre"][1:], v["half_height"], v["half_depth"]
        corners = (ctr - h * e_si + b * e_ant, ctr - h * e_si - b * e_ant, ctr + h * e_si - b * e_ant,
                   ctr + h * e_si + b * e_ant)
        out.append(VertebraLandmark(name=v["name"], corners_px=tuple((float(p[0]), float(p[1])) for p in corners),
                                    centre_px=(float(ctr[0]), float(ctr[1]))))
    return tuple(out)


def _spine_solids(column: list[dict], rng: np.random.Generator, anomalies: bool, osteo: float) -> list[Solid]:
    solids: list[Solid] = []
    density = rng.uniform(0.6, 1.2)  # bone mineral (osteoporosis … dense)
    mu_t, mu_c = MU["tissue"], MU["cortical"]
    mu_trab = mu_t + density * (MU["trabecular"] - mu_t)
    cortex = rng.uniform(0.8, 1.8)
    for k, v in enumerate(column):
        rot, ctr = v["rot"], v["centre"]
        a, b, h = v["half_width"], v["half_depth"], v["half_height"]
        # cortical shell + trabecular core = outer solid at μ_cortical + inner solid at (μ_trab − μ_cortical)
        solids.append(cylinder_body(ctr, a, b, h, rot, mu_c - mu_t))
        solids.append(cylinder_body(ctr, a - cortex, b - cortex, h - cortex, rot, mu_trab - mu_c))
        e_lr, e_si, e_ant = rot[:, 0], rot[:, 1], rot[:, 2]
        post = ctr - e_ant * b
        # pedicles, transverse processes, spinous process, facets (all behind the body)
        for side in (-1, 1):
            solids.append(ellipsoid(post - e_ant * 8 + e_lr * side * a * 0.55 - e_si * h * 0.25, (5, 8, 9), rot,
                                    0.45 * (mu_c - mu_t), hard=True))
            solids.append(ellipsoid(post - e_ant * 26 + e_lr * side * a * 0.5 + e_si * h * 0.5, (6, 7, 5), rot,
                                    0.6 * (mu_c - mu_t), hard=True))
        solids.append(ellipsoid(post - e_ant * 16 - e_si * h * 0.2, (a + 25, 5, 5), rot, 0.25 * (mu_c - mu_t), hard=True))
        solids.append(ellipsoid(post - e_ant * 42 + e_si * h * 0.3, (4, 10, 16), rot, 0.5 * (mu_c - mu_t), hard=True))
        if k < len(column) - 1:  # disc between this body and the next
            nxt = column[k + 1]
            top, bottom = ctr + e_si * h, nxt["centre"] - nxt["rot"][:, 1] * nxt["half_height"]
            gap = float(np.linalg.norm(bottom - top))
            if gap > 1.0:
                solids.append(cylinder_body(0.5 * (top + bottom), a * 0.95, b * 0.97, gap / 2, rot,
                                            MU["disc"] - mu_t, hard=False))
        # anterior osteophytes: bony beaks at the anterior corners, a calcium mimic beside the aorta
        for sign in (-1, 1):
            if anomalies and rng.random() < osteo:
                corner = ctr + sign * e_si * h + e_ant * b
                size = rng.uniform(2, 6)
                solids.append(ellipsoid(corner + e_ant * size * 0.5 + sign * e_si * size * 0.4,
                                        (a * 0.6, size * 0.7, size), rot, mu_c - mu_t, hard=True))
    return solids


def _body_solids(rng: np.random.Generator, column: list[dict], fov_r: float, anomalies: bool) -> tuple[list[Solid], dict]:
    """Soft tissue, psoas, ribs, iliac wings, bowel gas and contrast."""
    solids: list[Solid] = []
    eye = np.eye(3)
    spine_c = float(np.mean([v["centre"][2] for v in column]))
    half_lr = rng.uniform(130, 200)
    back = spine_c + rng.uniform(55, 85)          # skin behind the spine
    front = spine_c - rng.uniform(120, 230)       # anterior abdominal wall (may be off the film)
    half_ap, centre_c = (back - front) / 2, (back + front) / 2
    fat = rng.uniform(5, 45)
    # body as an elliptic cylinder along r: fat at μ_fat, inner core raised to μ_tissue
    body_A = np.diag([1 / half_lr ** 2, 0.0, 1 / half_ap ** 2])
    big = (fov_r * 2, half_ap * 1.01)
    solids.append(Solid(np.array([0, fov_r / 2, centre_c]), body_A, (), MU["fat"], False, big))
    inner_A = np.diag([1 / (half_lr - fat) ** 2, 0.0, 1 / (half_ap - fat) ** 2])
    solids.append(Solid(np.array([0, fov_r / 2, centre_c]), inner_A, (), MU["tissue"] - MU["fat"], False,
                        (fov_r * 2, (half_ap - fat) * 1.01)))
    l1, l5 = column[1]["centre"], column[5]["centre"]
    for side in (-1, 1):  # psoas: long muscle beside the bodies, upper lumbar to pelvis
        mid = 0.5 * (l1 + l5) + np.array([side * rng.uniform(35, 50), 10, rng.uniform(0, 15)])
        solids.append(ellipsoid(mid, (rng.uniform(15, 25), np.linalg.norm(l5 - l1) * 0.75, rng.uniform(18, 26)),
                                eye, MU["muscle"] - MU["tissue"]))
    # ribs 11–12: curved bones crossing the upper lumbar levels obliquely (chains of short ellipsoids)
    for k in range(2):
        start = column[0]["centre"] + np.array([rng.choice([-1, 1]) * rng.uniform(40, 90), rng.uniform(-20, 25) + 25 * k,
                                                rng.uniform(10, 40)])
        slope = np.deg2rad(rng.uniform(20, 50))
        rot = _rotation(slope, 0, 0)
        for j in range(4):
            p = start + rot[:, 2] * 22 * j + rot[:, 1] * 3 * j * j
            solids.append(ellipsoid(p, (5, 5, 13), rot, MU["cortical"] - MU["tissue"], hard=True))
            solids.append(ellipsoid(p, (3.6, 3.6, 13), rot, -0.7 * (MU["cortical"] - MU["tissue"]), hard=True))
    # iliac wings: thin ellipsoidal bone shells whose crests reach about the L4–L5 level
    crest_r = column[4]["centre"][1] + rng.uniform(-10, 25)
    for side in (-1, 1):
        ctr = np.array([side * rng.uniform(70, 110), crest_r + 70, column[5]["centre"][2] + rng.uniform(-25, 10)])
        semi = np.array([rng.uniform(4, 8), 70.0, rng.uniform(50, 70)])  # a thin curved plate
        rot = _rotation(np.deg2rad(rng.uniform(-15, 15)), 0, 0)
        solids.append(ellipsoid(ctr, semi, rot, MU["cortical"] - MU["tissue"], hard=True))
        solids.append(ellipsoid(ctr, semi - 1.5, rot, MU["trabecular"] - MU["cortical"], hard=True))
    # bowel gas pockets (air replacing tissue) anywhere in the abdomen, some over the aorta
    n_gas = rng.poisson(rng.uniform(0, 9)) if anomalies else rng.poisson(2)
    for _ in range(n_gas):
        ctr = np.array([rng.uniform(-80, 80), rng.uniform(0.05, 0.95) * fov_r,
                        rng.uniform(max(front, 0) + 10, spine_c - 15)])
        semi = rng.uniform(6, 30, 3)
        solids.append(ellipsoid(ctr, semi, _rotation(rng.uniform(0, np.pi), 0, 0), -MU["tissue"] * rng.uniform(0.7, 1.0)))
    n_contrast = rng.poisson(3) if anomalies and rng.random() < 0.12 else 0
    for _ in range(n_contrast):  # oral contrast in bowel: dense blobs that mimic calcium
        ctr = np.array([rng.uniform(-60, 60), rng.uniform(0.1, 0.9) * fov_r, rng.uniform(max(front, 0) + 10, spine_c - 20)])
        solids.append(ellipsoid(ctr, rng.uniform(3, 12, 3), np.eye(3), MU["contrast"] - MU["tissue"], hard=True))
    info = {"half_lr_mm": float(half_lr), "ap_depth_mm": float(back - front), "fat_mm": float(fat),
            "n_gas": int(n_gas), "n_contrast": int(n_contrast)}
    return solids, info


def _aorta(rng: np.random.Generator, column: list[dict], fov_r: float) -> dict:
    """Aortic course: outer radius, and centre column c_a(r) = anterior spine border + gap + R + a
    smooth tortuous offset, from the top of the film to the bifurcation below L4."""
    r_ant = np.array([v["centre"][1] for v in column])
    c_ant = np.array([v["centre"][2] - v["half_depth"] * np.cos(np.deg2rad(v["sagittal_deg"])) for v in column])
    radius = rng.uniform(8.0, 14.0)
    gap = rng.uniform(1.0, 14.0)
    rows = np.linspace(0, fov_r, 256)
    border = np.interp(rows, r_ant, c_ant)
    amp, period, phase = rng.uniform(0, 10), rng.uniform(120, 300), rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(-0.12, 0.12) * (rows - r_ant[1])
    centre = border - gap - radius - amp * (1 + np.sin(2 * np.pi * rows / period + phase)) / 2 - np.abs(drift)
    bifurcation = column[4]["centre"][1] + rng.uniform(5, 25)
    return {"rows": rows, "centre_c": centre, "radius": radius, "gap": gap, "bifurcation_r": float(bifurcation),
            "tortuosity_mm": float(amp)}


def _plaques(rng: np.random.Generator, aorta: dict, column: list[dict], burden: float) -> list[dict]:
    """Calcified deposits on the anterior/posterior wall between T12/L1 − 10 mm and the bifurcation.

    Count ~ Poisson(6·burden), lengths 1.5–60 mm growing with burden, thickness 0.6–1.6 mm,
    arc ±(10–70)°, density (μ) 0.8–1.4 × μ_plaque (radiographically visible deposits: the truth is
    what a reader could see, not sub-threshold calcium); posterior wall slightly favoured (as in
    Kauppila's series, most calcification in the lower aorta at L3–L4)."""
    if burden <= 0:
        return []
    top = column[0]["centre"][1] + column[0]["half_height"]
    bottom = aorta["bifurcation_r"]
    n = max(1, rng.poisson(6 * burden))
    out = []
    for _ in range(n):
        # lower levels more often: position ~ Beta(2, 1.3) from top to bifurcation
        pos = top - 10 + (bottom - top + 10) * rng.beta(2.0, 1.3)
        length = float(np.clip(rng.gamma(1.5, 4 + 5 * burden), 1.5, 60))
        r0 = float(np.clip(pos - length / 2, top - 20, bottom - 1.5))
        r1 = float(min(r0 + length, bottom))
        out.append({"wall": "posterior" if rng.random() < 0.55 else "anterior", "r0_mm": r0, "r1_mm": r1,
                    "thickness_mm": float(rng.uniform(0.6, 1.6)), "half_arc_deg": float(rng.uniform(10, 70)),
                    "mu_scale": float(rng.uniform(0.8, 1.4)), "patchiness": float(rng.uniform(0.0, 0.6)),
                    "phase": float(rng.uniform(0, 2 * np.pi)), "period_mm": float(rng.uniform(3, 12))})
    return out


# ----------------------------------------------------------------------------- rendering

def _sub_offsets(k: int) -> np.ndarray:
    """Centres of k equal sub-intervals of a unit pixel, relative to its centre: (j + ½)/k − ½."""
    return (np.arange(k) + 0.5) / k - 0.5


def _edge_pixels(chord: np.ndarray) -> np.ndarray:
    """Pixels a solid's projected outline may cross: those whose centre ray or one of the 8
    neighbours' rays is inside while another is outside (3 × 3 morphological gradient of the
    footprint) — a ring one pixel wide on both sides, which also covers the chord's √ fall-off just
    inside the outline. An outline grazing a pixel corner between centres of one state is missed
    (a sliver, < 1/8 of a pixel)."""
    inside = chord > 0
    if inside.all() or not inside.any():
        return np.zeros_like(inside)
    square = np.ones((3, 3), bool)
    # border_value=1: the film's edge is not an outline (the body runs off the film)
    return ndimage.binary_dilation(inside, square) & ~ndimage.binary_erosion(inside, square, border_value=1)


def _render_solids(P_soft: np.ndarray, P_hard: np.ndarray, solids: list[Solid], ps: float,
                   supersampling: int = 1) -> None:
    """Add each solid's μ·chord to the soft or hard line-integral image (1/mm · mm, per pixel).

    ``supersampling`` k > 1: each pixel an outline crosses (:func:`_edge_pixels`) gets the mean of
    k × k sub-pixel rays over its area instead of the ray through its centre; elsewhere the chord is
    smooth across the pixel and the centre ray is its area mean to ≈ 0.5 % (round 14, issue 7)."""
    n_r, n_c = P_soft.shape
    sub = _sub_offsets(supersampling) * ps
    for s in solids:
        r0 = max(0, int(np.floor((s.centre[1] - s.half_extent[0]) / ps)))
        r1 = min(n_r, int(np.ceil((s.centre[1] + s.half_extent[0]) / ps)) + 1)
        c0 = max(0, int(np.floor((s.centre[2] - s.half_extent[1]) / ps)))
        c1 = min(n_c, int(np.ceil((s.centre[2] + s.half_extent[1]) / ps)) + 1)
        if r1 <= r0 or c1 <= c0:
            continue
        dr = (np.arange(r0, r1) * ps - s.centre[1])[:, None]
        dc = (np.arange(c0, c1) * ps - s.centre[2])[None, :]
        chord = chord_lengths(s, dr, dc)
        if supersampling > 1:
            edge = _edge_pixels(chord)
            if edge.any():
                er, ec = np.nonzero(edge)
                # one row of k·k sub-rays per edge pixel, so the whole ring is one vectorised call
                sr = (dr[er, 0][:, None] + np.repeat(sub, supersampling)[None, :])
                sc = (dc[0, ec][:, None] + np.tile(sub, supersampling)[None, :])
                chord[er, ec] = chord_lengths(s, sr, sc).mean(axis=1)
        target = P_hard if s.hard else P_soft
        target[r0:r1, c0:c1] += s.mu * chord


def _render_plaques(P_hard: np.ndarray, plaques: list[dict], aorta: dict, ps: float, supersampling: int = 1) -> None:
    """Add each plaque's (μ_plaque·scale − μ_tissue)·chord·texture to the hard line-integral image.

    ``supersampling`` k > 1: every pixel of the plaque's window is the mean of k × k sub-pixel rays
    (a 0.6–1.6 mm shell is all edge at 0.4–0.9 mm pixels), and the plaque's ends r0/r1 cover their
    end pixels fractionally; k = 1 samples pixel centres in rows ⌈r0⌉…⌊r1⌋ (before round 14)."""
    n_r, n_c = P_hard.shape
    R = aorta["radius"]
    k = int(supersampling)
    sub = _sub_offsets(k)
    for p in plaques:
        if k > 1:  # every pixel whose area overlaps [r0, r1]
            a = max(0, int(np.ceil(p["r0_mm"] / ps - 0.5)))
            b = min(n_r, int(np.floor(p["r1_mm"] / ps + 0.5)) + 1)
        else:
            a, b = max(0, int(np.ceil(p["r0_mm"] / ps))), min(n_r, int(np.floor(p["r1_mm"] / ps)) + 1)
        if b <= a:
            continue
        rows_mm = ((np.arange(a, b)[:, None] + sub[None, :]) * ps).ravel()  # (pixel row, sub-row) flattened
        centre = np.interp(rows_mm, aorta["rows"], aorta["centre_c"])
        lo = int(max(0, np.floor((centre.min() - R - 1) / ps)))
        hi = int(min(n_c, np.ceil((centre.max() + R + 1) / ps) + 1))
        if hi <= lo:
            continue
        cols_mm = ((np.arange(lo, hi)[:, None] + sub[None, :]) * ps).ravel()
        sign = -1.0 if p["wall"] == "anterior" else 1.0  # anterior wall at smaller c
        u = sign * (cols_mm[None, :] - centre[:, None])
        chord = shell_sector_chord(u, R, p["thickness_mm"], np.deg2rad(p["half_arc_deg"]))
        texture = 1.0 - p["patchiness"] * 0.5 * (1 + np.sin(2 * np.pi * rows_mm / p["period_mm"] + p["phase"]))
        layer = chord * texture[:, None]
        if k > 1:
            layer = layer * ((rows_mm >= p["r0_mm"]) & (rows_mm <= p["r1_mm"]))[:, None]
            layer = layer.reshape(b - a, k, hi - lo, k).mean(axis=(1, 3))
        P_hard[a:b, lo:hi] += (MU["plaque"] * p["mu_scale"] - MU["tissue"]) * layer


def _plaque_intervals(plaques: list[dict], aorta: dict, geometry) -> dict:
    """Each plaque's footprint (rows r0…r1, columns from the outer wall to R·cos α inwards) projected
    on the spinal axis → per-wall (starts, ends) in mm (B.2 step 4)."""
    from vascalc.radiograph.kauppila import to_axis_coords

    R = aorta["radius"]
    out = {w: ([], []) for w in WALLS}
    for p in plaques:
        rows = np.linspace(p["r0_mm"], p["r1_mm"], 24)
        centre = np.interp(rows, aorta["rows"], aorta["centre_c"])
        sign = -1.0 if p["wall"] == "anterior" else 1.0
        depth = R * np.cos(np.deg2rad(min(p["half_arc_deg"], 85)))
        cols = np.concatenate([centre + sign * R, centre + sign * depth])
        t, _ = to_axis_coords(geometry, np.concatenate([rows, rows]), cols)
        out[p["wall"]][0].append(float(t.min()))
        out[p["wall"]][1].append(float(t.max()))
    return {w: (np.asarray(s), np.asarray(e)) for w, (s, e) in out.items()}


def _smooth_large(x: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of a wide kernel computed on a decimated grid (the result is smooth anyway)."""
    factor = int(max(1, sigma_px // 4))
    if factor == 1:
        return ndimage.gaussian_filter(x, sigma_px, mode="nearest", truncate=2.5)
    small = ndimage.zoom(x, 1.0 / factor, order=1, mode="nearest", grid_mode=True)
    small = ndimage.gaussian_filter(small, sigma_px / factor, mode="nearest", truncate=2.5)
    return ndimage.zoom(small, np.divide(x.shape, small.shape), order=1, mode="nearest", grid_mode=True)


def _image_chain(P_soft: np.ndarray, P_hard: np.ndarray, body: np.ndarray, chain: ChainParams,
                 rng: np.random.Generator) -> np.ndarray:
    ps = chain.pixel_spacing_mm
    P = chain.soft_tissue_weight * P_soft + chain.bone_contrast * P_hard
    n0 = chain.photons_per_mm2 * ps * ps
    primary = n0 * np.exp(-P)
    # scatter: a smooth fraction of the primary (SPR relative to the primary behind the body) [T]
    scatter = _smooth_large(primary, chain.scatter_sigma_mm / ps)
    level = np.median(primary[body]) if body.any() else primary.mean()
    signal = primary + chain.scatter_to_primary * scatter * (level / max(np.median(scatter[body]) if body.any() else
                                                                          scatter.mean(), 1e-12))
    sigma = chain.blur_fwhm_mm / 2.3548 / ps
    if sigma > 0.3:
        signal = ndimage.gaussian_filter(signal, sigma, mode="nearest", truncate=3.0)
    noisy = signal + np.sqrt(signal) * rng.standard_normal(signal.shape) + chain.electronic_noise * rng.standard_normal(signal.shape)
    log_image = -np.log(np.maximum(noisy, 0.5) / n0)
    if chain.equalisation > 0:
        # wide-latitude processing: damp the soft-tissue thickness gradient, keep the detail (bone, calcium)
        log_image = log_image - chain.equalisation * _smooth_large(log_image, chain.equalisation_sigma_mm / ps)
    if chain.unsharp_amount > 0:
        log_image = log_image + chain.unsharp_amount * (log_image - _smooth_large(log_image, chain.unsharp_sigma_mm / ps))
    values = log_image[body] if body.any() else log_image.ravel()
    lo, hi = np.percentile(values, [0.5, 99.7])
    image = np.clip((log_image - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** chain.gamma
    levels = 2 ** chain.bits - 1
    return (np.round(image * levels) / levels).astype(np.float32)


def make_lateral_spine(seed: int, *, chain: ChainParams | str = "radiograph",
                       pixel_spacing_mm: float | tuple[float, float] | None = None, burden: float | None = None,
                       anomalies: bool = True, field_of_view_mm: tuple[float, float] | None = None,
                       detector_supersampling: int | None = None) -> LateralSpine:
    """One lateral lumbar film drawn from ``seed`` (deterministic), with exact Kauppila truth.

    ``chain``: a :class:`ChainParams` or ``"radiograph"`` / ``"dxa"`` (drawn by :func:`sample_chain`;
    ``pixel_spacing_mm`` a value or a (lo, hi) range overrides the spacing); ``burden``: latent
    calcification burden (default :func:`sample_burden`); ``anomalies``: scoliosis/rotation,
    osteophytes, contrast and more gas. Field of view (rows, cols) mm:
    default T12 − (10–50 mm) … L5 + (20–70 mm) × U(240, 320). ``detector_supersampling``: overrides
    the chain's k (sub-pixels per side of an area-integrating pixel; 1 = point-sampled, as
    before round 14); it changes no random draw, so k = 1 and the default give the same film
    rendered two ways. The value used is recorded in ``film.chain``.
    """
    from vascalc.radiograph.kauppila import score_intervals, spine_geometry

    rng = np.random.default_rng([int(seed), 2024])
    chain_params = chain if isinstance(chain, ChainParams) else sample_chain(rng, chain, pixel_spacing_mm)
    if detector_supersampling is not None:
        chain_params = replace(chain_params, detector_supersampling=int(detector_supersampling))
    ps = chain_params.pixel_spacing_mm
    if not 0.05 <= ps <= 5:
        raise InputError(f"pixel spacing must be 0.05–5 mm, got {ps}")
    fov_c = float(field_of_view_mm[1]) if field_of_view_mm else float(rng.uniform(240, 320))
    column = _vertebral_column(rng, fov_c, anomalies)
    # the film reaches 20–70 mm below L5's centre (sacrum / pelvis) unless a field is imposed
    fov_r = float(field_of_view_mm[0]) if field_of_view_mm else float(column[-1]["centre"][1] + rng.uniform(20, 70))
    n_r, n_c = int(round(fov_r / ps)), int(round(fov_c / ps))
    aorta = _aorta(rng, column, fov_r)
    b = sample_burden(rng) if burden is None else float(burden)
    plaques = _plaques(rng, aorta, column, b)
    osteo = float(rng.uniform(0, 0.5))
    solids = _spine_solids(column, rng, anomalies, osteo)
    body_solids, body_info = _body_solids(rng, column, fov_r, anomalies)
    P_soft = np.zeros((n_r, n_c))
    P_hard = np.zeros((n_r, n_c))
    k = int(chain_params.detector_supersampling)
    if not 1 <= k <= 16:
        raise InputError(f"detector_supersampling must be an integer 1–16 (sub-pixels per side), got {k}")
    _render_solids(P_soft, P_hard, body_solids + solids, ps, k)
    _render_plaques(P_hard, plaques, aorta, ps, k)
    body = P_soft > 1.0
    image = _image_chain(P_soft, P_hard, body, chain_params, rng)
    # truth in mm frame (spacing 1 ⇒ coordinates are mm), then landmarks in pixels
    landmarks_mm = _landmarks(column)
    geometry = spine_geometry(landmarks_mm, (1.0, 1.0))
    result = score_intervals(geometry, _plaque_intervals(plaques, aorta, geometry))
    scale = 1.0 / ps
    flip = chain_params.facing == "right"

    def to_px(p):
        r, c = p[0] * scale, p[1] * scale
        return (round(r, 3), round((n_c - 1) - c if flip else c, 3))

    landmarks = tuple(VertebraLandmark(name=v.name, corners_px=tuple(to_px(p) for p in v.corners_px),
                                       centre_px=to_px(v.centre_px)) for v in landmarks_mm)
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
    anatomy = {"burden": b, "n_plaques": len(plaques), "aorta_radius_mm": aorta["radius"], "aorta_gap_mm": aorta["gap"],
               "tortuosity_mm": aorta["tortuosity_mm"], "osteophyte_rate": osteo,
               "sagittal_deg": [v["sagittal_deg"] for v in column], "coronal_deg": [v["coronal_deg"] for v in column],
               "axial_deg": [v["axial_deg"] for v in column], "field_of_view_mm": [fov_r, fov_c], **body_info}
    return LateralSpine(image=image, pixel_spacing_mm=(ps, ps), vertebrae=landmarks,
                        segment_grades=dict(result.grades), segment_fractions=dict(result.fractions),
                        aac24=int(result.aac24), plaques=tuple(plaques), chain=chain_params, anatomy=anatomy)


def chain_dict(chain: ChainParams) -> dict:
    return asdict(chain)


__all__ = ["ChainParams", "DETECTOR_SUPERSAMPLING", "LateralSpine", "MU", "Solid", "chain_dict", "chord_lengths",
           "cylinder_body", "ellipsoid", "make_lateral_spine", "sample_burden", "sample_chain", "shell_sector_chord"]
