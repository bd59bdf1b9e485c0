"""Build the sample folders (``images/``, ``labels.csv``, ``boxes.csv``, ``README.md``, ``SHA256SUMS``)
from the upstream files listed in ``data/manifest.csv``.

The build reproduces every data file of our samples byte for byte: it is checked against
``data/sample_checksums.csv`` (``sample,path,sha256`` of every file of our samples but their
``README.md``, taken from their ``SHA256SUMS``). The ``README.md`` is written here
(:data:`READMES`), so it is the one file that may differ from a copy made elsewhere:

* ``imagenet-val-1300``: the 1300 images are the upstream files, unchanged. ``labels.csv`` is
  ``dataset.txt`` (``./data/X.JPEG, label``) as ``image,label``. ``boxes.csv`` holds every box of
  ``localization.txt`` for the sample's images, in that file's order, scaled from the original image
  (``image_sizes.txt``) to the stored one: ``x * stored_w / orig_w`` rounded to 0.1 px (the upstream
  images were pre-scaled to 227x227 without keeping the aspect ratio).
* ``imagenet-train-1000``: each photo is re-encoded as our sample did: converted to RGB, its shorter
  side reduced to 256 px when longer (bicubic; smaller photos keep their size), saved as JPEG quality
  92; the four names with an apostrophe lose it. The label is the index of the ``wnid`` (the name's
  prefix) among the sorted wnids. Re-encoding depends on Pillow's JPEG encoder: the locked Pillow
  (``requirements/lock.txt``) reproduces all 1000 files exactly; another Pillow may differ in a few
  bytes, which :func:`build_sample` reports (``strict=False`` keeps such files with a warning).

Every CSV ends its lines with CRLF, as Python's ``csv`` module writes them (and as our samples have).
A folder is built under ``<name>.partial`` and renamed only once complete and verified.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import PIL
from PIL import Image
from tqdm.auto import tqdm

from ..config import get_logger, repo_root
from .checksums import SUMS_FILE, read_checksums, sha256_file
from .errors import NUM_CLASSES, ChecksumError, DataFormatError, check_label
from .manifest import SAMPLES, SOURCES, ManifestEntry

__all__ = ["EXPECTED_SUMS", "READMES", "build_sample", "data_files", "read_expected", "train_name",
           "write_checksums", "write_expected"]

log = get_logger(__name__)

EXPECTED_SUMS = repo_root() / "data" / "sample_checksums.csv"
"""``sample,path,sha256`` of every data file of our samples (``README.md`` excluded), as committed."""

README = "README.md"

READMES = {
    "imagenet-val-1300": """\
# imagenet-val-1300

1300 images of the ILSVRC2012 (ImageNet-1k) validation set, 725 of the 1000 classes, built by
`make data` (lib/data/build.py) from public sources pinned in data/manifest.csv.

- `images/ILSVRC2012_val_XXXXXXXX.JPEG`: the files of VeriSilicon/acuity-dataset
  (`ILSVRC2012_VAL_SET/data/`), unchanged. Their publisher pre-scaled them to 227x227, so the
  aspect ratio is not preserved.
- `labels.csv`: `image,label` from `ILSVRC2012_VAL_SET/dataset.txt`; `label` is the 0-based
  ImageNet-1k class index in the standard (sorted-wnid) order.
- `boxes.csv`: every object box of clovaai/wsolevaluation's `metadata/ILSVRC/test/localization.txt`
  for these images: `orig_*` in the original image's pixels (`orig_w`, `orig_h` from
  `image_sizes.txt`), `x0,y0,x1,y1` scaled to the stored 227x227 image.
- `SHA256SUMS`: checksums of every file here (`sha256sum -c SHA256SUMS` from this folder).

The images remain under the ImageNet terms of access (non-commercial research and education).
""",
    "imagenet-train-1000": """\
# imagenet-train-1000

1000 ImageNet-1k photographs, one per class, disjoint from imagenet-val-1300, built by
`make data` (lib/data/build.py) from EliSchwartz/imagenet-sample-images, pinned in
data/manifest.csv.

- `images/<wnid>_<name>.JPEG`: each photo converted to RGB, its shorter side reduced to 256 px
  (bicubic) when it was longer, saved as JPEG quality 92; apostrophes dropped from the names.
- `labels.csv`: `image,label,wnid`; `label` is the 0-based ImageNet-1k class index (standard order).
- `SHA256SUMS`: checksums of every file here.

The images remain under the ImageNet terms of access (non-commercial research and education).
""",
}
"""The ``README.md`` written into each built sample."""

TRAIN_SHORT_SIDE = 256
TRAIN_JPEG_QUALITY = 92


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)  # CRLF line ends, the csv module's default
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_checksums(folder: Path) -> Path:
    """``folder/SHA256SUMS`` over every other file, as ``find . -type f | sort | xargs sha256sum`` writes it."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != SUMS_FILE)
    lines = "".join(f"{sha256_file(folder / name)}  ./{name}\n" for name in names)
    path = folder / SUMS_FILE
    path.write_text(lines, encoding="utf-8")
    return path


def _local(entries: Sequence[ManifestEntry], root: Path) -> dict[str, Path]:
    """``upstream path -> downloaded file`` for ``entries`` under the download ``root``."""
    files = {e.path: root / e.relpath for e in entries}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataFormatError(f"{len(missing)} upstream file(s) are missing, e.g. {missing[0]}: download them first "
                              "(python -m lib.data.make_data).")
    return files


def _val_labels(dataset_txt: Path) -> list[tuple[str, int]]:
    """``[(image name, label)]`` from acuity-dataset's ``dataset.txt`` (``./data/X.JPEG, 472`` lines)."""
    rows = []
    for number, line in enumerate(dataset_txt.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, label = line.partition(",")
        if not sep:
            raise DataFormatError(f"{dataset_txt}, line {number}: expected './data/<image>, <label>', got {line!r}")
        rows.append((name.strip().rsplit("/", 1)[-1], check_label(label.strip(), f"{dataset_txt}, line {number}")))
    return rows


def _read_int_table(path: Path) -> dict[str, list[tuple[int, ...]]]:
    """wsolevaluation's metadata (``val/<image>,a,b[,c,d]`` lines) as ``image name -> [row ints]``."""
    table: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.strip().split(",")
            if len(parts) < 3:
                continue
            try:
                table[parts[0].rsplit("/", 1)[-1]].append(tuple(int(v) for v in parts[1:]))
            except ValueError:
                raise DataFormatError(f"{path}, line {number}: expected integers, got {line.strip()!r}") from None
    return table


def _build_val(entries: Sequence[ManifestEntry], root: Path, out: Path, progress: bool) -> None:
    files = _local(entries, root)
    source = SOURCES["val-images"]
    labels = _val_labels(files[source["labels"]])
    by_name = {Path(p).name: f for p, f in files.items() if p.startswith(source["folder"] + "/")}
    localization_txt, sizes_txt = (files[p] for p in SOURCES["val-boxes"]["files"])
    boxes, sizes = _read_int_table(localization_txt), _read_int_table(sizes_txt)
    (out / "images").mkdir(parents=True)
    box_rows = []
    for name, label in tqdm(labels, desc="imagenet-val-1300", unit="img", disable=not progress):
        if name not in by_name:
            raise DataFormatError(f"dataset.txt lists {name}, which the manifest does not: regenerate data/manifest.csv")
        shutil.copyfile(by_name[name], out / "images" / name)
        with Image.open(by_name[name]) as image:
            stored_w, stored_h = image.size
        if name not in sizes or not boxes.get(name):
            raise DataFormatError(f"{localization_txt.name}/{sizes_txt.name} have no box or size for {name}")
        orig_w, orig_h = sizes[name][0]
        for x0, y0, x1, y1 in boxes[name]:
            box_rows.append([
                name, label,
                round(x0 * stored_w / orig_w, 1), round(y0 * stored_h / orig_h, 1),
                round(x1 * stored_w / orig_w, 1), round(y1 * stored_h / orig_h, 1),
                orig_w, orig_h, x0, y0, x1, y1,
            ])
    (out / "labels.csv").write_bytes(_csv_bytes(["image", "label"], labels))
    header = ["image", "label", "x0", "y0", "x1", "y1", "orig_w", "orig_h", "orig_x0", "orig_y0", "orig_x1", "orig_y1"]
    (out / "boxes.csv").write_bytes(_csv_bytes(header, box_rows))


def train_name(upstream_name: str) -> str:
    """Our file name for an upstream photo: the same, without apostrophes (shell-safe names)."""
    return upstream_name.replace("'", "")


def _reencode(src: Path, dest: Path) -> None:
    with Image.open(src) as image:
        image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        scale = TRAIN_SHORT_SIDE / min(width, height)
        if scale < 1:
            image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
        image.save(dest, "JPEG", quality=TRAIN_JPEG_QUALITY)


def _build_train(entries: Sequence[ManifestEntry], root: Path, out: Path, progress: bool) -> None:
    files = _local(entries, root)
    names = sorted(Path(p).name for p in files)
    wnids = sorted({name.split("_", 1)[0] for name in names})
    if len(wnids) != len(names) or len(wnids) != NUM_CLASSES:
        raise DataFormatError(f"expected one photo for each of the {NUM_CLASSES} classes, got {len(names)} photos "
                              f"of {len(wnids)} wnids: regenerate data/manifest.csv")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    (out / "images").mkdir(parents=True)
    rows = []
    for name in tqdm(names, desc="imagenet-train-1000", unit="img", disable=not progress):
        ours = train_name(name)
        _reencode(files[name], out / "images" / ours)
        wnid = name.split("_", 1)[0]
        rows.append([ours, index[wnid], wnid])
    (out / "labels.csv").write_bytes(_csv_bytes(["image", "label", "wnid"], rows))


_BUILDERS = {"imagenet-val-1300": _build_val, "imagenet-train-1000": _build_train}


def data_files(sums: dict[str, str]) -> dict[str, str]:
    """``sums`` without the sample's ``README.md`` (documentation, written by whoever made the copy)."""
    return {name: digest for name, digest in sums.items() if name != README}


def read_expected(path: str | Path = EXPECTED_SUMS) -> dict[str, dict[str, str]]:
    """``{sample: {relative path: sha256}}`` from ``data/sample_checksums.csv``."""
    expected: dict[str, dict[str, str]] = defaultdict(dict)
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            expected[row["sample"]][row["path"]] = row["sha256"]
    return dict(expected)


def write_expected(data_dir: str | Path, path: str | Path = EXPECTED_SUMS) -> Path:
    """Write ``path`` from the ``SHA256SUMS`` of the samples in ``data_dir`` (the reference copies)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["sample", "path", "sha256"])
        for name in SAMPLES:
            sums = data_files(read_checksums(Path(data_dir) / name / SUMS_FILE))
            writer.writerows([name, file, sums[file]] for file in sorted(sums))
    return Path(path)


def _compare(out: Path, expected: dict[str, str], name: str, strict: bool) -> None:
    built = data_files(read_checksums(out / SUMS_FILE))
    differ = sorted(n for n in set(built) | set(expected) if built.get(n) != expected.get(n))
    if not differ:
        return
    reencoded = name == "imagenet-train-1000" and all(n.startswith("images/") and n in built and n in expected
                                                      for n in differ)
    message = (f"{name}: {len(differ)} built file(s) differ from our sample ({EXPECTED_SUMS.name}), "
               f"e.g. {', '.join(differ[:5])}.")
    if reencoded:
        message += (f" These photos are re-encoded JPEGs, and this Pillow ({PIL.__version__}) encodes them "
                    "differently from the locked one (requirements/lock.txt): install with `make install`.")
        if not strict:
            log.warning("%s Kept them (strict=False); the sample's own SHA256SUMS lists the files as built.", message)
            return
        message += " Or accept them with --no-strict (the maps and metrics may then differ slightly)."
    raise ChecksumError(message)


def build_sample(
    name: str,
    entries: Sequence[ManifestEntry],
    download_root: str | Path,
    out: str | Path,
    *,
    expected: str | Path = EXPECTED_SUMS,
    strict: bool = True,
    progress: bool = True,
) -> Path:
    """Build sample ``name`` into the folder ``out`` from downloaded ``entries``; return ``out``.

    ``download_root`` holds the files as ``<repo>/<commit>/<path>``. The folder is written as
    ``<out>.partial`` and renamed to ``out`` after its data files' checksums equal ``expected``'s
    rows for ``name`` (:class:`ChecksumError` otherwise; see the module docstring for ``strict``).
    ``out`` must not exist yet.
    """
    if name not in SAMPLES:
        raise ValueError(f"Unknown sample {name!r}: use one of {', '.join(SAMPLES)}")
    out, root = Path(out), Path(download_root)
    expected_sums = read_expected(expected).get(name, {})
    if out.exists():
        raise FileExistsError(f"{out} exists already: verify it (python -m lib.data.make_data) or remove it first")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    wanted = [e for e in entries if e.source in SAMPLES[name]]
    _BUILDERS[name](wanted, root, partial, progress)
    (partial / README).write_text(READMES[name], encoding="utf-8")
    write_checksums(partial)
    _compare(partial, expected_sums, name, strict)
    partial.rename(out)
    log.info("built %s", out)
    return out
