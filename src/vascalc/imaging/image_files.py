"""Single-file 3-D images: NIfTI (nibabel) and NRRD / MetaImage (SimpleITK), read and write.

Readers return the array in ``(z, y, x)`` order with its LPS :class:`Grid`. NIfTI goes through
nibabel rather than SimpleITK because SimpleITK cannot read NIfTI-2 and both libraries silently
turn a zero voxel size into 1 mm; nibabel lets us see the raw header and refuse it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from vascalc.errors import GeometryError, InputError, OutputError
from vascalc.imaging.geometry import grid_from_affine_lps, grid_from_sitk
from vascalc.imaging.grid import Grid

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError)


def image_suffix(path: Path) -> str | None:
    """The recognised image suffix of ``path`` (``'.nii.gz'``, ``'.nrrd'`` …), or ``None``."""
    name = path.name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def image_stem(path: Path) -> str:
    """File name without its image suffix: ``aorta.nii.gz`` → ``aorta``."""
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def read_image(path: Path) -> tuple[np.ndarray, Grid, tuple[str, ...]]:
    """Read a 3-D NIfTI / NRRD / MetaImage file: ``(array_zyx, grid, notes)``.

    Raises :class:`InputError` for unreadable, truncated or non-3-D files and
    :class:`GeometryError` for a zero voxel size or a sheared grid.
    """
    suffix = image_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return read_nifti(path)
    if suffix in ITK_SUFFIXES:
        return read_itk(path)
    raise InputError(f"{path.name}: not a supported image file (expected one of {', '.join(IMAGE_SUFFIXES)})")


def read_nifti(path: Path) -> tuple[np.ndarray, Grid, tuple[str, ...]]:
    """NIfTI-1 or NIfTI-2 with nibabel; RAS affine (sform, else qform) converted to LPS.

    Scaling (``scl_slope``/``scl_inter``) is applied by nibabel. Trailing singleton dimensions
    (x, y, z, 1) are dropped; true 4-D data are refused.
    """
    try:
        image = nib.load(str(path))
    except _READ_ERRORS as exc:
        raise InputError(f"{path.name}: not a readable NIfTI file ({exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path.name}: not a NIfTI image")
    header = image.header
    notes: list[str] = []
    shape = _three_d_shape(image.shape, path)
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code <= 0:
        # Without an sform the voxel size *is* pixdim, which nibabel's header check has already
        # turned from 0 into 1 mm on loading: look at the bytes as stored.
        zooms = _raw_pixdim(path, header)
        if np.any(~np.isfinite(zooms)) or np.any(zooms <= 0):
            raise GeometryError(
                f"{path.name}: voxel size in the header is {tuple(np.round(zooms, 4).tolist())} mm; "
                "a zero or negative voxel size cannot be measured — fix pixdim in the file"
            )
    if sform_code > 0:
        affine_ras = header.get_sform()  # its columns are checked for zero length below
    elif qform_code > 0:
        affine_ras = header.get_qform()
    else:
        affine_ras = header.get_base_affine()
        notes.append(f"{path.name}: no sform/qform orientation; assumed nibabel's default (RAS-like) axes")
    try:
        data = np.asanyarray(image.dataobj)
    except _READ_ERRORS as exc:
        raise InputError(f"{path.name}: the image data are incomplete or corrupt ({exc})") from exc
    _check_uncompressed_size(path, image)
    data = data.reshape(shape)
    grid = grid_from_affine_lps(_LPS_FROM_RAS @ affine_ras, shape[::-1], what=path.name)
    return np.ascontiguousarray(data.transpose(2, 1, 0)), grid, tuple(notes)


def _raw_pixdim(path: Path, header: nib.Nifti1Header) -> np.ndarray:
    """pixdim[1:4] exactly as written in the file (nibabel's loader replaces zeros by 1)."""
    try:
        with nib.openers.ImageOpener(str(path)) as handle:
            raw = type(header).from_fileobj(handle, check=False)
    except _READ_ERRORS as exc:
        raise InputError(f"{path.name}: not a readable NIfTI header ({exc})") from exc
    return np.asarray(raw["pixdim"][1:4], dtype=float)


def _three_d_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) != 3:
        raise InputError(f"{path.name}: a 3-D image is needed, this one has shape {tuple(shape)}")
    return (int(dims[0]), int(dims[1]), int(dims[2]))


def _check_uncompressed_size(path: Path, image: nib.Nifti1Image) -> None:
    # A truncated .nii is memory-mapped without complaint by some readers; compare sizes.
    if image_suffix(path) != ".nii":
        return
    header = image.header
    needed = int(header.get_data_offset()) + int(np.prod(image.shape)) * header.get_data_dtype().itemsize
    if os.path.getsize(path) < needed:
        raise InputError(f"{path.name}: the file is truncated ({os.path.getsize(path)} of {needed} bytes)")


def read_itk(path: Path) -> tuple[np.ndarray, Grid, tuple[str, ...]]:
    """NRRD / MetaImage through SimpleITK (its geometry is already LPS)."""
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        _check_itk_header_spacing(path)
        image = reader.Execute()
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path.name}: unreadable, truncated or not an image (ITK: {detail})") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        components = image.GetNumberOfComponentsPerPixel()
        raise InputError(f"{path.name}: has {components} values per voxel; a scalar image is needed")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(f"{path.name}: a 3-D image is needed, this one has size {image.GetSize()}")
    grid = grid_from_affine_lps(_sitk_affine(image), grid_from_sitk(image).shape, what=path.name)
    return sitk.GetArrayFromImage(image), grid, ()


def _sitk_affine(image: sitk.Image) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


def _check_itk_header_spacing(path: Path) -> None:
    """Refuse a zero voxel size written in a NRRD / MetaImage text header.

    SimpleITK replaces it by 1 mm without a word, so the header line is read here (the header is a
    few hundred bytes of ``key: value`` / ``key = value`` text).
    """
    with open(path, "rb") as handle:
        head = handle.read(8192).split(b"\n\n", 1)[0].decode("latin-1", errors="replace")
    for line in head.splitlines():
        key, _, value = line.replace("=", ":", 1).partition(":")
        key = key.strip().lower()
        if key in ("elementspacing", "spacings"):
            numbers = [float(v) for v in value.split() if _is_number(v)]
            if numbers and min(numbers) <= 0:
                raise GeometryError(
                    f"{path.name}: voxel size {numbers} in the header; a zero voxel size cannot be measured"
                )
        elif key == "space directions":
            vectors = [v for v in value.replace(")", "(").split("(") if v.strip(" ,")]
            for vector in vectors:
                parts = [float(v) for v in vector.split(",") if _is_number(v)]
                if parts and np.linalg.norm(parts) <= 1e-9:
                    raise GeometryError(f"{path.name}: a zero space direction in the header; fix the file")
        if key == "elementdatafile":
            break


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_nifti(array: np.ndarray, grid: Grid, path: Path) -> Path:
    """Write ``array`` (z, y, x) on ``grid`` as NIfTI-1 with the RAS affine in both sform and qform.

    Codes are ``scanner`` (1), the affine is exactly :meth:`Grid.affine_ras`, units mm. Raises
    :class:`OutputError` when the file cannot be written.
    """
    if tuple(array.shape) != tuple(grid.shape):
        raise ValueError(f"array shape {array.shape} does not match grid {grid.shape}")
    path = Path(path)
    if image_suffix(path) not in NIFTI_SUFFIXES:
        raise OutputError(f"{path.name}: a NIfTI file name must end in .nii or .nii.gz")
    affine = grid.affine_ras()
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(image, str(path))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
