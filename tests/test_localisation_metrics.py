"""lib.metrics.localisation: pointing game (TorchRay rule) and energy-based pointing game, by hand."""

from __future__ import annotations

import pytest
import torch

from lib.metrics.localisation import box_pixel_ranges, class_box_masks, energy_pointing_game, pointing_game


def peak_map(h: int, w: int, row: int, col: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[row, col] = 1.0
    return m


def boxes_of(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_box_rasterisation_centre_rule():
    r = box_pixel_ranges(torch.tensor([[0.0, 0.0, 4.0, 4.0],   # integer box: columns/rows 0..3
                                       [1.2, 0.0, 2.7, 1.0],   # centres 1.5, 2.5 inside; row 0
                                       [1.5, 1.5, 2.5, 2.5],   # half-open: only pixel (1, 1)
                                       [3.0, 0.0, 3.0, 4.0],   # zero width: empty
                                       [-5.0, 2.0, 30.0, 9.0]]),  # clipped to the 4x4 image
                         4, 4)
    assert r.tolist() == [[0, 0, 3, 3], [1, 0, 2, 0], [1, 1, 1, 1], [3, 0, 2, 3], [0, 2, 3, 3]]
    masks = class_box_masks([boxes_of([1.2, 0.0, 2.7, 1.0], [0, 3, 1, 4], [2, 2, 4, 4])],
                            [torch.tensor([7, 7, 8])], [7], (4, 4))
    expected = torch.tensor([[0, 1, 1, 0],
                             [0, 0, 0, 0],
                             [0, 0, 0, 0],
                             [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(masks[0], expected)  # the class-8 box is left out


def test_pointing_game_tolerance_strict_like_torchray():
    # point (u=3, v=2); box columns 5..7, rows 0..3 -> distance 2
    maps = peak_map(10, 10, row=2, col=3)[None]
    boxes, labels = [boxes_of([5, 0, 8, 4])], [torch.tensor([5])]
    assert pointing_game(maps, boxes, labels, [5], tolerance=3)["hits"].tolist() == [True]
    assert pointing_game(maps, boxes, labels, [5], tolerance=2)["hits"].tolist() == [False]  # 4 < 4 false
    assert pointing_game(maps, boxes, labels, [5], tolerance=2, inclusive=True)["hits"].tolist() == [True]
    # diagonal: point (0, 0), box from pixel (3, 4): d^2 = 9 + 16 = 25
    maps = peak_map(10, 10, 0, 0)[None]
    boxes = [boxes_of([3, 4, 6, 6])]
    assert pointing_game(maps, boxes, labels, [5], tolerance=5)["hits"].tolist() == [False]
    assert pointing_game(maps, boxes, labels, [5], tolerance=5.01)["hits"].tolist() == [True]
    res = pointing_game(maps, boxes, labels, [5])  # default 15
    assert res["hits"].tolist() == [True] and res["valid"].tolist() == [True]
    assert res["points"].tolist() == [[0, 0]]


def test_pointing_game_classes_missing_boxes_and_ties():
    h = w = 40
    maps = torch.stack([peak_map(h, w, 5, 5), peak_map(h, w, 5, 5), peak_map(h, w, 30, 30), torch.zeros(h, w)])
    boxes = [boxes_of([0, 0, 10, 10], [20, 20, 40, 40]),  # class 1 at the point, class 2 far
             boxes_of([0, 0, 10, 10]),                     # only a box of another class
             torch.zeros(0, 4),                            # no boxes at all
             boxes_of([0, 0, 1, 1], [39, 39, 40, 40])]     # constant map: argmax = pixel (0, 0)
    labels = [torch.tensor([1, 2]), torch.tensor([3]), torch.zeros(0, dtype=torch.long), torch.tensor([4, 4])]
    res = pointing_game(maps, boxes, labels, [2, 1, 1, 4], tolerance=15)
    # image 0: class 2's box [20, 39] is at distance sqrt(15^2 + 15^2) > 15 -> miss
    assert res["hits"].tolist() == [False, False, False, True]
    assert res["valid"].tolist() == [True, False, False, True]
    assert res["points"][3].tolist() == [0, 0]
    # ties: two equal maxima -> the first in row-major order
    m = torch.zeros(1, 6, 6)
    m[0, 1, 4] = m[0, 4, 1] = 1.0
    assert pointing_game(m, [boxes_of([4, 1, 5, 2])], [torch.tensor([0])], [0], tolerance=1)["hits"].tolist() == [True]
    assert pointing_game(m, [boxes_of([1, 4, 2, 5])], [torch.tensor([0])], [0], tolerance=1)["hits"].tolist() == [False]


def torchray_hit(mask: torch.Tensor, point: tuple[int, int], tolerance: float) -> bool:
    """TorchRay's PointingGame.evaluate rule on a boolean class mask."""
    v, u = torch.meshgrid(torch.arange(mask.shape[0], dtype=torch.float32) - point[1],
                          torch.arange(mask.shape[1], dtype=torch.float32) - point[0], indexing="ij")
    accept = (v ** 2 + u ** 2) < tolerance ** 2
    return bool((mask & accept).any())


def test_pointing_game_matches_torchray_rule_and_batching():
    g = torch.Generator().manual_seed(0)
    n, h, w = 40, 24, 20
    maps = torch.rand(n, h, w, generator=g)
    boxes, labels = [], []
    for _ in range(n):
        k = int(torch.randint(0, 4, (1,), generator=g))
        xy0 = torch.rand(k, 2, generator=g) * torch.tensor([w, h])
        wh = torch.rand(k, 2, generator=g) * 8
        boxes.append(torch.cat([xy0, xy0 + wh], 1))
        labels.append(torch.randint(0, 2, (k,), generator=g))
    targets = torch.randint(0, 2, (n,), generator=g)
    res = pointing_game(maps, boxes, labels, targets, tolerance=4)
    masks = class_box_masks(boxes, labels, targets, (h, w))
    for i in range(n):
        point = tuple(res["points"][i].tolist())
        assert int(maps[i].reshape(-1).argmax()) == point[1] * w + point[0]
        assert bool(res["hits"][i]) == torchray_hit(masks[i], point, 4)
        assert bool(res["valid"][i]) == bool(masks[i].any())
    assert res["valid"].any() and (~res["valid"]).any() and res["hits"].any()
    # per-image results do not depend on the batch
    for i in (0, 7, 39):
        one = pointing_game(maps[i:i + 1], boxes[i:i + 1], labels[i:i + 1], targets[i:i + 1], tolerance=4)
        assert one["hits"].item() == res["hits"][i].item()
        e_one = energy_pointing_game(maps[i:i + 1], boxes[i:i + 1], labels[i:i + 1], targets[i:i + 1])
        e_all = energy_pointing_game(maps, boxes, labels, targets)
        torch.testing.assert_close(e_one["energy"][0], e_all["energy"][i])


def test_energy_pointing_game_by_hand():
    maps = torch.tensor([[[1.0, 0.5, 0.0, 0.0],
                          [0.5, 0.25, 0.0, 0.0],
                          [0.0, 0.0, 0.0, 1.0],
                          [0.0, 0.0, 0.0, 0.75]]]).repeat(3, 1, 1)
    maps[2] = 0.0  # 0 / 0 -> 0
    # image 0: two overlapping boxes of class 3 (union = the top-left 2x2 block plus column 1 of rows 2..3)
    boxes = [boxes_of([0, 0, 2, 2], [1, 0, 2, 4]), boxes_of([0, 0, 2, 2]), boxes_of([0, 0, 4, 4])]
    labels = [torch.tensor([3, 3]), torch.tensor([9]), torch.tensor([3])]
    res = energy_pointing_game(maps, boxes, labels, [3, 3, 3])
    total = 1 + 0.5 + 0.5 + 0.25 + 1 + 0.75
    torch.testing.assert_close(res["energy"], torch.tensor([2.25 / total, 0.0, 0.0]))
    assert res["valid"].tolist() == [True, False, True]
    assert torch.isfinite(res["energy"]).all()
    # whole-image box -> 1; constant maps -> the box's area fraction
    full = energy_pointing_game(torch.rand(1, 4, 4), [boxes_of([0, 0, 4, 4])], [torch.tensor([0])], [0])
    torch.testing.assert_close(full["energy"], torch.tensor([1.0]))
    const = energy_pointing_game(torch.full((1, 4, 4), 0.3), [boxes_of([0, 0, 2, 4])], [torch.tensor([0])], [0])
    torch.testing.assert_close(const["energy"], torch.tensor([0.5]))


def test_argument_checks():
    maps = torch.rand(2, 4, 4)
    with pytest.raises(ValueError, match="one entry per image"):
        pointing_game(maps, [boxes_of([0, 0, 1, 1])], [torch.tensor([0])], [0, 0])
    with pytest.raises(ValueError, match="box labels"):
        pointing_game(maps, [boxes_of([0, 0, 1, 1]), torch.zeros(0, 4)], [torch.tensor([0, 1]), torch.zeros(0)],
                      [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        energy_pointing_game(torch.full((1, 4, 4), float("nan")), [torch.zeros(0, 4)], [torch.zeros(0)], [0])
