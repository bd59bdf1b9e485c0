"""Model registry: real Lite0 accuracy, offline errors, default layers of every backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lib.models import MODELS, WeightsMissingError, available_models, categories, load_model


def test_categories_offline():
    names = categories()
    assert len(names) == 1000 and names[967] == "espresso" and names[281] == "tabby"


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown model 'resnet5'.*resnet50"):
        load_model("resnet5")


def test_lite0_names_coffee_espresso():
    from PIL import Image
    from skimage import data

    model = load_model("efficientnet_lite0")
    x = model.preprocess(Image.fromarray(data.coffee())).unsqueeze(0)
    with torch.no_grad():
        pred = model(x).argmax(1).item()
    assert model.categories[pred] == "espresso"


def test_lite_head_layer_is_unambiguous():
    model = load_model("efficientnet_lite0")
    calls = []
    handle = model.get_submodule(model.target_layer).register_forward_hook(lambda m, i, o: calls.append(o.shape))
    with torch.no_grad():
        model(torch.rand(1, 3, 224, 224))
    handle.remove()
    assert calls == [torch.Size([1, 1280, 7, 7])]


def test_missing_torchvision_weights_say_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsMissingError) as err:
        load_model("resnet50")
    message = str(err.value)
    assert str(tmp_path / "checkpoints") in message and "resnet50-" in message and "Fix" in message


@pytest.mark.parametrize("name", [n for n in available_models() if not n.startswith("efficientnet")])
def test_torchvision_default_layers_resolve_with_random_weights(name):
    model = load_model(name, weights=None)
    layer = model.get_submodule(model.target_layer)
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.ndim))
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 224, 224))
    handle.remove()
    assert logits.shape == (1, 1000) and seen == [4]
    assert name in MODELS


@pytest.mark.slow
def test_lite0_top1_on_validation_sample():
    from lib.config import data_dir
    from lib.data import ImageFolder, collate_samples

    root = data_dir() / "imagenet-val-1300"
    if not root.exists():
        pytest.skip(f"validation sample not found at {root}")
    model = load_model("efficientnet_lite0")
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    dataset = ImageFolder(root, model.preprocess)
    loader = torch.utils.data.DataLoader(dataset, batch_size=100, collate_fn=collate_samples, num_workers=2)
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            correct += int((model(batch.images).argmax(1) == batch.labels).sum())
            total += len(batch.labels)
    assert total == 1300
    assert correct / total >= 0.81, f"top-1 {correct / total:.4f}"
