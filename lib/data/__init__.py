"""Data sets for the CAM compendium: ImageNet-style folders, packaged photos and composites.

Every data set yields :class:`Sample` (an image in ``[0, 1]`` after the model's
``Preprocess.geometry``, its label, and object boxes that followed the same resize and crop);
:func:`collate_samples` batches them for a ``DataLoader``.  See ``data/README.md`` for where the
data directory is found and how to prepare it.
"""

from .checksums import read_checksums, sha256_file, verify_checksums
from .composites import Composite, CompositeDataset, make_composite
from .dataset import open_dataset
from .errors import NUM_CLASSES, ChecksumError, DataDirError, DataFormatError, ImageReadError, check_label
from .folder import IMAGE_EXTENSIONS, ImageFolder, read_boxes_csv, read_labels_csv
from .images import load_rgb, to_rgb
from .photos import PHOTO_LABELS, Photo, PhotoDataset, packaged_photos
from .samples import Batch, Sample, collate_samples, make_sample, seeded_subset

__all__ = [
    "IMAGE_EXTENSIONS",
    "NUM_CLASSES",
    "PHOTO_LABELS",
    "Batch",
    "ChecksumError",
    "Composite",
    "CompositeDataset",
    "DataDirError",
    "DataFormatError",
    "ImageFolder",
    "ImageReadError",
    "Photo",
    "PhotoDataset",
    "Sample",
    "check_label",
    "collate_samples",
    "load_rgb",
    "make_composite",
    "make_sample",
    "open_dataset",
    "packaged_photos",
    "read_boxes_csv",
    "read_checksums",
    "read_labels_csv",
    "seeded_subset",
    "sha256_file",
    "to_rgb",
    "verify_checksums",
]
