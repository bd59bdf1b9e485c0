"""UCAG's unfold and fold: the authors' crop geometry, and the fold as the inverse of the unfold."""

import pytest
import torch

from lib.cams.ucag_geometry import UnfoldGeometry, duplication_matrix, fold_maps, unfold_crops


def test_the_authors_constants_give_36_crops_of_124_px_at_stride_20_upscaled_to_322():
    g = UnfoldGeometry(224)
    assert (g.n, g.rho, g.alpha) == (6, 0.555, 2.6)
    assert g.crop == 124 and g.scaled == 322
    assert g.offsets == [0, 20, 40, 60, 80, 100]
    assert len(g.positions) == 36 and g.positions[-1] == (100, 100)
    assert g.offsets[-1] + g.crop == 224  # the last crop ends on the image's edge


def test_offsets_cover_the_image_when_the_stride_is_not_an_integer():
    g = UnfoldGeometry(260)  # Lite2's input
    assert g.crop == 144 and g.offsets[0] == 0 and g.offsets[-1] + g.crop == 260
    assert all(b > a for a, b in zip(g.offsets, g.offsets[1:]))


def test_unfold_takes_each_crop_at_its_place():
    g = UnfoldGeometry(224, alpha=1.0)  # no upscaling: crops are exact slices
    images = torch.rand(2, 3, 224, 224)
    crops = unfold_crops(images, g)
    assert crops.shape == (2, 36, 3, 124, 124)
    t, l = g.positions[7]
    assert torch.equal(crops[:, 7], images[:, :, t:t + 124, l:l + 124])


def test_unfold_upscales_to_alpha_times_the_crop_and_stays_in_range():
    crops = unfold_crops(torch.rand(1, 3, 224, 224), UnfoldGeometry(224))
    assert crops.shape == (1, 36, 3, 322, 322)
    assert crops.min() >= 0 and crops.max() <= 1


def test_a_constant_map_folds_back_to_the_same_constant():
    g = UnfoldGeometry(224)
    maps = torch.full((2, 36, 7, 7), -0.7)  # signs are kept: UCAG folds raw maps
    folded = fold_maps(maps, g)
    assert folded.shape == (2, 224, 224)
    torch.testing.assert_close(folded, torch.full_like(folded, -0.7))


def test_weights_of_one_give_the_plain_average_of_the_crops_covering_each_pixel():
    g = UnfoldGeometry(224, n=3, rho=0.5)
    maps = torch.rand(1, 9, 112, 112)  # already at crop size: the resize is the identity
    folded = fold_maps(maps, g, weights=torch.ones(1, 9))
    expected = torch.zeros(224, 224)
    for k, (t, l) in enumerate(g.positions):
        expected[t:t + 112, l:l + 112] += maps[0, k]
    expected /= duplication_matrix(g)
    torch.testing.assert_close(folded[0], expected)
    torch.testing.assert_close(folded, fold_maps(maps, g))


def test_fold_inverts_unfold_for_an_image_channel():
    g = UnfoldGeometry(224, alpha=1.0)
    image = torch.rand(1, 1, 224, 224)
    crops = unfold_crops(image, g)[:, :, 0]
    torch.testing.assert_close(fold_maps(crops, g)[0], image[0, 0])


def test_the_released_codes_count_of_ones_shrinks_the_border_more_than_the_centre():
    g = UnfoldGeometry(224)
    count = duplication_matrix(g)
    assert count[0, 0] == 1 and count[112, 112] == 36
    folded = fold_maps(torch.ones(1, 36, 7, 7), g, count_init=1.0)[0]
    assert folded[0, 0] == pytest.approx(0.5) and folded[112, 112] == pytest.approx(36 / 37)


def test_a_weight_scales_only_its_crop():
    g = UnfoldGeometry(224, n=2, rho=0.5)  # four disjoint quadrants
    weights = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    folded = fold_maps(torch.ones(1, 4, 112, 112), g, weights=weights)[0]
    assert folded[0, 0] == 1 and folded[0, 200] == 2 and folded[200, 0] == 3 and folded[200, 200] == 4


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match="one per crop"):
        fold_maps(torch.ones(1, 5, 7, 7), UnfoldGeometry(224))
    with pytest.raises(ValueError, match="UnfoldGeometry"):
        unfold_crops(torch.rand(1, 3, 200, 200), UnfoldGeometry(224))
    with pytest.raises(ValueError, match="rho"):
        UnfoldGeometry(224, rho=1.5)
