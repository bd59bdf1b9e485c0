"""UCAG wrapper (lib.cams.ucag) and the signed maps it folds (CAM.signed_raw)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lib.cams import (UCAG, GradCAM, GradCAMPlusPlus, UCAGSettings, XGradCAM, get_method, unfold_and_conquer)
from lib.cams.ucag import (confidence_weights, conquer, maps_sharing_passes, maps_together, partial_explanations,
                            postprocess)
from lib.cams.ucag_geometry import UnfoldGeometry
from lib.data import CompositeDataset, collate_samples, packaged_photos
from lib.metrics import energy_pointing_game

SIGNED = ["gradcam", "gradcam++", "xgradcam", "smoothgradcam++", "layercam", "hirescam", "eigencam", "cam"]


@pytest.mark.parametrize("name", SIGNED)
def test_signed_maps_are_the_maps_before_relu(lite0, photos, name):
    method = get_method(name, lite0)
    assert method.signed_maps
    signed, ids, logits = method.signed_raw(photos[:2])
    maps, ids_raw = method.raw(photos[:2])
    torch.testing.assert_close(F.relu(signed), maps, rtol=1e-5, atol=1e-6)
    assert torch.equal(ids, ids_raw)
    torch.testing.assert_close(logits, lite0(photos[:2]), rtol=1e-4, atol=1e-4)


def test_signed_maps_carry_negative_evidence(lite0, photos):
    signed, _, _ = GradCAM(lite0).signed_raw(photos, 281)  # tabby cat on every photo
    assert (signed < 0).any(), "Grad-CAM's pre-ReLU map of a class absent from a photo has negative pixels"


def test_unsigned_methods_fall_back_to_raw_maps_and_logits(lite0, photos):
    rise = get_method("rise", lite0, n_masks=16, batch_size=16)
    assert not rise.signed_maps
    maps, ids, logits = rise.signed_raw(photos[:1])
    raw, raw_ids = rise.raw(photos[:1])
    torch.testing.assert_close(maps, raw)
    assert torch.equal(ids, raw_ids)
    torch.testing.assert_close(logits, lite0(photos[:1]), rtol=1e-4, atol=1e-4)


def test_confidence_weights_by_hand():
    # two images x two crops, three classes; targets: image 0 -> class 2, image 1 -> class 0
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.log(4.0)],
                           [math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
    w = confidence_weights(logits, torch.tensor([[2], [0]]), n_crops=2)
    p = torch.tensor([[1 / 3, 4 / 6], [2 / 4, 1 / 3]])  # softmax of the target per crop
    expected = p.exp() / p.exp().amax(1, keepdim=True)
    torch.testing.assert_close(w, expected[None])
    assert w.shape == (1, 2, 2) and float(w.min()) >= math.exp(-1) - 1e-6


def test_postprocess_is_relu_minmax_blur():
    maps = torch.tensor([[-1.0, 0.0], [1.0, 3.0]]).repeat_interleave(4, 0).repeat_interleave(4, 1)[None]
    plain = postprocess(maps, blur_kernel=0)
    assert float(plain.min()) == 0.0 and float(plain.max()) == 1.0
    torch.testing.assert_close(plain, F.relu(maps) / 3.0)
    peak = torch.zeros(1, 9, 9)
    peak[0, 4, 4] = 2.0
    blurred = postprocess(peak)
    assert blurred.shape == peak.shape and 0.0 <= float(blurred.min())
    assert 0.0 < float(blurred.max()) < 1.0  # blurred after the min-max, not normalised again (released code)
    assert int(blurred.flatten().argmax()) == 4 * 9 + 4


def test_conquer_weights_scale_each_crop():
    g = UnfoldGeometry(size=8, n=2, rho=0.5, alpha=1.0)  # four disjoint 4x4 crops
    partial = torch.ones(1, 4, 2, 2)  # one target, one image x four crops
    weights = torch.tensor([[[1.0, 0.5, 0.25, 0.0]]])
    out = conquer(partial, weights, g, UCAGSettings(blur_kernel=0))[:, 0]
    quadrants = [out[0, :4, :4], out[0, :4, 4:], out[0, 4:, :4], out[0, 4:, 4:]]
    for q, w in zip(quadrants, [1.0, 0.5, 0.25, 0.0]):  # min-max of {1, .5, .25, 0} is the weights
        torch.testing.assert_close(q, torch.full_like(q, w))


def test_single_whole_crop_is_the_plain_method(lite0, photos):
    """n = 1, rho = 1, alpha = 1, no blur: one crop = the image; UCAG = Grad-CAM up to resampling order."""
    ucag = UCAG(GradCAM(lite0), n=1, rho=1.0, alpha=1.0, blur_kernel=0)(photos[:2])
    plain = GradCAM(lite0)(photos[:2])
    for u, p in zip(ucag, plain):
        r = torch.corrcoef(torch.stack([u.flatten(), p.flatten()]))[0, 1]
        assert r > 0.999


def test_shared_capture_equals_separate_wrappers(lite0, photos):
    methods = [GradCAM(lite0), GradCAMPlusPlus(lite0), XGradCAM(lite0)]
    x = photos[:1]
    shared = unfold_and_conquer(methods, x, "predicted", UCAGSettings(n=3))
    for method, maps in zip(methods, shared):
        torch.testing.assert_close(maps, UCAG(method, n=3)(x), rtol=1e-5, atol=1e-5)
        assert maps.shape == (1, 224, 224) and 0 <= float(maps.min()) and float(maps.max()) <= 1


def test_multi_target_columns_are_single_target_maps(lite0, photos):
    x = photos[1:2]
    both = UCAG(GradCAM(lite0), n=2)(x, torch.tensor([[281, 967]]))
    assert both.shape == (1, 2, 224, 224)
    torch.testing.assert_close(both[:, 1], UCAG(GradCAM(lite0), n=2)(x, 967), rtol=1e-5, atol=1e-5)


def test_targets_are_chosen_on_the_whole_image(lite0, photos):
    x = photos[1:2]
    predicted = int(lite0(x).argmax())
    torch.testing.assert_close(UCAG(GradCAM(lite0), n=2)(x), UCAG(GradCAM(lite0), n=2)(x, predicted))


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam"])
def test_wrapped_methods_keep_class_discrimination_on_a_composite(lite0, name):
    """Cat left, espresso right: each class's UCAG map puts most of its energy on its own photo."""
    cat, coffee = packaged_photos(["chelsea", "coffee"])
    data = CompositeDataset(lite0.preprocess, [(cat, coffee)])
    batch = collate_samples([data[0]])
    x = batch.images
    maps = get_method(f"ucag-{name}", lite0)(x, torch.tensor([[cat.label, coffee.label]]))  # [1, 2, H, W]
    for j, label in enumerate((cat.label, coffee.label)):
        own = energy_pointing_game(maps[:, j], batch.boxes, batch.box_labels, [label])["energy"]
        other_label = coffee.label if j == 0 else cat.label
        other = energy_pointing_game(maps[:, j], batch.boxes, batch.box_labels, [other_label])["energy"]
        assert float(own) > 0.5 and float(own) > 2 * float(other), (name, label, float(own), float(other))


def test_count_init_of_the_released_code_shrinks_the_border():
    g = UnfoldGeometry(size=224)
    partial = torch.ones(1, 36, 7, 7)
    weights = torch.ones(1, 1, 36)
    paper = conquer(partial, weights, g, UCAGSettings(blur_kernel=0, count_init=0.0))
    released = conquer(partial * 1.0, weights, g, UCAGSettings(blur_kernel=0, count_init=1.0))
    assert float(paper.min()) == float(paper.max()) == 0.0  # a constant folds back to a constant (min-max: 0)
    assert float(released[0, 0, 0, 0]) < float(released[0, 0, 112, 112])  # corner (1 crop) below centre (36)


def test_bad_inputs_name_the_fix(lite0, photos):
    with pytest.raises(TypeError, match="UCAG wraps a lib CAM method"):
        UCAG(lambda x: x)
    with pytest.raises(ValueError, match="square"):
        UCAG(GradCAM(lite0))(photos[:1, :, :, :200])
    with pytest.raises(ValueError, match="odd"):
        UCAGSettings(blur_kernel=4)
    with pytest.raises(ValueError, match="methods is empty"):
        unfold_and_conquer([], photos[:1])
    assert get_method("UCAG-Grad-CAM++", lite0).name == "UCAG Grad-CAM++"


def test_chunking_does_not_change_the_maps(lite0, photos):
    x = photos[:3]
    one_per_chunk = UCAG(GradCAM(lite0), n=2, crop_batch=4)(x)  # 1 image (4 crops) per pass
    all_at_once = UCAG(GradCAM(lite0), n=2, crop_batch=12)(x)
    # float32 convolutions differ in the last bits with the batch size; min-max amplifies that a little
    torch.testing.assert_close(one_per_chunk, all_at_once, rtol=0, atol=5e-3)
    partial, weights, ids = partial_explanations([GradCAM(lite0)], x, "predicted", UCAGSettings(n=2, crop_batch=4))
    assert partial[0].shape[:2] == (1, 12) and weights.shape == (1, 3, 4) and ids.shape == (3, 1)


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "smoothgradcam++", "layercam", "hirescam"])
def test_every_gradient_method_can_be_wrapped(lite0, photos, name):
    """n = 2 (4 crops) for speed: valid [0, 1] maps that differ from the plain method's."""
    x = photos[1:2]
    wrapped = UCAG(get_method(name, lite0), n=2)(x, 281)
    assert wrapped.shape == (1, 224, 224) and torch.isfinite(wrapped).all()
    assert 0 <= float(wrapped.min()) and 0 < float(wrapped.max()) <= 1
    plain = get_method(name, lite0)(x, 281)
    assert (wrapped - plain).abs().mean() > 1e-3


def test_variants_together_equal_each_alone(lite0, photos):
    """One set of crop passes for UCAG around Grad-CAM (both count initialisations) and Grad-CAM++: the maps of
    each object called alone, and the wrapped Grad-CAM explained once (its two wrappers describe one method)."""
    x, targets = photos[:2], torch.tensor([281, 967])
    ucags = [UCAG(GradCAM(lite0), n=2), UCAG(GradCAM(lite0), n=2, count_init=1.0), UCAG(GradCAMPlusPlus(lite0), n=2)]
    calls = []
    original = partial_explanations.__globals__["_partial_maps"]

    def counting(methods, crops, crop_targets):
        calls.append(len(methods))
        return original(methods, crops, crop_targets)

    partial_explanations.__globals__["_partial_maps"] = counting
    try:
        together = maps_together(ucags, x, targets)
    finally:
        partial_explanations.__globals__["_partial_maps"] = original
    assert calls == [2]  # one batch of crops (2 images x 4 crops <= crop_batch 36), two distinct methods
    for u, maps in zip(ucags, together):
        torch.testing.assert_close(maps, u(x, targets), rtol=0, atol=0)
    assert not torch.equal(together[0], together[1])  # the count initialisation acts after the passes
    mixed = [UCAG(GradCAM(lite0), n=2), GradCAM(lite0), UCAG(GradCAM(lite0), n=1, rho=1.0), ucags[2]]
    for cam, maps in zip(mixed, maps_sharing_passes(mixed, x, targets)):
        torch.testing.assert_close(maps, cam(x, targets), rtol=0, atol=0)
    with pytest.raises(ValueError, match="crop_passes_key"):
        maps_together([ucags[0], UCAG(GradCAM(lite0), n=1, rho=1.0)], x, targets)
    with pytest.raises(TypeError, match="UCAG objects"):
        maps_together([GradCAM(lite0)], x, targets)
