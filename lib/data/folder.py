"""An ImageNet-style image folder as a torch ``Dataset`` of :class:`Sample`.

Two layouts are read, the same way (``data/README.md``):

1. **sample layout**: ``<root>/labels.csv`` (``image,label``), ``<root>/images/<image>`` and an
   optional ``<root>/boxes.csv`` (``image,label,x0,y0,x1,y1`` in pixels of the stored image);
2. **torchvision layout** (a full ILSVRC2012 folder): ``<root>/<wnid>/<file>``, one folder per
   class; the label is the index of the wnid in the sorted list of the 1000 wnids, which is the
   standard ImageNet-1k order.  An optional ``<root>/boxes.csv`` is read as in (1).

Labels are 0-based ImageNet-1k class indices.  Boxes follow the resize and crop of the
preprocessing (:meth:`lib.transforms.Preprocess.transform_boxes`, with each stored image's size).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import DATA_DIR_ENV, get_logger
from .errors import NUM_CLASSES, DataDirError, DataFormatError, check_label
from .images import load_rgb
from .samples import Batch, Sample, collate_samples, make_sample, seeded_subset

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "DataDirError",
    "DataFormatError",
    "ImageFolder",
    "Sample",
    "collate_samples",
    "read_boxes_csv",
    "read_labels_csv",
    "seeded_subset",
]

log = get_logger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
"""Files of a class folder (torchvision layout) that count as images (case-insensitive)."""

_WNID = re.compile(r"^n\d{8}$")
_BOX_COLUMNS = ("image", "label", "x0", "y0", "x1", "y1")
_SHOW = 5  # names shown in an error message listing many


def _show(names: Sequence[str]) -> str:
    """Up to ``_SHOW`` names, then how many more."""
    shown = ", ".join(map(str, names[:_SHOW]))
    return shown + (f" (and {len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV file that has every ``required`` column, else DataFormatError."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(
                f"{path}: missing column(s) {missing}; the header is {header}. "
                f"The file needs the columns {','.join(required)} (see data/README.md)."
            )
        reader.fieldnames = header
        for line, row in enumerate(reader, start=2):
            yield line, {k: (v or "").strip() for k, v in row.items() if k is not None}


def read_labels_csv(path: str | Path) -> dict[str, int]:
    """``image -> label`` from a ``labels.csv`` (columns ``image,label``; more columns are ignored)."""
    path = Path(path)
    labels: dict[str, int] = {}
    for line, row in _csv_rows(path, ("image", "label")):
        name = row["image"]
        if not name:
            raise DataFormatError(f"{path}, line {line}: empty image name. Fix or remove the row.")
        label = check_label(row["label"], f"{path}, line {line} ({name})")
        if name in labels and labels[name] != label:
            raise DataFormatError(
                f"{path}, line {line}: {name} is listed twice, with labels {labels[name]} and {label}. "
                "Keep one row per image."
            )
        labels[name] = label
    if not labels:
        raise DataFormatError(f"{path} lists no images. Fill it (columns image,label) or point data_dir elsewhere.")
    return labels


def read_boxes_csv(path: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``image -> (boxes [K, 4] float, labels [K] long)`` from a ``boxes.csv``, in stored-image pixels."""
    path = Path(path)
    rows: dict[str, tuple[list[list[float]], list[int]]] = {}
    for line, row in _csv_rows(path, _BOX_COLUMNS):
        where = f"{path}, line {line} ({row['image']})"
        try:
            box = [float(row[c]) for c in ("x0", "y0", "x1", "y1")]
        except ValueError:
            raise DataFormatError(f"{where}: box coordinates must be numbers. Fix or remove the row.") from None
        if not all(math.isfinite(v) for v in box):
            raise DataFormatError(f"{where}: box {box} has a missing or infinite coordinate. Fix or remove the row.")
        if box[2] < box[0] or box[3] < box[1]:
            raise DataFormatError(f"{where}: box {box} has x1 < x0 or y1 < y0 (columns x0,y0,x1,y1). Fix the row.")
        boxes, labels = rows.setdefault(row["image"], ([], []))
        boxes.append(box)
        labels.append(check_label(row["label"], where))
    return {
        name: (torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels, dtype=torch.long))
        for name, (boxes, labels) in rows.items()
    }


def _missing_root_message(root: Path) -> str:
    env = os.environ.get(DATA_DIR_ENV, "")
    return (
        f"Data folder not found: {root}. Point the configuration at the folder that holds it: the config "
        f"key data_dir (config/config.yaml, or snakemake --config data_dir=...), or the environment variable "
        f"{DATA_DIR_ENV} (now {env!r}); or copy the data there. See data/README.md."
    )


def _scan_class_folders(root: Path) -> tuple[list[str], dict[str, int], dict[str, Path]]:
    """Class folders (sorted wnids), ``image -> label`` and ``image -> path`` of a torchvision layout."""
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    wnids = [f for f in folders if _WNID.match(f)]
    if not wnids:
        flat = any(e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in os.scandir(root))
        hint = (
            " Its images lie directly in it: sort a flat ILSVRC2012 val folder into class folders with "
            "torchvision.datasets.ImageNet(ROOT, split='val')." if flat else ""
        )
        raise DataDirError(
            f"{root} has no labels.csv and no <wnid>/ class folders (n01440764, ...). Give it either layout: "
            "labels.csv + images/ (the sample layout), or one folder per ImageNet class (see data/README.md)."
            + hint
        )
    others = [f for f in folders if f not in wnids]
    if others:
        raise DataDirError(
            f"{root}: folders that are not WordNet ids ({_show(others)}) beside the class folders. "
            "Move them out: labels come from the sorted list of the 1000 wnid folders."
        )
    if len(wnids) != NUM_CLASSES:
        raise DataDirError(
            f"{root} has {len(wnids)} class folders, not {NUM_CLASSES}: labels are the index of the wnid in "
            f"the sorted list of all {NUM_CLASSES} ImageNet-1k wnids, so every class folder must be present "
            "(empty ones are fine). Copy the missing folders, or use the sample layout (labels.csv + images/)."
        )
    labels: dict[str, int] = {}
    paths: dict[str, Path] = {}
    for label, wnid in enumerate(wnids):
        for entry in os.scandir(root / wnid):
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                labels[f"{wnid}/{entry.name}"] = label
                paths[f"{wnid}/{entry.name}"] = Path(entry.path)
    # ILSVRC2012 file names are unique across classes: use them as ids, as in the sample layout.
    short = {key.split("/", 1)[1] for key in labels}
    if len(short) == len(labels):
        labels = {key.split("/", 1)[1]: v for key, v in labels.items()}
        paths = {key.split("/", 1)[1]: v for key, v in paths.items()}
    else:
        log.info("%s: file names repeat across class folders; image ids are <wnid>/<file>", root)
    if not labels:
        raise DataDirError(f"{root}: the {NUM_CLASSES} class folders hold no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return wnids, labels, paths


class ImageFolder(Dataset):
    """An ImageNet-style folder (sample or torchvision layout) yielding :class:`Sample`.

    ``preprocess`` is a :class:`lib.transforms.Preprocess` (a model's ``.preprocess``); only its
    ``geometry`` is applied, so images come out in ``[0, 1]``.  ``ids`` selects and orders a subset
    (e.g. :func:`seeded_subset`); by default every listed image, sorted by name.

    Construction checks that the folder, its labels and the selected images exist, and raises
    :class:`DataDirError` / :class:`DataFormatError` naming the path and the fix.  Attributes:
    ``root``, ``ids``, ``labels`` (``id -> label`` of the selected ids), ``layout``
    (``"labels.csv"`` or ``"wnid"``), ``classes`` (the sorted wnids in the torchvision layout, else
    ``None``).
    """

    def __init__(self, root: str | Path, preprocess, ids: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.preprocess = preprocess
        if not self.root.is_dir():
            raise DataDirError(_missing_root_message(self.root))
        labels_csv = self.root / "labels.csv"
        if labels_csv.is_file():
            self.layout, self.classes = "labels.csv", None
            all_labels = read_labels_csv(labels_csv)
            image_dir = self.root / "images"
            if not image_dir.is_dir():
                raise DataDirError(
                    f"{image_dir} not found: {labels_csv} names images that should be in it. "
                    "Copy the images/ folder of the data set there (see data/README.md)."
                )
            self._paths = {name: image_dir / name for name in all_labels}
        else:
            self.layout = "wnid"
            self.classes, all_labels, self._paths = _scan_class_folders(self.root)

        if ids is None:
            self.ids = sorted(all_labels)
        else:
            if isinstance(ids, str):
                raise TypeError(f"ids must be a list of image ids, not the string {ids!r}")
            self.ids = [str(i) for i in ids]
            unknown = [i for i in self.ids if i not in all_labels]
            if unknown:
                raise DataDirError(
                    f"{len(unknown)} requested image id(s) are not in {self.root}: {_show(unknown)}. "
                    f"Use ids from that folder's {'labels.csv' if self.layout == 'labels.csv' else 'class folders'} "
                    "(ImageFolder(root, preprocess).ids)."
                )
            if len(set(self.ids)) != len(self.ids):
                seen: set[str] = set()
                twice = [i for i in self.ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
                raise DataFormatError(f"ids lists image(s) more than once: {_show(twice)}. Pass each id once.")
        self.labels = {i: all_labels[i] for i in self.ids}
        self._check_files()

        boxes_csv = self.root / "boxes.csv"
        boxes = read_boxes_csv(boxes_csv) if boxes_csv.is_file() else {}
        self._boxes = {i: boxes[i] for i in self.ids if i in boxes}
        if boxes:
            log.debug("%s: boxes for %d of %d images", self.root, len(self._boxes), len(self.ids))

    def _check_files(self) -> None:
        """Every selected image is on disk, else DataDirError listing up to five missing ones."""
        if self.layout != "labels.csv":
            return  # found by scanning the class folders
        present = set(os.listdir(self.root / "images"))
        missing = [i for i in self.ids if i not in present and not self._paths[i].is_file()]
        if missing:
            raise DataDirError(
                f"{len(missing)} image(s) listed in {self.root / 'labels.csv'} are missing from "
                f"{self.root / 'images'}: {_show(missing)}. Re-copy them from the data set's source "
                "(and check the copy with SHA256SUMS), or remove their rows from labels.csv."
            )

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, image_id: str) -> Path:
        """The file of ``image_id``."""
        return self._paths[image_id]

    def raw_boxes(self, image_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes [K, 4], labels [K])`` of ``image_id`` in pixels of the stored image (K may be 0)."""
        empty = (torch.zeros(0, 4, dtype=torch.float32), torch.zeros(0, dtype=torch.long))
        boxes, labels = self._boxes.get(image_id, empty)
        return boxes.clone(), labels.clone()

    def __getitem__(self, index: int) -> Sample:
        image_id = self.ids[index]
        image = load_rgb(self._paths[image_id])
        boxes, box_labels = self.raw_boxes(image_id)
        return make_sample(image_id, image, self.labels[image_id], boxes, box_labels, self.preprocess)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, layout={self.layout!r})"
