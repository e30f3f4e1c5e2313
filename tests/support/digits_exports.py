"""The committed digits weights re-exported for tests that need a format not committed (torch.export)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.paths import ASSETS

TORCHSCRIPT = ASSETS / "artifacts" / "digits" / "digits_cnn.torchscript.pt"


def torch_export_digits(path: Path) -> Path:
    """The committed digits weights as a torch.export archive with a dynamic batch axis, written to ``path``."""
    import torch

    with pytest.warns(DeprecationWarning):  # torch announces TorchScript's deprecation on load
        scripted = torch.jit.load(str(TORCHSCRIPT))
    network = torch.nn.Sequential(  # the digits architecture (scripts/build_digits.py: build_model)
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    network.load_state_dict(scripted.state_dict())
    network.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(network, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path
