"""``make data`` against a local HTTP server on 127.0.0.1 that serves files in the upstream layout.

A small synthetic upstream (the three repositories' paths at their pinned commits, with generated
files) is served with fault injection: a corrupted first response, a connection closed mid-file, an
unreachable port. The real upstream files are not needed; a test that builds the real samples from a
local mirror of them runs when ``CAM_UPSTREAM_MIRROR_DIR`` names one (``tools/make_manifest.py
--mirror-out``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from lib.data import build as build_mod
from lib.data.build import build_sample
from lib.data.checksums import read_checksums, verify_checksums
from lib.data.download import DownloadError, download_entries, download_file
from lib.data.errors import ChecksumError
from lib.data.make_data import ensure_samples, main
from lib.data.manifest import (
    MANIFEST_PATH,
    SOURCES,
    ManifestEntry,
    mirror_url,
    raw_url,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the server


class _Mirror(BaseHTTPRequestHandler):
    """Serves ``root/<path>`` with ``Range: bytes=N-`` support and per-path faults."""

    root: Path
    faults: dict[str, str]  # path -> "corrupt" | "cut" (applied once, then removed)
    log_lines: list[tuple[str, str | None]]
    lock = threading.Lock()

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        path = unquote(self.path.lstrip("/"))
        rng = self.headers.get("Range")
        with self.lock:
            self.log_lines.append((path, rng))
            fault = self.faults.pop(path, None)
        file = self.root / path
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        if rng:
            match = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(match.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if fault == "corrupt":
            body = bytes(b ^ 0xFF for b in body[:16]) + body[16:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def serve():
    """``serve(root) -> (base_url, handler_class)``; every server is shut down after the test."""
    servers = []

    def start(root: Path):
        handler = type("Handler", (_Mirror,), {"root": root, "faults": {}, "log_lines": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- a synthetic upstream

VAL_IMAGES = {  # name -> (label, original size, boxes in original pixels)
    "ILSVRC2012_val_00000347.JPEG": (472, (500, 375), [(20, 175, 111, 292), (372, 189, 499, 224)]),
    "ILSVRC2012_val_00000355.JPEG": (260, (375, 500), [(0, 0, 374, 499)]),
    "ILSVRC2012_val_00002581.JPEG": (775, (500, 375), [(275, 178, 291, 301)]),
}
# Hand-computed: x * 227 / orig_w and y * 227 / orig_h, rounded to 0.1 (275 * 227 / 500 = 124.85 -> 124.8).
VAL_BOXES_CSV = (
    "image,label,x0,y0,x1,y1,orig_w,orig_h,orig_x0,orig_y0,orig_x1,orig_y1\r\n"
    "ILSVRC2012_val_00000347.JPEG,472,9.1,105.9,50.4,176.8,500,375,20,175,111,292\r\n"
    "ILSVRC2012_val_00000347.JPEG,472,168.9,114.4,226.5,135.6,500,375,372,189,499,224\r\n"
    "ILSVRC2012_val_00000355.JPEG,260,0.0,0.0,226.4,226.5,375,500,0,0,374,499\r\n"
    "ILSVRC2012_val_00002581.JPEG,775,124.8,107.7,132.1,182.2,500,375,275,178,291,301\r\n"
)
N_TRAIN = 1000
# Train photos that are not tiny: (size, mode). Everything else is 8x6 RGB.
TRAIN_SPECIAL = {0: ((400, 300), "RGB"), 1: ((300, 700), "L"), 2: ((200, 150), "RGB")}
APOSTROPHE = 5  # this photo's name has an apostrophe, which our sample drops


def _jpeg(size, mode, seed, quality=95) -> bytes:
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _train_names() -> list[str]:
    names = []
    for i in range(N_TRAIN):
        wnid = f"n{10000000 + 7 * i:08d}"
        names.append(f"{wnid}_thing{i}'s.JPEG" if i == APOSTROPHE else f"{wnid}_thing{i}.JPEG")
    return names


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """``(mirror folder, manifest path, expected sample checksums CSV)`` for the synthetic upstream."""
    top = tmp_path_factory.mktemp("upstream")
    mirror, expected = top / "mirror", top / "expected"
    files: dict[str, tuple[str, bytes]] = {}  # relpath -> (source, bytes)

    val, boxes = SOURCES["val-images"], SOURCES["val-boxes"]
    val_base = f"{val['repo']}/{val['commit']}/"
    lines, loc, sizes = [], [], []
    for k, (name, (label, size, rects)) in enumerate(VAL_IMAGES.items()):
        files[val_base + f"{val['folder']}/{name}"] = ("val-images", _jpeg((227, 227), "RGB", k))
        lines.append(f"./data/{name}, {label}\n")
        sizes.append(f"val/{name},{size[0]},{size[1]}\n")
        loc += [f"val/{name},{','.join(map(str, r))}\n" for r in rects]
    loc.insert(1, "val/ILSVRC2012_val_00000001.JPEG,1,2,3,4\n")  # an image outside the sample
    files[val_base + val["labels"]] = ("val-images", "".join(lines).encode())
    wsol = f"{boxes['repo']}/{boxes['commit']}/"
    files[wsol + boxes["files"][0]] = ("val-boxes", "".join(loc).encode())
    files[wsol + boxes["files"][1]] = ("val-boxes", "".join(sizes).encode())

    train = SOURCES["train-images"]
    for i, name in enumerate(_train_names()):
        size, mode = TRAIN_SPECIAL.get(i, ((8, 6), "RGB"))
        files[f"{train['repo']}/{train['commit']}/{name}"] = ("train-images", _jpeg(size, mode, 100 + i))

    entries = []
    for relpath, (source, data) in files.items():
        target = mirror / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        repo = "/".join(relpath.split("/")[:2])
        commit, path = relpath.split("/")[2], "/".join(relpath.split("/")[3:])
        entries.append(ManifestEntry(source, repo, commit, path, hashlib.sha256(data).hexdigest(), len(data),
                                     raw_url(repo, commit, path)))
    manifest = top / "manifest.csv"
    write_manifest(entries, manifest)

    # The expected samples, written from the specification (not by lib.data.build).
    out = expected / "imagenet-val-1300"
    (out / "images").mkdir(parents=True)
    for name in VAL_IMAGES:
        (out / "images" / name).write_bytes(files[val_base + f"{val['folder']}/{name}"][1])
    (out / "labels.csv").write_bytes(
        ("image,label\r\n" + "".join(f"{n},{v[0]}\r\n" for n, v in VAL_IMAGES.items())).encode())
    (out / "boxes.csv").write_bytes(VAL_BOXES_CSV.encode())
    out = expected / "imagenet-train-1000"
    (out / "images").mkdir(parents=True)
    rows = ["image,label,wnid\r\n"]
    for i, name in enumerate(_train_names()):  # wnids increase with i, so the label is i
        image = Image.open(io.BytesIO(files[f"{train['repo']}/{train['commit']}/{name}"][1])).convert("RGB")
        w, h = image.size
        if min(w, h) > 256:
            image = image.resize((round(w * 256 / min(w, h)), round(h * 256 / min(w, h))), Image.BICUBIC)
        ours = name.replace("'", "")
        image.save(out / "images" / ours, "JPEG", quality=92)
        rows.append(f"{ours},{i},{name.split('_')[0]}\r\n")
    (out / "labels.csv").write_bytes("".join(rows).encode())
    with open(top / "sample_checksums.csv", "w") as handle:  # the committed file's format
        handle.write("sample,path,sha256\n")
        for sample in ("imagenet-val-1300", "imagenet-train-1000"):
            for p in sorted((expected / sample).rglob("*"), key=lambda p: p.relative_to(expected / sample).as_posix()):
                if p.is_file():
                    path = p.relative_to(expected / sample).as_posix()
                    handle.write(f"{sample},{path},{hashlib.sha256(p.read_bytes()).hexdigest()}\n")
    expected = top / "sample_checksums.csv"
    return mirror, manifest, expected


def _ensure(data_dir, upstream, base, **kw):
    _, manifest, expected = upstream
    return ensure_samples(data_dir, mirror=base, manifest=manifest, expected=expected, retries=kw.pop("retries", 2),
                          backoff=0.01, timeout=10, progress=False, **kw)


# ----------------------------------------------------------------------------- tests


def test_full_fetch_builds_the_expected_samples(tmp_path, upstream, serve):
    mirror, manifest, expected = upstream
    base, handler = serve(mirror)
    status = _ensure(tmp_path / "data", upstream, base)
    assert status == {"imagenet-val-1300": "built", "imagenet-train-1000": "built"}
    for sample in status:
        built = tmp_path / "data" / sample
        sums = read_checksums(built / "SHA256SUMS")
        assert build_mod.data_files(sums) == build_mod.read_expected(expected)[sample]
        assert (built / "README.md").read_text() == build_mod.READMES[sample] and "README.md" in sums
        assert verify_checksums(built) == len(build_mod.read_expected(expected)[sample]) + 1
    train = tmp_path / "data" / "imagenet-train-1000" / "images"
    assert Image.open(train / _train_names()[0]).size == (341, 256)  # 400x300 -> shorter side 256
    assert Image.open(train / _train_names()[1]).mode == "RGB"  # greyscale photo converted
    assert Image.open(train / _train_names()[2]).size == (200, 150)  # smaller photos keep their size
    assert not (tmp_path / "data" / ".downloads").exists()  # removed after the build
    assert not list((tmp_path / "data").glob("*.partial"))
    assert len(handler.log_lines) == len(read_manifest(manifest))  # each file fetched once


def test_present_samples_are_verified_and_never_downloaded(tmp_path, upstream, serve):
    mirror, _, expected = upstream
    base, handler = serve(mirror)
    _ensure(tmp_path, upstream, base)
    fetched = len(handler.log_lines)
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    assert _ensure(tmp_path, upstream, unreachable) == {s: "verified" for s in ("imagenet-val-1300",
                                                                                  "imagenet-train-1000")}
    assert len(handler.log_lines) == fetched
    # a present sample whose files changed is refused, with the fix
    (tmp_path / "imagenet-val-1300" / "labels.csv").write_text("image,label\n")
    with pytest.raises(ChecksumError, match="differ from their checksum"):
        _ensure(tmp_path, upstream, unreachable)


def test_a_sample_that_is_not_ours_is_refused(tmp_path, upstream):
    _, _, expected = upstream
    folder = tmp_path / "imagenet-val-1300"
    folder.mkdir()
    (folder / "labels.csv").write_text("image,label\n")
    build_mod.write_checksums(folder)
    with pytest.raises(ChecksumError, match="is not the expected sample"):
        _ensure(tmp_path, upstream, "http://127.0.0.1:1", samples=["imagenet-val-1300"])


def test_a_corrupted_download_is_refused_and_fetched_again(tmp_path, upstream, serve):
    mirror, manifest, _ = upstream
    base, handler = serve(mirror)
    entry = next(e for e in read_manifest(manifest) if e.source == "val-boxes")
    handler.faults[entry.relpath] = "corrupt"
    dest = tmp_path / "file"
    assert download_file(entry, dest, mirror=base, retries=2, backoff=0.01)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == entry.sha256
    assert [p for p, _ in handler.log_lines] == [entry.relpath, entry.relpath]
    # with no retry left the corrupt file is refused, and nothing is left that looks complete
    handler.faults[entry.relpath] = "corrupt"
    with pytest.raises(DownloadError, match="another SHA-256"):
        download_file(entry, tmp_path / "again", mirror=base, retries=0)
    assert not (tmp_path / "again").exists() and not (tmp_path / "again.part").exists()
    # a corrupt file already on disk is fetched again
    dest.write_bytes(b"x" * entry.size)
    assert download_file(entry, dest, mirror=base, retries=0)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == entry.sha256


def test_an_interrupted_fetch_resumes(tmp_path, upstream, serve):
    mirror, manifest, _ = upstream
    base, handler = serve(mirror)
    entries = [e for e in read_manifest(manifest) if e.source == "val-boxes"]
    cut = entries[0]
    handler.faults[cut.relpath] = "cut"
    with pytest.raises(DownloadError, match=re.escape(cut.relpath.split("/")[-1])):
        download_entries(entries, tmp_path, mirror=base, retries=0, workers=1, progress=False)
    part = tmp_path / (cut.relpath + ".part")
    assert not (tmp_path / cut.relpath).exists()  # the partial file does not look complete
    assert 0 < part.stat().st_size < cut.size
    have = part.stat().st_size
    handler.log_lines.clear()
    assert download_entries(entries, tmp_path, mirror=base, retries=0, progress=False) >= 1
    assert (cut.relpath, f"bytes={have}-") in handler.log_lines  # asked only for the rest
    for entry in entries:
        assert hashlib.sha256((tmp_path / entry.relpath).read_bytes()).hexdigest() == entry.sha256
    handler.log_lines.clear()
    assert download_entries(entries, tmp_path, mirror=base, retries=0, progress=False) == 0
    assert handler.log_lines == []  # verified files are not fetched again


def test_a_cut_connection_is_retried_within_one_run(tmp_path, upstream, serve):
    mirror, manifest, _ = upstream
    base, handler = serve(mirror)
    entry = next(e for e in read_manifest(manifest) if e.source == "val-boxes")
    handler.faults[entry.relpath] = "cut"
    assert download_file(entry, tmp_path / "f", mirror=base, retries=1, backoff=0.01)
    assert handler.log_lines[1][1] is not None  # the retry resumed with a Range request


def test_an_unreachable_server_gives_the_clear_error(tmp_path, upstream, capsys):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DownloadError) as err:
        _ensure(tmp_path, upstream, url, retries=1, samples=["imagenet-val-1300"])
    message = str(err.value)
    assert url in message and "CAM_DATA_DIR" in message and "CAM_DATA_MIRROR" in message
    assert not (tmp_path / "imagenet-val-1300").exists()
    # the command line says the same and exits 1
    os.environ.pop("CAM_DATA_MIRROR", None)
    assert main(["--data-dir", str(tmp_path / "cli"), "--mirror", url, "--retries", "0", "--quiet",
                 "--sample", "imagenet-val-1300"]) == 1
    assert url in capsys.readouterr().err


def test_a_missing_file_on_the_mirror_names_it(tmp_path, upstream, serve):
    base, _ = serve(tmp_path / "empty")
    entry = read_manifest(upstream[1])[0]
    with pytest.raises(DownloadError, match="404"):
        download_file(entry, tmp_path / "f", mirror=base, retries=3, backoff=0.01)


def test_a_build_that_differs_from_the_expected_sample_is_not_kept(tmp_path, upstream, serve, monkeypatch):
    mirror, manifest, expected = upstream
    base, _ = serve(mirror)
    monkeypatch.setattr(build_mod, "TRAIN_JPEG_QUALITY", 80)  # as if another JPEG encoder
    with pytest.raises(ChecksumError, match="re-encoded"):
        _ensure(tmp_path, upstream, base, samples=["imagenet-train-1000"], keep_downloads=True)
    assert not (tmp_path / "imagenet-train-1000").exists()
    status = _ensure(tmp_path, upstream, base, samples=["imagenet-train-1000"], strict=False)
    assert status == {"imagenet-train-1000": "built"}
    assert verify_checksums(tmp_path / "imagenet-train-1000") == N_TRAIN + 2


def test_mirror_url_keeps_the_upstream_layout(monkeypatch):
    entry = next(e for e in read_manifest() if "'" in e.path)
    assert entry.url.endswith("%27s_kit.JPEG") and entry.url.startswith("https://raw.githubusercontent.com/")
    monkeypatch.setenv("CAM_DATA_MIRROR", "http://127.0.0.1:8000/")
    assert mirror_url(entry) == "http://127.0.0.1:8000/" + entry.url.split("githubusercontent.com/", 1)[1]
    monkeypatch.delenv("CAM_DATA_MIRROR")
    assert mirror_url(entry) == entry.url


def test_committed_manifest_agrees_with_the_committed_samples():
    """The val images are upstream files unchanged: their manifest SHA-256 is the sample's."""
    entries = read_manifest(MANIFEST_PATH)
    counts = {s: sum(e.source == s for e in entries) for s in SOURCES}
    assert counts == {"val-images": 1301, "val-boxes": 2, "train-images": 1000}
    assert {(e.repo, e.commit) for e in entries} == {(s["repo"], s["commit"]) for s in SOURCES.values()}
    expected = build_mod.read_expected()
    sums = expected["imagenet-val-1300"]
    images = {e.path.rsplit("/", 1)[1]: e.sha256 for e in entries if e.path.endswith(".JPEG") and e.source == "val-images"}
    assert images == {n.split("/", 1)[1]: h for n, h in sums.items() if n.startswith("images/")}
    train = {build_mod.train_name(e.path) for e in entries if e.source == "train-images"}
    assert train == {n.split("/", 1)[1] for n in expected["imagenet-train-1000"] if n.startswith("images/")}


@pytest.mark.skipif(not os.environ.get("CAM_UPSTREAM_MIRROR_DIR"),
                    reason="set CAM_UPSTREAM_MIRROR_DIR to a mirror of the real upstream files "
                           "(tools/make_manifest.py --mirror-out) to build the real samples")
def test_real_samples_from_a_local_mirror_equal_ours(tmp_path, serve):
    base, _ = serve(Path(os.environ["CAM_UPSTREAM_MIRROR_DIR"]))
    status = ensure_samples(tmp_path, mirror=base, progress=False, backoff=0.01)
    assert set(status.values()) == {"built"}
    shared = REPO.parent / "shared" / "data"
    for sample in status:
        sums = build_mod.data_files(read_checksums(tmp_path / sample / "SHA256SUMS"))
        assert sums == build_mod.read_expected()[sample]
        if (shared / sample / "SHA256SUMS").is_file():  # our reference copy: every data file identical
            assert sums == build_mod.data_files(read_checksums(shared / sample / "SHA256SUMS"))
