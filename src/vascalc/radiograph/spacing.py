"""Pixel spacing of a lateral spine film whose spacing is unknown, estimated from the vertebral pitch.

PNG / JPEG / TIFF films (and DICOM without PixelSpacing) carry no spacing, and their field of view
varies too much (lateral lumbar films and DXA VFA images ≈ 200–480 mm tall) for one assumed field to
work: a localiser run at the wrong scale finds overlapping or skipped bodies. Instead:

1. run a localiser at candidate spacings, the film's rows spanning :data:`FIELD_HEIGHTS_MM`
   (200 … 480 mm, geometric steps of ≈ 12 %);
2. at each candidate keep the learned localiser's landmarks only if they pass the geometric check
   (:func:`vascalc.learn.aac_localiser.check_landmarks`: heights, depths, gaps, order, no overlap;
   the model-free localiser's disc chain is regular by construction and is kept as found);
3. each kept set implies a spacing: Σ nominal centre-to-centre gaps (mm, :data:`NOMINAL_GAP_MM`)
   over Σ measured gaps (px) between consecutive located bodies. The candidate whose implied spacing
   is closest to its own assumed one (|log ratio| smallest: the localiser found bodies of the size it
   expected) wins;
4. the localiser runs once more at the implied spacing and, if its landmarks still pass, their
   pitch gives the estimate; no candidate at all → :class:`~vascalc.errors.GeometryError`.

The estimate can be no better than the anatomy is regular: adult lumbar bodies vary about ±10–15 %
in size between people (the synthetic generator draws a size factor U(0.85, 1.15)), so mm quantities
from an estimated spacing carry that uncertainty and the results say so. Ratios (Kauppila grades,
covered fractions) do not depend on it. Measured accuracy: docs/radiograph.md, "Unknown pixel spacing".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vascalc.errors import GeometryError, VascalcError
from vascalc.phantoms.types import VertebraLandmark

#: Nominal centre-to-centre distance (mm) between consecutive bodies: half of each body's height plus
#: the disc. Mean adult values of the synthetic generator (size factor 1; vascalc.phantoms.lateral_spine),
#: within ≈ 5 % of published adult lumbar body (26–28 mm) and disc (8–11 mm) heights [T].
NOMINAL_GAP_MM = {("T12", "L1"): 31.5, ("L1", "L2"): 34.25, ("L2", "L3"): 36.5, ("L3", "L4"): 38.25,
                  ("L4", "L5"): 38.5}
#: Candidate field heights (mm spanned by the film's rows): 200 … 480 mm, 9 geometric steps (≈ 11.6 %).
FIELD_HEIGHTS_MM = tuple(float(v) for v in np.round(np.geomspace(200.0, 480.0, 9), 1))
#: A winning candidate's implied spacing must lie within this factor of its assumed one.
MAX_SELF_MISMATCH = 1.25
#: Relative uncertainty of the estimate quoted in the warning: the anatomical size spread (± 15 %).
ANATOMICAL_SPREAD = 0.15
SOURCE = "estimated from the vertebral pitch"


@dataclass(frozen=True)
class SpacingEstimate:
    """An estimated isotropic pixel spacing (square pixels assumed).

    ``pixel_spacing_mm`` (row, col) mm; ``pitch_px``: mean measured centre-to-centre gap of the bodies
    used (film pixels); ``nominal_pitch_mm``: the matching mean nominal gap; ``levels``: the bodies
    whose gaps were measured; ``field_height_mm``: rows × spacing; ``localiser``: which localiser
    found the bodies; ``candidates_passed``: candidate field heights whose landmarks passed the check
    (every candidate that located bodies when the check is off)."""

    pixel_spacing_mm: tuple[float, float]
    pitch_px: float
    nominal_pitch_mm: float
    levels: tuple[str, ...]
    field_height_mm: float
    localiser: str
    candidates_passed: tuple[float, ...]
    source: str = SOURCE

    def to_dict(self) -> dict:
        return {"source": self.source, "pixel_spacing_mm": list(self.pixel_spacing_mm),
                "pitch_px": self.pitch_px, "nominal_pitch_mm": self.nominal_pitch_mm, "levels": list(self.levels),
                "field_height_mm": self.field_height_mm, "localiser": self.localiser,
                "candidate_field_heights_passed_mm": list(self.candidates_passed),
                "relative_uncertainty": ANATOMICAL_SPREAD}

    def warning(self) -> str:
        """The one warning of a result scored with this estimate."""
        s = self.pixel_spacing_mm[0]
        return (f"pixel spacing unknown: estimated {s:.3g} mm/pixel from the vertebral pitch "
                f"({self.pitch_px:.1f} px between body centres ≙ {self.nominal_pitch_mm:.1f} mm, a typical adult "
                f"{'–'.join((self.levels[0], self.levels[-1]))}); every mm quantity rests on this estimate "
                f"(± {ANATOMICAL_SPREAD:.0%} with the patient's size); grades are ratios and do not")


def pitch_from_landmarks(vertebrae: Sequence[VertebraLandmark], levels: Sequence[str] = ("L1", "L2", "L3", "L4", "L5")
                         ) -> tuple[float, float, tuple[str, ...]]:
    """(mean measured gap px, mean nominal gap mm, levels used) over consecutive located ``levels``.

    Raises :class:`GeometryError` when fewer than three consecutive bodies are located."""
    by = {v.name: np.asarray(v.centre_px, float) for v in vertebrae}
    run: list[str] = []
    for name in levels:  # the longest run of consecutive located levels
        if name in by:
            run.append(name)
        elif len(run) < 3:
            run = []
        else:
            break
    if len(run) < 3:
        raise GeometryError("fewer than three consecutive vertebral bodies located: cannot measure the vertebral pitch")
    centres = np.stack([by[n] for n in run])
    measured = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    nominal = np.array([NOMINAL_GAP_MM[(a, b)] for a, b in zip(run[:-1], run[1:])])
    return float(measured.mean()), float(nominal.mean()), tuple(run)


def estimate_pixel_spacing(shape: tuple[int, int], locate: Callable[[tuple[float, float]], Sequence[VertebraLandmark]],
                           *, localiser: str, levels: Sequence[str] = ("L1", "L2", "L3", "L4", "L5"),
                           field_heights_mm: Sequence[float] = FIELD_HEIGHTS_MM, check: bool = True) -> SpacingEstimate:
    """Estimate the spacing of a film of ``shape`` (rows, cols) with ``locate(spacing) -> landmarks``.

    ``locate`` may raise :class:`VascalcError` (nothing found at that scale). ``levels``: the bodies
    whose gaps measure the pitch (the learned localiser's L1–L4; the model-free one's L1–L5 run).
    ``check``: landmarks must pass :func:`~vascalc.learn.aac_localiser.check_landmarks` (off for the
    model-free localiser, whose disc chain is regular by construction, ± 6 % period, and whose body
    depths on coarse films fail the depth test while its pitch is right).
    Raises :class:`GeometryError` when no candidate gives plausible, self-consistent landmarks.
    """
    from vascalc.learn.aac_localiser import check_landmarks  # numpy only; no torch needed

    def plausible(spacing: tuple[float, float]):
        try:
            found = tuple(locate(spacing))
            measured, nominal, used = pitch_from_landmarks(found, levels)
        except VascalcError:
            return None
        if check and not check_landmarks(found, spacing, levels=used).ok:
            return None
        return nominal / measured, measured, nominal, used

    rows = int(shape[0])
    best = None
    passed = []
    for height in field_heights_mm:
        s = height / rows
        got = plausible((s, s))
        if got is None:
            continue
        passed.append(float(height))
        mismatch = abs(np.log(got[0] / s))
        if mismatch <= np.log(MAX_SELF_MISMATCH) and (best is None or mismatch < best[0]):
            best = (mismatch, got)
    if best is None:
        raise GeometryError("pixel spacing unknown and it could not be estimated: no vertebral column with plausible, "
                            f"evenly spaced bodies was found for any field height {field_heights_mm[0]:.0f}–"
                            f"{field_heights_mm[-1]:.0f} mm; give the pixel spacing (--pixel-spacing)")
    implied, measured, nominal, used = best[1]
    # one more pass at the implied scale: the localiser is most accurate at the film's true scale
    again = plausible((implied, implied))
    if again is not None and abs(np.log(again[0] / implied)) <= np.log(MAX_SELF_MISMATCH):
        implied, measured, nominal, used = again
    s = round(float(implied), 5)
    return SpacingEstimate(pixel_spacing_mm=(s, s), pitch_px=round(measured, 2), nominal_pitch_mm=round(nominal, 2),
                           levels=used, field_height_mm=round(s * rows, 1), localiser=localiser,
                           candidates_passed=tuple(passed))


def with_estimated_spacing(radiograph, estimate: SpacingEstimate):
    """``radiograph`` carrying ``estimate`` as its spacing, its source saying so (``spacing_source``)
    and the loader's "spacing unknown … lengths in pixels" note replaced by the estimate."""
    from dataclasses import replace

    notes = tuple(n for n in radiograph.notes if not n.startswith("pixel spacing unknown"))
    note = (f"pixel spacing {estimate.pixel_spacing_mm[0]:.4g} mm {SOURCE} "
            f"(± {ANATOMICAL_SPREAD:.0%}): lengths are reported in mm on this estimate")
    return replace(radiograph, pixel_spacing_mm=estimate.pixel_spacing_mm,
                   source={**radiograph.source, "spacing_source": SOURCE}, notes=notes + (note,))


def estimate_spacing_model_free(radiograph, *, facing: str = "auto", lowest_level: str = "L5") -> SpacingEstimate:
    """:func:`estimate_pixel_spacing` with the model-free localiser (:mod:`vascalc.radiograph.locate`)."""
    from dataclasses import replace

    from vascalc.radiograph.locate import locate_vertebrae

    def locate(spacing):
        return locate_vertebrae(replace(radiograph, pixel_spacing_mm=spacing), facing=facing,
                                lowest_level=lowest_level).vertebrae

    return estimate_pixel_spacing(radiograph.shape, locate, localiser="model-free:profile_v1", check=False)


def validate_spacing_estimate(n: int = 40, *, chain: str = "radiograph", pixel_spacing_mm=None,
                              seed_offset: int = 4_100_000, model_dir=None, score: bool = True) -> dict:
    """Estimate the spacing of ``n`` synthetic validation films (seeds ``seed_offset`` …) with the
    learned localiser of ``model_dir`` (default bundled) and, with ``score``, score each film with the
    true spacing and with none (estimated) by the learned pipeline.

    Returns the fraction estimated / scored, the relative spacing error |estimate / truth − 1|
    (median, 95th percentile, max), its two parts — ``pitch_ratio`` = measured / true L1–L4 pitch in
    pixels (the localiser) and ``anatomy_ratio`` = true pitch / nominal pitch in mm (the patient's
    size) — as mean and SD, and (``score``) the AAC-24 mean absolute error against the truth, known vs
    unknown spacing, over the films scored both ways. Never run it on the held-out seeds 10⁶ … 2·10⁶.
    """
    from pathlib import Path

    from vascalc.errors import InputError
    from vascalc.imaging.radiograph import radiograph_from_array
    from vascalc.learn.aac_localiser import load_localiser, locate_learned
    from vascalc.phantoms.lateral_spine import make_lateral_spine
    from vascalc.radiograph.learned import BUNDLED_MODEL, score_radiograph_learned

    if seed_offset < 2_000_000 and seed_offset + n > 1_000_000:
        raise InputError("seeds 1 000 000 … 1 999 999 are held out; validate on others (e.g. 4 100 000 …)")
    folder = Path(model_dir) if model_dir is not None else BUNDLED_MODEL
    model = load_localiser(folder)
    levels = ("L1", "L2", "L3", "L4")
    rows = []
    for seed in range(seed_offset, seed_offset + n):
        film = make_lateral_spine(seed, chain=chain, pixel_spacing_mm=pixel_spacing_mm)
        ps = film.pixel_spacing_mm[0]
        true_px, nominal_mm, _ = pitch_from_landmarks(film.vertebrae, levels)
        row = {"seed": seed, "truth_aac24": film.aac24, "pixel_spacing_mm": ps,
               "anatomy_ratio": true_px * ps / nominal_mm}
        try:
            est = estimate_pixel_spacing(film.image.shape,
                                         lambda sp: locate_learned(model, film.image, sp, refine=False),
                                         localiser="learned", levels=levels)
            row["estimate_mm"] = est.pixel_spacing_mm[0]
            row["pitch_ratio"] = est.pitch_px / true_px
        except VascalcError:
            row["estimate_mm"] = None
        for key, spacing in (("known", film.pixel_spacing_mm), ("unknown", None)) if score else ():
            try:
                row[key] = score_radiograph_learned(radiograph_from_array(film.image, spacing),
                                                    model_dir=model_dir).kauppila.aac24
            except VascalcError:
                row[key] = None
        rows.append(row)
    done = [r for r in rows if r["estimate_mm"] is not None]
    err = np.array([abs(r["estimate_mm"] / r["pixel_spacing_mm"] - 1) for r in done])
    pitch = np.array([r["pitch_ratio"] for r in done])
    anatomy = np.array([r["anatomy_ratio"] for r in rows])
    out = {"chain": chain, "pixel_spacing_mm": pixel_spacing_mm, "n": n, "seeds": [seed_offset, seed_offset + n - 1],
           "fraction_estimated": round(len(done) / n, 3),
           "spacing_error_median": round(float(np.median(err)), 4) if err.size else None,
           "spacing_error_p95": round(float(np.percentile(err, 95)), 4) if err.size else None,
           "spacing_error_max": round(float(err.max()), 4) if err.size else None,
           "pitch_ratio_mean_sd": [round(float(pitch.mean()), 4), round(float(pitch.std()), 4)] if pitch.size else None,
           "anatomy_ratio_mean_sd": [round(float(anatomy.mean()), 4), round(float(anatomy.std()), 4)]}
    if score:
        both = [r for r in rows if r["known"] is not None and r["unknown"] is not None]

        def mae(key):
            return round(float(np.mean([abs(r[key] - r["truth_aac24"]) for r in both])), 3) if both else None

        out.update({"fraction_scored_known": round(sum(r["known"] is not None for r in rows) / n, 3),
                    "fraction_scored_unknown": round(sum(r["unknown"] is not None for r in rows) / n, 3),
                    "aac24_mae_known": mae("known"), "aac24_mae_unknown": mae("unknown"), "n_scored_both": len(both)})
    return {**out, "films": rows}


__all__ = ["ANATOMICAL_SPREAD", "FIELD_HEIGHTS_MM", "NOMINAL_GAP_MM", "SOURCE", "SpacingEstimate",
           "estimate_pixel_spacing", "estimate_spacing_model_free", "pitch_from_landmarks", "validate_spacing_estimate",
           "with_estimated_spacing"]
