"""Shared fixtures: paths of the example models and a helper to compile text."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@pytest.fixture
def models_dir() -> Path:
    return MODELS


def pytest_collection_modifyitems(config, items):
    """CUDA tests skip cleanly on machines without a GPU (CI has none)."""
    cuda_items = [item for item in items if "cuda" in item.keywords]
    if not cuda_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in cuda_items:
        item.add_marker(skip)
