"""Imaging physics of the digital phantoms: HA density → HU, point-spread function, slice profile, noise.

All functions are pure and work on numpy arrays in (z, y, x) order with spacing in mm.

The chain that turns a true object into a CT image (docs/phantoms.md, "Physics"):

1. *Partial volume*: every small object (plaque, insert) is sampled at ``supersample``³ points per
   voxel inside its own bounding box only, giving the exact covered fraction per voxel.
2. *Slice-sensitivity profile* (SSP) along z: a box of the reconstructed slice thickness convolved
   with a Gaussian, sampled at the slice centres (the increment may differ from the thickness).
3. *In-plane point-spread function* (PSF): a Gaussian of given FWHM in mm.
4. *Noise*: Gaussian of given SD in HU, optionally correlated by a small in-plane blur, drawn from
   ``numpy.random.Generator`` seeded explicitly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

#: FWHM of a Gaussian divided by its standard deviation, 2·sqrt(2·ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

#: Default HU rise per mg/cm³ of calcium hydroxyapatite over water at 120 kVp. Phantom studies
#: give roughly 0.9–1.3 HU per mg HA/cm³ at 120 kVp depending on scanner and kernel (the 130-HU
#: Agatston threshold is often quoted as ≈100 mg HA/cm³, SCORING.md A.2.1); 1.0 is a round
#: toolkit convention [T], so that the true calibration factor is c_HA = 1 mg·cm⁻³·HU⁻¹.
HU_PER_MG_HA_CM3 = 1.0


def ha_density_to_hu(density_mg_cm3: np.ndarray | float, *, hu_per_mg_cm3: float = HU_PER_MG_HA_CM3,
                     hu_matrix: float = 0.0) -> np.ndarray | float:
    """CT number (HU) of calcium hydroxyapatite at ``density_mg_cm3`` in a water-equivalent matrix.

    Linear model ``HU = hu_matrix + hu_per_mg_cm3 · ρ`` (ρ in mg HA/cm³), the model behind phantom
    calibration ``c_HA = ρ / (HU_HA − HU_water)`` (SCORING.md A.6). The true mass of a plaque is then
    ``ρ · V`` (mg = mg/cm³ · mm³ / 1000), whatever HU the scanner model assigns.
    """
    hu = hu_matrix + hu_per_mg_cm3 * np.asarray(density_mg_cm3, dtype=float)
    return float(hu) if hu.ndim == 0 else hu


def fwhm_to_sigma(fwhm_mm: float) -> float:
    """Standard deviation (mm) of a Gaussian with full width at half maximum ``fwhm_mm``."""
    return float(fwhm_mm) / FWHM_PER_SIGMA


def ssp_weights(z_centres_mm: np.ndarray, z_fine_mm: np.ndarray, step_fine_mm: float, *,
                thickness_mm: float, blur_fwhm_mm: float) -> np.ndarray:
    """Slice-sensitivity weights ``W[c, f]`` of fine z samples ``f`` for slices centred at ``c``.

    The SSP is a box of width ``thickness_mm`` convolved with a Gaussian of FWHM ``blur_fwhm_mm``,
    normalised to unit integral; ``W[c, f]`` is its integral over the fine sample's interval
    ``[z_f − step/2, z_f + step/2]`` (exact, via the error function), so that
    ``image[c] = Σ_f W[c, f] · object[f]`` and, for thickness ≥ increment, ``Σ_c W[c, f] · dz ≈ step``
    (the z integral of the object is kept).
    """
    u = np.asarray(z_fine_mm, dtype=float)[None, :] - np.asarray(z_centres_mm, dtype=float)[:, None]
    half_t = 0.5 * float(thickness_mm)
    half_s = 0.5 * float(step_fine_mm)
    sigma = fwhm_to_sigma(blur_fwhm_mm)
    if sigma <= 0:
        # Pure box: overlap length of the sample interval with the box, over the box width.
        overlap = np.clip(np.minimum(u + half_s, half_t) - np.maximum(u - half_s, -half_t), 0.0, None)
        return overlap / float(thickness_mm)

    def box_gauss_cdf(v: np.ndarray) -> np.ndarray:
        # Antiderivative of Φ((v+T/2)/σ) − Φ((v−T/2)/σ) (box ⊗ Gaussian, unnormalised):
        # ∫Φ(x/σ)dx = x·Φ(x/σ) + σ·φ(x/σ).
        def integ_phi(x: np.ndarray) -> np.ndarray:
            return x * ndtr(x / sigma) + sigma * np.exp(-0.5 * (x / sigma) ** 2) / np.sqrt(2 * np.pi)
        return integ_phi(v + half_t) - integ_phi(v - half_t)

    return (box_gauss_cdf(u + half_s) - box_gauss_cdf(u - half_s)) / float(thickness_mm)


def ssp_sigma_mm(thickness_mm: float, blur_fwhm_mm: float) -> float:
    """Standard deviation (mm) of the slice-sensitivity profile (box ⊗ Gaussian)."""
    return float(np.sqrt(thickness_mm ** 2 / 12.0 + fwhm_to_sigma(blur_fwhm_mm) ** 2))


def apply_psf(hu: np.ndarray, spacing_mm: tuple[float, float, float], fwhm_mm: float) -> np.ndarray:
    """Blur every axial slice with an isotropic in-plane Gaussian PSF of ``fwhm_mm`` (float32 out).

    Uses ``scipy.ndimage.gaussian_filter`` (truncated at 4 σ, ``mode='nearest'``): the sum of
    ``HU − background`` over a region that contains the blurred object is kept.
    """
    out = np.asarray(hu, dtype=np.float32)
    if fwhm_mm <= 0:
        return out.copy()
    sigma = fwhm_to_sigma(fwhm_mm)
    return ndimage.gaussian_filter(out, sigma=(0.0, sigma / spacing_mm[1], sigma / spacing_mm[2]),
                                   mode="nearest", truncate=4.0)


def blur_z(hu: np.ndarray, dz_mm: float, sigma_mm: float) -> np.ndarray:
    """Gaussian blur along z only (sigma in mm); used to give large anatomy the slice profile's width."""
    if sigma_mm / dz_mm < 0.05:
        return hu
    return ndimage.gaussian_filter1d(hu, sigma=sigma_mm / dz_mm, axis=0, mode="nearest", truncate=3.0)


def add_noise(hu: np.ndarray, sd_hu: float, rng: np.random.Generator, *,
              spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0), corr_fwhm_mm: float = 0.0) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``sd_hu`` (in place on a float32 array).

    With ``corr_fwhm_mm > 0`` white noise is first blurred in-plane by a Gaussian of that FWHM and
    rescaled so that its SD is still ``sd_hu`` (the rescale factor of a blurred unit white field is
    ``1/sqrt(Σ kernel²)``, computed from the separable kernels), which mimics the grainy, correlated
    look of filtered back-projection noise.
    """
    if sd_hu <= 0:
        return hu
    noise = rng.standard_normal(size=hu.shape, dtype=np.float32)
    if corr_fwhm_mm > 0:
        sigma = fwhm_to_sigma(corr_fwhm_mm)
        sig_yx = (sigma / spacing_mm[1], sigma / spacing_mm[2])
        noise = ndimage.gaussian_filter(noise, sigma=(0.0, *sig_yx), mode="wrap", truncate=4.0)
        gain = 1.0
        for s in sig_yx:
            radius = int(4.0 * s + 0.5)
            k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / s) ** 2)
            k /= k.sum()
            gain *= float(np.sum(k ** 2))
        noise *= np.float32(1.0 / np.sqrt(gain))
    noise *= np.float32(sd_hu)
    hu += noise
    return hu
