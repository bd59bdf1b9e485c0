"""L-CAM: attention, both training architectures, the loss of Eq. 6-8, inference (Eq. 9), training and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lib.cams import OriginalCAM
from lib.cams.lcam import (
    LCAM,
    LCAMAttention,
    check_gap_linear_head,
    gap_linear_logits,
    lcam_fm_logits,
    lcam_img_logits,
)
from lib.data import DataDirError, ImageFolder
from lib.maps import minmax_normalize, upsample
from lib.models import Classifier
from lib.train_lcam import (
    LCAMConfig,
    area_loss,
    lcam_backward,
    lcam_loss,
    lcam_step,
    load_lcam,
    loss_maps,
    main,
    make_attention,
    train_lcam,
    tv_loss,
)
from lib.transforms import Preprocess

W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
B = torch.tensor([0.1, 0.2, 0.3])


def tiny_model(head: str = "gap") -> Classifier:
    """conv 1x1 (channel 0 = R, channel 1 = G of the normalised image) -> 2x2 average pool -> 'act'
    (identity: the L-CAM target layer, A = [N, 2, H/2, W/2]) -> GAP -> linear (W, B) to 3 classes.

    Preprocess: resize 6, crop 4, normalisation ``(x - 0.5) / 0.5``.  ``head="mlp"`` puts two
    linear layers after the pooling (not a GAP + linear head).
    """
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 1] = 1.0
    net = nn.Sequential()
    net.add_module("conv", conv)
    net.add_module("down", nn.AvgPool2d(2))
    net.add_module("act", nn.Identity())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    if head == "mlp":
        net.add_module("fc1", nn.Linear(2, 4))
        net.add_module("relu", nn.ReLU())
        net.add_module("fc", nn.Linear(4, 3))
    else:
        fc = nn.Linear(2, 3)
        with torch.no_grad():
            fc.weight.copy_(W)
            fc.bias.copy_(B)
        net.add_module("fc", fc)
    pre = Preprocess(6, 4, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Classifier("tiny", net, pre, "net.act", ["a", "b", "c"]).eval().requires_grad_(False)


def tiny_image() -> torch.Tensor:
    """4x4: R = 1 everywhere (normalised 1); G = 1 on the top half, 0.5 below (normalised 1, 0).

    Features A (2x2): A0 = 1 everywhere, A1 = [[1, 1], [0, 0]].
    """
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = 1.0
    x[0, 1, :2] = 1.0
    x[0, 1, 2:] = 0.5
    return x


# --- the loss (Eq. 6-8) -----------------------------------------------------------------------------

def _tv_by_loops(m: np.ndarray) -> float:
    """Eq. 8 + the authors' border term, cell by cell, for maps [B, J, P, Q]; divided by 2 B."""
    total = 0.0
    b, j, p, q = m.shape
    for i in range(b):
        for k in range(j):
            s = m[i, k]
            for r in range(p):
                for c in range(q):
                    if r + 1 < p:
                        total += (s[r + 1, c] - s[r, c]) ** 2
                    if c + 1 < q:
                        total += (s[r, c + 1] - s[r, c]) ** 2
                    on_lines = (r == 0) + (r == p - 1) + (c == 0) + (c == q - 1)  # corners: 2 lines
                    total += 0.3 * on_lines * s[r, c] ** 2
    return total / (2 * b)


def test_tv_by_hand_on_a_2x2_map():
    m = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])  # B = 2 maps
    # differences: map 1 has one jump of 1 down and one across; map 2 none -> 2.
    # border: every cell of a 2x2 map is a corner (two lines): 2 * (0 + 1 + 1 + 1) + 2 * 4 * 0.25 = 8.
    expected = (2 + 0.3 * 8) / (2 * 2)
    torch.testing.assert_close(tv_loss(m), torch.tensor(expected))


def test_tv_matches_cell_by_cell_loops_on_4d_maps():
    m = torch.rand(3, 2, 4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tv_loss(m), torch.tensor(_tv_by_loops(m.numpy()), dtype=torch.float32))
    # [B, P, Q] is read as one map per image
    torch.testing.assert_close(tv_loss(m[:, 0]), tv_loss(m[:, :1]))


def test_area_ce_and_total_by_hand():
    maps = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    logits = torch.tensor([[2.0, 0.0, 1.0]])
    terms = lcam_loss(logits, torch.tensor([0]), maps)
    ce = -np.log(np.exp(2.0) / (np.exp(2.0) + 1 + np.exp(1.0)))
    area = (0.0005**0.3 + 3 * 1.0005**0.3) / 4
    tv = (1 + 1 + 0.3 * 2 * 3) / 2  # jumps 0->1 down and across; corners on 2 lines each
    torch.testing.assert_close(terms["ce"], torch.tensor(ce, dtype=torch.float32))
    torch.testing.assert_close(terms["area"], torch.tensor(area, dtype=torch.float32))
    torch.testing.assert_close(area_loss(maps), terms["area"])
    torch.testing.assert_close(terms["tv"], torch.tensor(tv))
    torch.testing.assert_close(terms["loss"], torch.tensor(1.5 * ce + 2 * area + 0.01 * tv, dtype=torch.float32))
    ce_only = lcam_loss(logits, torch.tensor([0]), maps, ce_only=True)
    torch.testing.assert_close(ce_only["loss"], ce_only["ce"])
    torch.testing.assert_close(ce_only["tv"], terms["tv"])  # still reported


def test_loss_maps_own_and_batch_pairs():
    att = LCAMAttention(4, 5)
    feats = torch.randn(3, 4, 2, 2)
    y = torch.tensor([4, 0, 4])
    every = att(feats)  # sigma(conv(A)) [3, 5, 2, 2]
    own, maps = loss_maps(att, feats, y, "own")
    torch.testing.assert_close(own, every[torch.arange(3), y])
    assert maps.shape == (3, 1, 2, 2)
    own_b, pairs = loss_maps(att, feats, y, "batch")
    assert pairs.shape == (3, 3, 2, 2)
    torch.testing.assert_close(pairs, every[:, y])  # the authors' a[:, labels]: image i x label y_j
    torch.testing.assert_close(own_b, own)  # the diagonal


# --- attention and the two training architectures ---------------------------------------------------

def test_class_logits_are_rows_of_the_convolution():
    att = LCAMAttention(4, 6)
    feats = torch.randn(2, 4, 3, 3)
    ids = torch.tensor([[5, 1], [0, 0]])
    full = att.logits(feats)
    expected = torch.stack([full[0, [5, 1]], full[1, [0, 0]]])
    torch.testing.assert_close(att.class_logits(feats, ids), expected)
    torch.testing.assert_close(att.class_logits(feats, torch.tensor([5, 1])), full[:, [5, 1]])
    torch.testing.assert_close(att(feats), torch.sigmoid(full))


def test_cam_initialisation_copies_the_linear_layer():
    model = tiny_model()
    att = LCAMAttention.from_classifier(model)
    torch.testing.assert_close(att.conv.weight[:, :, 0, 0], W)
    torch.testing.assert_close(att.conv.bias, B)


def test_img_variant_masks_the_01_image_then_normalises():
    model, x = tiny_model(), tiny_image()
    x[0, 1] = 0.5  # G normalises to 0
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    # bilinear 2x2 -> 4x4 (align_corners=False): columns 1, 0.75, 0.25, 0
    up = torch.tensor([1.0, 0.75, 0.25, 0.0]).expand(4, 4)
    torch.testing.assert_close(upsample(mask, (4, 4))[0], up)
    # masked R = up -> normalised 2 up - 1 (mean 0); masked G = up / 2 -> up - 1 (mean -0.5)
    expected = W @ torch.tensor([0.0, -0.5]) + B
    torch.testing.assert_close(lcam_img_logits(model, x, mask)[0], expected)
    # (normalising first and masking after would give a mean of 0.5 for R: different logits)


def test_fm_variant_multiplies_the_feature_maps_before_the_head():
    model, x = tiny_model(), tiny_image()
    mask = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    # A0 = 1s, A1 = [[1, 1], [0, 0]] -> mean(A0 M) = 0.5, mean(A1 M) = 0.25
    expected = W @ torch.tensor([0.5, 0.25]) + B
    torch.testing.assert_close(lcam_fm_logits(model, x, mask)[0], expected)
    assert not model.net.act._forward_hooks  # hook removed
    feats = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]]])
    torch.testing.assert_close(gap_linear_logits(feats, mask, model.net.fc)[0], expected)


def test_fm_closed_form_equals_the_hook_on_random_inputs():
    model = tiny_model()
    x = torch.rand(3, 3, 4, 4)
    mask = torch.rand(3, 2, 2)
    feats = model.net.act(model.net.down(model.net.conv(model.normalize(x))))
    torch.testing.assert_close(gap_linear_logits(feats, mask, model.net.fc), lcam_fm_logits(model, x, mask))


# --- inference (Eq. 9) ------------------------------------------------------------------------------

def _count_forwards(model):
    calls = []
    handle = model.net.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_inference_by_hand_and_one_forward_pass():
    model, x = tiny_model(), tiny_image()
    cam = LCAM(model, LCAMAttention.from_classifier(model))
    assert cam.forward_passes == 1
    calls, handle = _count_forwards(model)
    try:
        maps = cam(x, targets=2)
    finally:
        handle.remove()
    assert len(calls) == 1
    # L_2 = A0 - A1 + 0.3 = [[0.3, 0.3], [1.3, 1.3]] -> min-max [[0, 0], [1, 1]] -> rows 0, .25, .75, 1
    expected = torch.tensor([0.0, 0.25, 0.75, 1.0])[:, None].expand(4, 4)
    torch.testing.assert_close(maps[0], expected)
    raw = cam(x, targets=2, size=None)
    torch.testing.assert_close(raw[0], torch.tensor([[0.3, 0.3], [1.3, 1.3]]))
    # predicted class: logits W [1, 0.5] + B = [1.1, 0.7, 0.8] -> 0, whose map is constant -> zeros
    assert cam(x).abs().max() == 0


def test_inference_equals_rows_of_the_attention_after_minmax_and_upsample():
    model = tiny_model()
    torch.manual_seed(0)
    att = LCAMAttention(2, 3)
    x = torch.rand(2, 3, 8, 8)
    feats = model.net.act(model.net.down(model.net.conv(model.normalize(x))))  # [2, 2, 4, 4]
    logits = model(x)
    top2 = logits.topk(2, 1).indices
    calls, handle = _count_forwards(model)
    try:
        plain = LCAM(model, att)(x, "top2")
        squashed = LCAM(model, att, sigmoid=True)(x, "top2")
    finally:
        handle.remove()
    assert len(calls) == 2  # one per call, whatever the number of targets
    with torch.no_grad():
        rows = att.logits(feats)[torch.arange(2)[:, None], top2]  # [2, 2, 4, 4]
        torch.testing.assert_close(plain, upsample(minmax_normalize(rows), (8, 8)))
        torch.testing.assert_close(squashed, upsample(minmax_normalize(torch.sigmoid(rows)), (8, 8)))
    assert not any(m._forward_hooks for m in model.modules())


def test_cam_initialised_lcam_on_lite0_is_cam(lite0, photos):
    att = LCAMAttention.from_classifier(lite0)
    lcam = LCAM(lite0, att)
    raw = lcam(photos, "predicted", size=None)  # W_c . A + b_c, [N, 7, 7]
    cam_raw = OriginalCAM(lite0)(photos, "predicted", size=None)  # ReLU(W_c . A)
    bias = lite0.net.fc.bias[lite0(photos).argmax(1)]
    # L - b_c is CAM's map before its ReLU: where CAM is positive the two rank cells identically,
    # and min-max (shift invariant) makes the untrained L-CAM map CAM's un-ReLU'd map exactly.
    torch.testing.assert_close(torch.relu(raw - bias[:, None, None]), cam_raw, atol=1e-4, rtol=1e-4)
    assert (cam_raw > 0).float().mean() > 0.1
    maps = lcam(photos)
    assert maps.shape == (4, 224, 224) and maps.amin() >= 0 and maps.amax() <= 1
    assert not lite0.training and not any(p.requires_grad for p in lite0.parameters())


# --- bad input --------------------------------------------------------------------------------------

def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        LCAMConfig(model="tiny", variant="pixels")
    with pytest.raises(ValueError, match="init"):
        LCAMConfig(model="tiny", init="zeros")
    with pytest.raises(ValueError, match="init='random'"):
        LCAMAttention.from_classifier(tiny_model("mlp"))
    with pytest.raises(ValueError, match="--init random"):
        check_gap_linear_head(tiny_model("mlp"))
    with pytest.raises(ValueError, match=r"\[N, 5, P, Q\]"):
        LCAM(tiny_model(), LCAMAttention(5, 3))(tiny_image())
    with pytest.raises(TypeError, match="LCAMAttention"):
        LCAM(tiny_model(), nn.Conv2d(2, 3, 1))
    with pytest.raises(FileNotFoundError, match="python -m lib.train_lcam"):
        load_lcam(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="config.model"):
        train_lcam(tiny_model(), None, LCAMConfig(model="efficientnet_lite0"))


def test_cli_names_a_missing_data_folder(tmp_path):
    with pytest.raises(DataDirError, match="Data folder not found"):
        main(["--train-dir", str(tmp_path / "nowhere"), "--device", "cpu", "--out", str(tmp_path / "x.pt")])


# --- training, checkpoints, resume -------------------------------------------------------------------

def _folder(root, n=6, size=(8, 6)) -> ImageFolder:
    """``n`` random RGB PNGs (``size`` = width, height) in the labels.csv layout."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = ["image,label"]
    for i in range(n):
        array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(array).save(root / "images" / f"im{i}.png")
        rows.append(f"im{i}.png,{i % 3}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return ImageFolder(root, Preprocess(6, 4, (0.5,) * 3, (0.5,) * 3))


def _weights(att):
    return {k: v.clone() for k, v in att.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("variant,loss_maps_mode", [("img", "batch"), ("fm", "own")])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, variant, loss_maps_mode):
    model, data = tiny_model(), _folder(tmp_path / "train")
    config = LCAMConfig(model="tiny", variant=variant, epochs=2, batch_size=4, lr=0.5, init="random", seed=3,
                        loss_maps=loss_maps_mode)
    straight, history = train_lcam(model, data, config, out=tmp_path / "a.pt", progress=False)
    assert (tmp_path / "a.pt").exists() and not (tmp_path / "a.pt.partial").exists()
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["lr"] == pytest.approx(0.5 * 0.95)

    _, first = train_lcam(model, data, config, out=tmp_path / "b.pt", progress=False, until_epoch=1)
    assert (tmp_path / "b.pt.partial").exists() and not (tmp_path / "b.pt").exists()
    assert len(first) == 1
    resumed, history_b = train_lcam(model, data, config, out=tmp_path / "b.pt", progress=False)
    assert _same(_weights(straight), _weights(resumed))
    assert _strip(history) == _strip(history_b)
    assert not (tmp_path / "b.pt.partial").exists()

    fresh = _weights(make_attention(model, config))
    assert not _same(fresh, _weights(straight))  # it trained
    again, _ = train_lcam(model, data, config, progress=False)  # same seed, no checkpoint
    assert _same(_weights(again), _weights(straight))

    loaded, state = load_lcam(tmp_path / "a.pt")
    assert _same(_weights(loaded), _weights(straight))
    assert state["method"] == ("L-CAM-Img" if variant == "img" else "L-CAM-Fm")
    assert state["history"] == history and state["epoch"] == 2

    # the classifier was left as found
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_trainer_only_updates_the_attention_and_restores_flags(tmp_path):
    model, data = tiny_model(), _folder(tmp_path / "train", n=4)
    model.train()
    model.net.fc.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = LCAMConfig(model="tiny", epochs=1, batch_size=4, lr=0.5, init="cam")
    train_lcam(model, data, config, progress=False)
    assert model.training and model.net.fc.weight.requires_grad and not model.net.conv.weight.requires_grad
    assert model.net.fc.weight.grad is None
    assert _same(before, model.state_dict())


def test_fm_step_closed_form_equals_hook_path():
    model = tiny_model()
    att = LCAMAttention.from_classifier(model)
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    config = LCAMConfig(model="tiny", variant="fm")
    closed = lcam_step(model, att, x, config, fc=model.net.fc)
    hooked = lcam_step(model, att, x, config, fc=None)
    for key in closed:
        torch.testing.assert_close(closed[key], hooked[key])


def test_a_partial_checkpoint_of_another_configuration_is_ignored(tmp_path, caplog):
    model, data = tiny_model(), _folder(tmp_path / "train", n=4)
    config = LCAMConfig(model="tiny", epochs=2, batch_size=4, init="random")
    train_lcam(model, data, config, out=tmp_path / "c.pt", progress=False, until_epoch=1)
    other = LCAMConfig(model="tiny", epochs=2, batch_size=4, init="random", seed=1)
    with caplog.at_level("WARNING"):
        _, history = train_lcam(model, data, other, out=tmp_path / "c.pt", progress=False)
    assert "another configuration" in caplog.text
    assert len(history) == 2


@pytest.mark.parametrize("variant", ["img", "fm"])
def test_one_training_step_on_lite0(tmp_path, lite0, variant):
    data = _folder(tmp_path / "train", n=2, size=(40, 30))
    data = ImageFolder(data.root, lite0.preprocess)
    config = LCAMConfig(model="efficientnet_lite0", variant=variant, epochs=1, batch_size=2)
    att, history = train_lcam(lite0, data, config, out=tmp_path / "l.pt", progress=False)
    assert all(np.isfinite(history[0][k]) for k in ("loss", "ce", "area", "tv"))
    loaded, state = load_lcam(tmp_path / "l.pt")
    assert state["target_layer"] == "net.head_act" and loaded.channels == 1280
    maps = LCAM(lite0, loaded)(torch.rand(1, 3, 224, 224))
    assert maps.shape == (1, 224, 224)


def test_a_run_killed_after_epoch_one_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import lib.train_lcam as trainer

    model, data = tiny_model(), _folder(tmp_path / "train", n=4)
    config = LCAMConfig(model="tiny", epochs=2, batch_size=2, lr=0.5, init="random", seed=5)
    straight, _ = train_lcam(model, data, config, progress=False)
    original = trainer.atomic_save

    def killed_after_epoch_one(obj, path):
        original(obj, path)
        if obj["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "atomic_save", killed_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train_lcam(model, data, config, out=tmp_path / "k.pt", progress=False)
    monkeypatch.setattr(trainer, "atomic_save", original)
    assert (tmp_path / "k.pt.partial").exists() and not (tmp_path / "k.pt").exists()
    assert not model.training and not any(m._forward_hooks for m in model.modules())
    resumed, history = train_lcam(model, data, config, out=tmp_path / "k.pt", progress=False)
    assert _same(_weights(straight), _weights(resumed)) and [r["epoch"] for r in history] == [1, 2]


@pytest.mark.parametrize("variant,mode,ce_only", [("img", "batch", False), ("img", "own", True), ("fm", "batch", False)])
def test_chunked_backward_equals_the_whole_batch(variant, mode, ce_only):
    model = tiny_model()
    torch.manual_seed(0)
    att = LCAMAttention(2, 3)
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    config = LCAMConfig(model="tiny", variant=variant, loss_maps=mode, ce_only=ce_only)
    terms = lcam_step(model, att, x, config)
    terms["loss"].backward()
    whole = [p.grad.clone() for p in att.parameters()]
    att.zero_grad()
    chunked = lcam_backward(model, att, x, config, chunk=2)
    for key in terms:
        torch.testing.assert_close(chunked[key], terms[key].detach())
    for g, p in zip(whole, att.parameters()):
        torch.testing.assert_close(p.grad, g)
