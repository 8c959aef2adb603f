"""Network architectures, described by plain data so a saved model can be rebuilt from its JSON.

The 2-D segmentation network is MONAI's ``FlexibleUNet``: a U-Net decoder on a ResNet encoder,
ResNet-34 by default as in S4 (SCORING.md, study list), randomly initialised — vascalc never
downloads weights (S4 used ImageNet weights; here there are none to download).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from vascalc.errors import InputError
from vascalc.learn._deps import require_monai

BACKBONES = ("resnet10", "resnet18", "resnet34", "resnet50")


class JsonSpec:
    """``model.json`` round trip of a frozen network-spec dataclass: the integer tuples named in
    ``INT_TUPLES`` travel as JSON lists; unknown keys (from newer writers) are ignored."""

    INT_TUPLES: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in self.INT_TUPLES:
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict):
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in cls.INT_TUPLES:
            if name in known:
                known[name] = tuple(int(v) for v in known[name])
        return cls(**known)


@dataclass(frozen=True)
class NetworkSpec(JsonSpec):
    """What :func:`build_network` builds: ``monai.networks.nets.FlexibleUNet`` with these arguments."""

    INT_TUPLES: ClassVar[tuple[str, ...]] = ("decoder_channels",)

    architecture: str = "monai.FlexibleUNet"
    backbone: str = "resnet34"
    in_channels: int = 1
    out_channels: int = 1
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    spatial_dims: int = 2


def build_network(spec: NetworkSpec):
    """A freshly initialised ``torch.nn.Module`` for ``spec`` (call ``torch.manual_seed`` first to fix it)."""
    if spec.architecture != "monai.FlexibleUNet":
        raise InputError(f"unknown architecture {spec.architecture!r}; this vascalc builds 'monai.FlexibleUNet'")
    if spec.backbone not in BACKBONES:
        raise InputError(f"unknown backbone {spec.backbone!r}; choose one of {', '.join(BACKBONES)}")
    monai = require_monai()
    from monai.networks.nets import FlexibleUNet

    del monai
    return FlexibleUNet(
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        backbone=spec.backbone,
        pretrained=False,
        decoder_channels=spec.decoder_channels,
        spatial_dims=spec.spatial_dims,
    )
