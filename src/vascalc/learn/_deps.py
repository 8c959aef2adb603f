"""Optional dependencies of :mod:`vascalc.learn`: PyTorch and MONAI are imported only when needed.

``import vascalc`` and every command that does not train or apply a model work without them.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from vascalc.errors import DependencyError

INSTALL_HINT = "pip install 'vascalc[learn]' -c constraints.txt"


def _import(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise DependencyError(
            f"{what} needs {name.split('.')[0]}, which is not installed ({error}); install it with: {INSTALL_HINT}"
        ) from None


def require_torch(what: str = "training and applying segmentation models") -> ModuleType:
    """The ``torch`` module, or :class:`DependencyError` saying how to install it."""
    return _import("torch", what)


def require_monai(what: str = "training and applying segmentation models") -> ModuleType:
    """The ``monai`` module (after torch), or :class:`DependencyError` saying how to install it."""
    require_torch(what)
    return _import("monai", what)


def learn_available() -> bool:
    """True when both PyTorch and MONAI can be imported."""
    try:
        require_monai()
    except DependencyError:
        return False
    return True


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and switch on its deterministic algorithms for the block, then restore the setting."""
    torch = require_torch()
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
