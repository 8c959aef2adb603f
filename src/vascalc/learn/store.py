"""Model folders: fold state dicts (``fold_<k>.pt``) plus ``model.json`` metadata, and the CV report.

A model folder holds everything inference needs and nothing that identifies a patient:

* ``model.json`` — format, network spec, input size, normalisation and HU window, label name,
  threshold, training settings, training-data counts, cross-validation Dice per fold, versions;
* ``fold_<k>.pt`` — one ``torch.save`` state dict per fold (tensors only; loaded with
  ``weights_only=True``, so a model folder cannot run code when opened);
* ``cv_report.json`` / ``cv_report.md`` — the cross-validation report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vascalc.errors import InputError, OutputError
from vascalc.learn._deps import require_torch
from vascalc.learn.models import NetworkSpec, build_network

FORMAT = "vascalc-seg2d"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"


@dataclass(frozen=True, eq=False)
class Seg2DEnsemble:
    """A loaded model folder: the fold networks (eval mode) and their metadata (``model.json``)."""

    networks: tuple
    metadata: dict

    @property
    def size_px(self) -> int:
        return int(self.metadata["input_size_px"])

    @property
    def label_name(self) -> str:
        return str(self.metadata["label_name"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def normalisation(self) -> str:
        return str(self.metadata["normalisation"])

    @property
    def window_hu(self) -> tuple[float, float] | None:
        window = self.metadata.get("window_hu")
        return (float(window[0]), float(window[1])) if window else None


def software_versions() -> dict:
    """vascalc, torch and MONAI versions, recorded in every saved model's ``model.json``."""
    import vascalc

    torch = require_torch()
    import monai

    return {"vascalc": vascalc.__version__, "torch": torch.__version__, "monai": monai.__version__}


def new_model_folder(model_dir: str | Path) -> Path:
    """Create ``model_dir`` for a model (it must be new or empty: a model is never overwritten)."""
    model_dir = Path(model_dir)
    if model_dir.exists() and any(model_dir.iterdir()):
        raise OutputError(f"{model_dir}: folder exists and is not empty; choose a new model folder")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{model_dir}: cannot create the model folder ({error})") from None
    return model_dir


def save_ensemble(model_dir: str | Path, networks: list, config, slices, report: dict | None = None) -> Path:
    """Write the fold networks and ``model.json`` into ``model_dir`` (created; must be empty if it exists)."""
    torch = require_torch()
    model_dir = new_model_folder(model_dir)
    files = []
    for k, network in enumerate(networks):
        name = f"fold_{k}.pt"
        torch.save({key: value.detach().cpu() for key, value in network.state_dict().items()}, model_dir / name)
        files.append(name)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "label_name": config.label_name,
        "threshold": config.threshold,
        "network": config.network.to_dict(),
        "input_size_px": config.size_px,
        "normalisation": slices.normalisation,
        "window_hu": list(slices.window_hu) if slices.window_hu else None,
        "orientation": "axial, radiological display: anterior up, patient right on the image left",
        "fold_files": files,
        "ensemble": "mean of the fold models' sigmoid probabilities, thresholded at 'threshold'",
        "training_data": {"description": (report or {}).get("description", ""), **slices.describe()},
        "training": config.to_dict(),
        "cross_validation": None if report is None else {
            "split": report["split"],
            "folds": [{k: f[k] for k in ("fold", "per_slice_mean_dice", "global_dice", "n_validation_slices")}
                      for f in report["folds"]],
            "mean_over_folds": report["mean_over_folds"],
        },
        "software": software_versions(),
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=_json_default), encoding="utf-8")
    return model_dir


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def read_metadata(model_dir: str | Path) -> dict:
    """``model.json`` of a model folder; :class:`InputError` when it is missing or not a vascalc model."""
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise InputError(f"{model_dir}: not a vascalc model folder (no {METADATA_FILE}); train one with 'vascalc train seg2d'")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable model metadata ({error})") from None
    if metadata.get("format") != FORMAT or int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path}: format {metadata.get('format')!r} v{metadata.get('format_version')} is not one this vascalc reads")
    return metadata


def load_ensemble(model_dir: str | Path) -> Seg2DEnsemble:
    """Load every fold network of a model folder (eval mode, CPU)."""
    require_torch()
    metadata = read_metadata(model_dir)
    spec = NetworkSpec.from_dict(metadata["network"])
    networks = tuple(load_weights(build_network(spec), Path(model_dir) / name)
                     for name in metadata["fold_files"])
    return Seg2DEnsemble(networks=networks, metadata=metadata)


def load_weights(network, path: Path):
    """Fill ``network`` from the state dict at ``path`` (CPU, ``weights_only=True`` so a model file
    cannot run code) and put it in eval mode; a missing or foreign file is an :class:`InputError`."""
    torch = require_torch()
    if not path.is_file():
        raise InputError(f"{path.parent}: weight file {path.name} is missing")
    try:
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, KeyError) as error:
        raise InputError(f"{path}: not a state dict for this network ({error})") from None
    network.eval()
    return network


def write_cv_report(model_dir: str | Path, report: dict) -> tuple[Path, Path]:
    """Write ``cv_report.json`` and a Markdown table ``cv_report.md`` (per-fold Dice beside S4's)."""
    model_dir = Path(model_dir)
    json_path = model_dir / "cv_report.json"
    json_path.write_text(json.dumps(report, indent=2, default=_json_default), encoding="utf-8")
    md_path = model_dir / "cv_report.md"
    md_path.write_text(cv_report_markdown(report), encoding="utf-8")
    return json_path, md_path


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f} %"


def cv_report_markdown(report: dict) -> str:
    """The CV report as Markdown: one row per fold, the mean, the pooled out-of-fold Dice and S4."""
    cfg, data = report["config"], report["training_data"]
    lines = [
        "# 2-D segmentation: cross-validation report",
        "",
        f"{report.get('description') or 'training data'}: {data['n_slices']} slices from {data['n_cases']} case(s) "
        f"({data['source_format']}, {data['n_slices_with_mask']} with mask). Network: U-Net "
        f"(MONAI FlexibleUNet), {cfg['network']['backbone']} encoder, random init; input {cfg['size_px']} px; "
        f"{cfg['epochs']} epochs max, batch {cfg['batch_size']}, Adam lr {cfg['learning_rate']}; loss BCE + (1 − soft IoU); "
        f"seed {cfg['seed']}. Split: {report['split']} ({cfg['n_folds']} folds, gap {cfg['gap_slices']} slices).",
        "",
        "Dice per fold on its validation slices (original resolution, threshold "
        f"{cfg['threshold']}). *per-slice mean* averages slice Dice, skipping slices empty in both "
        "masks (SCORING.md D.1, S4's aggregation); *global* pools all pixels.",
        "",
        "| fold | validation slices | slice index range | epochs | train s | per-slice mean Dice | global Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        rng = f["validation_slice_index_range"]
        lines.append(
            f"| {f['fold']} | {f['n_validation_slices']} | {rng[0]}–{rng[1]} | {f['epochs_run']} | "
            f"{f['train_seconds']:.0f} | {_pct(f['per_slice_mean_dice'])} | {_pct(f['global_dice'])} |"
        )
    mean, oof, ref = report["mean_over_folds"], report["out_of_fold_pooled"], report["reference"]
    lines += [
        f"| **mean of folds** | | | | | **{_pct(mean['per_slice_mean_dice'])}** | **{_pct(mean['global_dice'])}** |",
        f"| out-of-fold, all slices pooled | {oof['n_slices']} | | | | {_pct(oof['per_slice_mean_dice'])} | {_pct(oof['global_dice'])} |",
        f"| {ref['study']} | | | | | {_pct(ref['dice'])} | |",
        "",
        f"Total time {report['seconds_total']:.0f} s.",
        "",
    ]
    return "\n".join(lines)
