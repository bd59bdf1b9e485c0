"""Tests of lib.config and lib.data: folders, boxes through preprocessing, bad inputs, photos, composites."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib import config
from lib.data import (
    Batch,
    ChecksumError,
    CompositeDataset,
    DataDirError,
    DataFormatError,
    ImageFolder,
    ImageReadError,
    Photo,
    PhotoDataset,
    collate_samples,
    load_rgb,
    make_composite,
    open_dataset,
    packaged_photos,
    seeded_subset,
    verify_checksums,
)
from lib.transforms import Preprocess

PRE = Preprocess(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


# ----------------------------------------------------------------------------- helpers


def write_folder(root: Path, images: dict[str, Image.Image], labels: dict[str, int], boxes=()) -> Path:
    """A sample-layout folder: images/, labels.csv and (when ``boxes``) boxes.csv."""
    (root / "images").mkdir(parents=True)
    for name, image in images.items():
        image.save(root / "images" / name)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label"])
        writer.writerows(labels.items())
    if boxes:
        with open(root / "boxes.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "label", "x0", "y0", "x1", "y1"])
            writer.writerows(boxes)
    return root


def rectangle_image(size=(400, 200), box=(100, 50, 300, 150), fg=RED, bg=BLUE) -> Image.Image:
    """A ``bg`` image with a ``fg`` rectangle covering pixels ``box`` (xyxy, pixel edges)."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:] = bg
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = fg
    return Image.fromarray(array)


def colour_extent(image: torch.Tensor, colour) -> list[int]:
    """xyxy pixel-edge extent of the pixels of ``image`` ([3, H, W] in [0, 1]) close to ``colour``."""
    target = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
    mask = ((image - target).abs().amax(0) < 0.1).nonzero()
    ys, xs = mask[:, 0], mask[:, 1]
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def real_val_dir() -> Path:
    root = config.data_dir() / "imagenet-val-1300"
    if not (root / "boxes.csv").is_file():
        pytest.skip(f"validation sample not found at {root}")
    return root


# ----------------------------------------------------------------------------- config


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(config.DATA_DIR_ENV, raising=False)
    shared = config.repo_root().parent / "shared" / "data"
    expected_default = shared if shared.is_dir() else config.repo_root() / "local-data"
    assert config.data_dir() == expected_default
    assert (config.repo_root() / "pyproject.toml").is_file()
    monkeypatch.setenv(config.DATA_DIR_ENV, str(tmp_path / "env"))
    assert config.data_dir() == tmp_path / "env"
    assert config.data_dir("") == tmp_path / "env"
    assert config.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert config.data_dir("local-data") == config.repo_root() / "local-data"  # relative: to the repo


def test_split_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_DIR_ENV, str(tmp_path))
    assert config.split_dir("imagenet-val-1300") == tmp_path / "imagenet-val-1300"
    assert config.split_dir("x", data_dir=tmp_path / "other") == tmp_path / "other" / "x"
    folder = tmp_path / "mine"
    folder.mkdir()
    assert config.split_dir(str(folder)) == folder
    monkeypatch.chdir(tmp_path)
    assert config.split_dir("mine") == Path("mine")  # an existing relative folder is used as is


def test_resolve_device():
    assert config.resolve_device("cpu") == torch.device("cpu")
    assert config.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="auto"):
        config.resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: auto"):
            config.resolve_device("cuda")


# ----------------------------------------------------------------------------- boxes


def test_box_transform_by_hand():
    # 400x200: shorter side 200 -> 256, scale 1.28, resized 512x256, crop offset (144, 16).
    assert PRE.resized_size(400, 200) == (512, 256)
    assert PRE.crop_offset(400, 200) == (144.0, 16.0)
    boxes = torch.tensor([
        [150.0, 20.0, 250.0, 180.0],  # inside the crop
        [100.0, 50.0, 300.0, 150.0],  # wider than the crop: clipped left and right
        [0.0, 0.0, 400.0, 200.0],  # the whole image
        [0.0, 0.0, 50.0, 50.0],  # entirely left of the crop: zero area
    ])
    out = PRE.transform_boxes(boxes, 400, 200)
    expected = torch.tensor([
        [150 * 1.28 - 144, 20 * 1.28 - 16, 250 * 1.28 - 144, 180 * 1.28 - 16],
        [0.0, 50 * 1.28 - 16, 224.0, 150 * 1.28 - 16],
        [0.0, 0.0, 224.0, 224.0],
        [0.0, 0.0, 0.0, 50 * 1.28 - 16],
    ])
    torch.testing.assert_close(out, expected)


def test_boxes_follow_pixels_through_folder(tmp_path):
    box = (150, 20, 250, 180)
    root = write_folder(
        tmp_path / "f",
        {"a.png": rectangle_image(box=box), "b.png": rectangle_image((120, 300), (10, 10, 60, 90))},
        {"a.png": 3, "b.png": 999},
        boxes=[("a.png", 3, *box), ("a.png", 7, 0, 0, 400, 200)],
    )
    data = ImageFolder(root, PRE)
    assert data.ids == ["a.png", "b.png"] and data.labels == {"a.png": 3, "b.png": 999}
    sample = data[0]
    assert sample.image.shape == (3, 224, 224) and sample.image.dtype == torch.float32
    assert 0.0 <= float(sample.image.min()) and float(sample.image.max()) <= 1.0
    torch.testing.assert_close(sample.boxes[0], torch.tensor([48.0, 9.6, 176.0, 214.4]))
    torch.testing.assert_close(sample.boxes[1], torch.tensor([0.0, 0.0, 224.0, 224.0]))
    assert sample.box_labels.tolist() == [3, 7] and sample.box_labels.dtype == torch.long
    extent = torch.tensor(colour_extent(sample.image, RED), dtype=torch.float32)
    assert (extent - sample.boxes[0]).abs().max() <= 1.0  # the red rectangle is where its box says
    no_boxes = data[1]
    assert no_boxes.boxes.shape == (0, 4) and no_boxes.box_labels.shape == (0,)

    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2, collate_fn=collate_samples)))
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.images.shape == (2, 3, 224, 224) and batch.labels.tolist() == [3, 999]
    assert [b.shape[0] for b in batch.boxes] == [2, 0] and batch.image_ids == ["a.png", "b.png"]


def test_boxes_follow_real_sample_images():
    root = real_val_dir()
    with open(root / "boxes.csv", newline="") as f:
        rows = [row for _, row in zip(range(3), csv.DictReader(f))]
    ids = sorted({row["image"] for row in rows})
    data = ImageFolder(root, PRE, ids=ids)
    samples = {data.ids[i]: data[i] for i in range(len(data))}
    for row in rows:
        width, height = Image.open(root / "images" / row["image"]).size
        box = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
        # The stored box is the original box scaled to the stored image (227x227).
        orig = [float(row[k]) for k in ("orig_x0", "orig_y0", "orig_x1", "orig_y1")]
        sx, sy = width / float(row["orig_w"]), height / float(row["orig_h"])
        assert np.allclose(box, [orig[0] * sx, orig[1] * sy, orig[2] * sx, orig[3] * sy], atol=0.06)
        # Through the preprocessing: resize to 256 (both sides: 227x227 is square), crop offset 16.
        rw, rh = PRE.resized_size(width, height)
        ox, oy = (rw - 224) // 2, (rh - 224) // 2
        expected = torch.tensor([
            box[0] * rw / width - ox, box[1] * rh / height - oy, box[2] * rw / width - ox, box[3] * rh / height - oy,
        ]).clamp(0, 224)
        sample = samples[row["image"]]
        assert sample.label == int(row["label"])
        assert any(torch.allclose(b, expected, atol=1e-4) for b in sample.boxes), (row, sample.boxes)


# ----------------------------------------------------------------------------- image reading


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "P-transparent", "1", "I;16", "CMYK"])
def test_non_rgb_images_are_converted(tmp_path, mode, caplog):
    base = rectangle_image((40, 30), (10, 5, 30, 25), fg=(200, 200, 200), bg=(60, 60, 60))
    if mode == "I;16":
        image = Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257))
    elif mode == "P-transparent":
        image = base.convert("P")
    else:
        image = base.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path, **({"transparency": 0} if mode == "P-transparent" else {}))
    with caplog.at_level(logging.INFO, logger="lib.data"):
        out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (40, 30)
    assert any("to RGB" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    if mode in {"L", "LA", "I;16"}:
        assert np.abs(np.asarray(out).astype(int)[20, 20] - 200).max() <= 1
        assert np.abs(np.asarray(out).astype(int)[0, 0] - 60).max() <= 1


def test_transparent_pixels_become_white(tmp_path):
    array = np.zeros((10, 10, 4), np.uint8)
    array[..., 0] = 255
    array[:, 5:, 3] = 255  # left half transparent, right half opaque red
    Image.fromarray(array, "RGBA").save(tmp_path / "t.png")
    out = np.asarray(load_rgb(tmp_path / "t.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 9].tolist() == [255, 0, 0]


def test_truncated_jpeg_raises_naming_the_file(tmp_path):
    rectangle_image().save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg") as err:
        load_rgb(tmp_path / "cut.jpg")
    assert "truncated" in str(err.value) and "labels.csv" in str(err.value)
    assert isinstance(err.value, ValueError)
    # Through a folder: the error comes when the image is read, still naming the file.
    root = write_folder(tmp_path / "f", {"ok.png": rectangle_image()}, {"ok.png": 1, "cut.jpg": 2})
    (root / "images" / "cut.jpg").write_bytes(data[: len(data) // 2])
    folder = ImageFolder(root, PRE)
    with pytest.raises(ImageReadError, match="cut.jpg"):
        folder[folder.ids.index("cut.jpg")]


def test_non_image_and_missing_files_raise(tmp_path):
    (tmp_path / "notes.JPEG").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.JPEG"):
        load_rgb(tmp_path / "notes.JPEG")
    with pytest.raises(ImageReadError, match="nothing.png"):
        load_rgb(tmp_path / "nothing.png")


# ----------------------------------------------------------------------------- folder errors


def test_missing_root_names_the_fix(tmp_path):
    with pytest.raises(DataDirError) as err:
        ImageFolder(tmp_path / "nowhere", PRE)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "nowhere") in message and "CAM_DATA_DIR" in message and "data_dir" in message


def test_empty_folder_without_labels_or_wnids(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataDirError, match="labels.csv"):
        ImageFolder(tmp_path, PRE)


@pytest.mark.parametrize("label", ["1000", "-1", "3.5", "cat", ""])
def test_bad_label_names_the_row(tmp_path, label):
    root = write_folder(tmp_path / "f", {"a.png": rectangle_image(), "b.png": rectangle_image()}, {"a.png": 1})
    with open(root / "labels.csv", "a") as f:
        f.write(f"b.png,{label}\n")
    with pytest.raises(DataFormatError, match=r"line 3 \(b.png\)"):
        ImageFolder(root, PRE)


def test_bad_boxes_csv(tmp_path):
    root = write_folder(tmp_path / "f", {"a.png": rectangle_image()}, {"a.png": 1}, boxes=[("a.png", 1, 50, 0, 10, 10)])
    with pytest.raises(DataFormatError, match="x1 < x0"):
        ImageFolder(root, PRE)
    (root / "boxes.csv").write_text("image,label,x0,y0\na.png,1,0,0\n")
    with pytest.raises(DataFormatError, match="x1"):
        ImageFolder(root, PRE)


def test_missing_images_listed_at_construction(tmp_path):
    labels = {f"img{i}.png": i for i in range(8)}
    root = write_folder(tmp_path / "f", {"img0.png": rectangle_image()}, labels)
    with pytest.raises(DataDirError) as err:
        ImageFolder(root, PRE)
    message = str(err.value)
    assert "7 image(s)" in message and "img1.png" in message and "and 2 more" in message
    assert "img7.png" not in message  # up to five names
    assert ImageFolder(root, PRE, ids=["img0.png"]).ids == ["img0.png"]  # a subset on disk is fine


def test_ids_subset_order_and_unknown_ids(tmp_path):
    names = {f"{c}.png": rectangle_image((20, 20), (0, 0, 5, 5)) for c in "abcd"}
    root = write_folder(tmp_path / "f", names, {n: i for i, n in enumerate(names)})
    data = ImageFolder(root, PRE, ids=["c.png", "a.png"])
    assert data.ids == ["c.png", "a.png"] and len(data) == 2
    assert data.labels == {"c.png": 2, "a.png": 0} and data[0].image_id == "c.png" and data[0].label == 2
    with pytest.raises(DataDirError, match="zzz.png"):
        ImageFolder(root, PRE, ids=["a.png", "zzz.png"])


def test_wnid_folder_layout(tmp_path):
    rng = np.random.default_rng(0)
    wnids = sorted({f"n{v:08d}" for v in rng.choice(10**8, size=1000, replace=False)})
    root = tmp_path / "val"
    for wnid in wnids:
        (root / wnid).mkdir(parents=True)
    rectangle_image((30, 20), (0, 0, 5, 5)).save(root / wnids[7] / "ILSVRC2012_val_00000002.JPEG")
    rectangle_image((30, 20), (0, 0, 5, 5)).save(root / wnids[999] / "ILSVRC2012_val_00000001.JPEG")
    (root / wnids[7] / "readme.txt").write_text("not an image")
    data = ImageFolder(root, PRE)
    assert data.layout == "wnid" and data.classes == wnids
    assert data.ids == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    assert data.labels == {"ILSVRC2012_val_00000001.JPEG": 999, "ILSVRC2012_val_00000002.JPEG": 7}
    sample = data[1]
    assert sample.label == 7 and sample.image.shape == (3, 224, 224) and sample.boxes.shape == (0, 4)

    (root / wnids[0]).rmdir()
    with pytest.raises(DataDirError, match="999 class folders"):
        ImageFolder(root, PRE)
    (root / wnids[0]).mkdir()
    (root / "extras").mkdir()
    with pytest.raises(DataDirError, match="extras"):
        ImageFolder(root, PRE)


# ----------------------------------------------------------------------------- subsets, checksums


def test_seeded_subset():
    ids = [f"img{i:04d}" for i in range(500)]
    shuffled = list(reversed(ids))
    a = seeded_subset(ids, 50, seed=0)
    assert a == seeded_subset(shuffled, 50, seed=0)  # independent of the input order
    assert len(a) == len(set(a)) == 50 and set(a) <= set(ids)
    perm = np.random.default_rng(0).permutation(500)
    assert a == [ids[i] for i in perm[:50]]
    assert seeded_subset(ids, 20, seed=0) == a[:20]  # prefix property
    assert seeded_subset(ids, 50, seed=1) != a
    assert seeded_subset(shuffled, 0, seed=0) == ids
    assert seeded_subset(shuffled, 500, seed=3) == ids and seeded_subset(shuffled, 10**6, seed=3) == ids


def _write_sums(root: Path, names: list[str]) -> None:
    lines = [f"{hashlib.sha256((root / n).read_bytes()).hexdigest()}  ./{n}" for n in names]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_checksums(tmp_path, caplog):
    names = ["labels.csv", "images/a.png", "images/b.png"]
    root = write_folder(tmp_path / "f", {"a.png": rectangle_image(), "b.png": rectangle_image(fg=GREEN)},
                        {"a.png": 1, "b.png": 2})
    with caplog.at_level(logging.WARNING, logger="lib.data"):
        assert verify_checksums(root) == 0
    assert "SHA256SUMS" in caplog.text
    _write_sums(root, names)
    assert verify_checksums(root) == 3
    assert verify_checksums(root, names=["images/b.png"]) == 1
    assert verify_checksums(root, names=["./images/a.png", "labels.csv"]) == 2

    rectangle_image(fg=BLUE).save(root / "images" / "b.png")  # tampered
    with pytest.raises(ChecksumError, match="images/b.png") as err:
        verify_checksums(root)
    assert "a.png" not in str(err.value) and "sha256sum -c" in str(err.value)
    assert verify_checksums(root, names=["images/a.png"]) == 1
    (root / "images" / "a.png").unlink()
    with pytest.raises(ChecksumError, match=r"missing: images/a.png"):
        verify_checksums(root)


def test_checksums_of_real_sample_files():
    root = real_val_dir()
    with open(root / "labels.csv", newline="") as f:
        names = [f"images/{row['image']}" for _, row in zip(range(3), csv.DictReader(f))]
    assert verify_checksums(root, names=names) == 3


# ----------------------------------------------------------------------------- photos, composites


def test_packaged_photos():
    photos = packaged_photos()
    expected = {"chelsea": 281, "coffee": 967, "rocket": 657, "motorcycle_left": 665, "motorcycle_right": 665,
                "grace_hopper": 652, "china": 698}
    assert {p.name: p.label for p in photos} == expected
    for photo in photos:
        assert photo.image.mode == "RGB" and min(photo.image.size) >= 256 and photo.label in photo.acceptable_labels
    assert {281, 282, 285} <= set(photos[0].acceptable_labels)
    data = PhotoDataset(PRE)
    assert data.ids == list(expected)
    sample = data[0]
    assert sample.image.shape == (3, 224, 224) and sample.label == 281
    # The whole-photo box covers the whole crop (the crop lies inside the photo).
    torch.testing.assert_close(sample.boxes, torch.tensor([[0.0, 0.0, 224.0, 224.0]]))
    assert sample.box_labels.tolist() == [281]


def test_composite_boxes_are_the_tiles():
    wide = Photo("wide", Image.new("RGB", (200, 100), RED), 1)
    tall = (Image.new("RGB", (100, 200), GREEN), 2)
    comp = make_composite(wide, tall, size=448, background=0.5)
    assert comp.image.size == (448, 448) and comp.labels == (1, 2)
    # Tiles 224x224 at y 112..336; wide -> 224x112 centred in the left tile, tall -> 112x224 in the right.
    torch.testing.assert_close(comp.boxes, torch.tensor([[0.0, 168.0, 224.0, 280.0], [280.0, 112.0, 392.0, 336.0]]))
    pixels = np.asarray(comp.image)
    assert pixels[168:280, 0:224].reshape(-1, 3).tolist() == [list(RED)] * (112 * 224)
    assert pixels[112:336, 280:392].reshape(-1, 3).tolist() == [list(GREEN)] * (224 * 112)
    grey = np.ones(pixels.shape[:2], bool)
    for x0, y0, x1, y1 in comp.boxes.int().tolist():
        grey[y0:y1, x0:x1] = False
    assert (pixels[grey] == 128).all()

    data = CompositeDataset(PRE, [(wide, tall), (tall, wide)])
    assert data.ids == ["wide+class2", "class2+wide"] and len(data) == 2
    assert CompositeDataset(PRE, [(wide, tall)] * 2).ids == ["wide+class2#0", "wide+class2#1"]
    sample = data[0]
    # 448 -> 256 (scale 4/7), crop offset 16.
    s = 256 / 448
    expected = torch.tensor([[0.0, 168 * s - 16, 224 * s - 16, 280 * s - 16],
                             [280 * s - 16, 112 * s - 16, 392 * s - 16, 336 * s - 16]])
    torch.testing.assert_close(sample.boxes, expected)
    assert sample.label == 1 and sample.box_labels.tolist() == [1, 2]
    for box, colour in zip(sample.boxes, (RED, GREEN)):
        extent = torch.tensor(colour_extent(sample.image, colour), dtype=torch.float32)
        assert (extent - box).abs().max() <= 1.0
    batch = collate_samples([data[0], data[1]])
    assert batch.labels.tolist() == [1, 2] and [b.tolist() for b in batch.box_labels] == [[1, 2], [2, 1]]


def test_composite_of_packaged_photos():
    chelsea, coffee = packaged_photos(["chelsea", "coffee"])
    comp = make_composite(chelsea, coffee)
    # chelsea 451x300 -> 224x149 centred in the left tile; coffee 600x400 -> 224x149.
    torch.testing.assert_close(comp.boxes, torch.tensor([[0.0, 149.0, 224.0, 298.0], [224.0, 149.0, 448.0, 298.0]]))
    assert comp.name == "chelsea+coffee" and comp.labels == (281, 967)
    with pytest.raises(ValueError, match="background"):
        make_composite(chelsea, coffee, background=2.0)


# ----------------------------------------------------------------------------- open_dataset


def test_open_dataset_falls_back_to_photos(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(config.DATA_DIR_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="lib.data"):
        data = open_dataset(PRE, "imagenet-val-1300", data_dir=tmp_path / "absent")
    assert isinstance(data, PhotoDataset) and len(data) == 7
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(tmp_path / "absent" / "imagenet-val-1300") in message and "CAM_DATA_DIR" in message
    assert "packaged" in message


def test_open_dataset_reads_an_existing_folder(tmp_path, monkeypatch):
    write_folder(tmp_path / "split", {"a.png": rectangle_image()}, {"a.png": 5})
    monkeypatch.setenv(config.DATA_DIR_ENV, str(tmp_path))
    data = open_dataset(PRE, "split")
    assert isinstance(data, ImageFolder) and data.ids == ["a.png"] and data[0].label == 5
