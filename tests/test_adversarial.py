"""lib.metrics.adversarial: core-area offsets, embedding by hand, accuracy and fading rate by hand."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyModel, sigmoid

from lib.metrics.adversarial import adversarial_verification, embed_core_area, random_offsets


def test_offsets_keep_the_core_inside_and_are_seeded():
    core = torch.zeros(3, 10, 12, dtype=torch.bool)
    core[0, 2:4, 3:7] = True
    core[1, 0, 0] = True
    core[2, 5:10, 8:12] = True
    offsets = random_offsets(core, 50, seed=3)
    assert offsets.shape == (3, 50, 2)
    torch.testing.assert_close(offsets, random_offsets(core, 50, seed=3))
    boxes = [(2, 3, 3, 6), (0, 0, 0, 0), (5, 9, 8, 11)]  # y0, y1, x0, x1
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        dy, dx = offsets[i, :, 0], offsets[i, :, 1]
        assert (y0 + dy >= 0).all() and (y1 + dy <= 9).all() and (x0 + dx >= 0).all() and (x1 + dx <= 11).all()
    # the whole allowed range is used: the single pixel can go anywhere
    assert offsets[1, :, 0].unique().numel() > 5
    with pytest.raises(ValueError, match="empty core"):
        random_offsets(torch.zeros(1, 4, 4, dtype=torch.bool), 2)


def test_embedding_moves_the_core_pixels_over_the_host():
    image = torch.arange(48, dtype=torch.float32).view(1, 3, 4, 4)
    core = torch.zeros(1, 4, 4, dtype=torch.bool)
    core[0, 0, 0] = core[0, 0, 1] = True
    hosts = torch.full((2, 3, 4, 4), -1.0)
    offsets = torch.tensor([[2, 1], [0, 0]])
    out = embed_core_area(image, core, hosts, offsets)
    expected = hosts.clone()
    expected[0, :, 2, 1] = image[0, :, 0, 0]
    expected[0, :, 2, 2] = image[0, :, 0, 1]
    expected[1, :, 0, 0] = image[0, :, 0, 0]
    expected[1, :, 0, 1] = image[0, :, 0, 1]
    torch.testing.assert_close(out, expected)


def test_accuracy_and_fading_by_hand_on_the_tiny_model():
    """TinyModel: p(class 0) = sigmoid(2 s), s = mean over pixels of (2 x - 1) in channel 0."""
    model = TinyModel()
    image = torch.zeros(1, 3, 4, 4)
    image[0, 0, 0, :2] = 1.0  # two bright pixels carry class 0
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, :2] = 1.0
    maps[0, 3, 3] = 0.5
    hosts = torch.zeros(1, 3, 3, 4, 4)
    hosts[0, 1, 0] = 1.0  # a brighter host
    hosts[0, 2, 0, 2:, :] = 1.0
    res = adversarial_verification(model, image, maps, torch.tensor([0]), hosts, fraction=2 / 16, seed=1)
    p_x = sigmoid(2 * (2 - 14) / 16)  # two pixels at +1, 14 at -1
    torch.testing.assert_close(res["original"], torch.tensor([p_x]))
    expected_p, correct = [], []
    for k in range(3):
        dy, dx = res["offsets"][0, k].tolist()
        z = hosts[0, k, 0].clone()
        z[0 + dy, 0 + dx] = 1.0
        z[0 + dy, 1 + dx] = 1.0
        p = sigmoid(2 * float((2 * z - 1).mean()))
        expected_p.append(p)
        correct.append(p > 0.5)
    torch.testing.assert_close(res["embedded"][0], torch.tensor(expected_p))
    assert res["accuracy"].item() == pytest.approx(100 * sum(correct) / 3)
    fading = sum(max(0.0, p_x - p) / p_x for p in expected_p) / 3 * 100
    assert res["fading"].item() == pytest.approx(fading, rel=1e-5)


def test_batching_does_not_change_the_result():
    model = TinyModel()
    g = torch.Generator().manual_seed(2)
    images, maps = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    hosts = torch.rand(3, 4, 3, 8, 8, generator=g)
    a = adversarial_verification(model, images, maps, torch.tensor([0, 1, 0]), hosts, batch_size=1)
    b = adversarial_verification(model, images, maps, torch.tensor([0, 1, 0]), hosts, batch_size=64)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_bad_inputs_are_named():
    model = TinyModel()
    images, maps = torch.rand(2, 3, 4, 4), torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="hosts"):
        adversarial_verification(model, images, maps, torch.tensor([0, 1]), torch.rand(3, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="maps"):
        adversarial_verification(model, images, maps[:1], torch.tensor([0, 1]), torch.rand(2, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        adversarial_verification(model, images, maps * float("nan"), torch.tensor([0, 1]), torch.rand(2, 2, 3, 4, 4))
