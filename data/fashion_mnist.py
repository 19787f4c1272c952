"""Fashion-MNIST from Debian `dataset-fashion-mnist`: 28x28 grey garments captioned with their class.

Garments are light on black, as the dataset ships them; the builder bounds and composites images.
"""

from __future__ import annotations

import gzip
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from siglip2_sdk.data.debian import SourceUnavailable
from siglip2_sdk.data.source import Pair, Source

DATA = Path("usr/share/datasets/fashion-mnist")
SPLITS = ("t10k", "train")
PER_CLASS = 100  # first examples of each class taken from each split: 2 x 10 x 100 = 2,000 pairs
# Class index -> (the dataset's class name, an English caption for it).
CLASSES = (
    ("T-shirt/top", "a t-shirt or top"),
    ("Trouser", "a pair of trousers"),
    ("Pullover", "a pullover"),
    ("Dress", "a dress"),
    ("Coat", "a coat"),
    ("Sandal", "a sandal"),
    ("Shirt", "a shirt"),
    ("Sneaker", "a sneaker"),
    ("Bag", "a bag"),
    ("Ankle boot", "an ankle boot"),
)


def read_idx(path: Path) -> np.ndarray:
    """A gzipped idx file of unsigned bytes as an array.

    Read here because only torchvision reads idx, and it is no dependency of ours. The format: two
    zero bytes, a type code (0x08 = uint8), the number of dimensions, each as a big-endian uint32.
    """
    with gzip.open(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[:3] != b"\0\0\x08":
        raise SourceUnavailable(f"'{path}' is not an idx file of unsigned bytes: reinstall the package")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    if len(data) != 4 + 4 * ndim + math.prod(shape):
        raise SourceUnavailable(f"'{path}' holds {len(data)} bytes, not an array of shape {shape}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def balanced_indices(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first `per_class` indices of each class, in file order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASSES))]))


def read_fashion_mnist(root: Path) -> Iterator[Pair]:
    """`PER_CLASS` images of each class from each split, test split first, in file order."""
    folder = root / DATA
    if not folder.is_dir():
        raise SourceUnavailable(f"'{folder}' is missing: unpack dataset-fashion-mnist there")
    for split in SPLITS:
        images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise SourceUnavailable(f"'{folder}': {len(images)} {split} images but {len(labels)} labels")
        for index in balanced_indices(labels, PER_CLASS):
            name, caption = CLASSES[labels[index]]
            # A copy, so the image does not keep the whole split's array alive.
            image = Image.fromarray(images[index].copy())
            yield Pair(f"{split}/{index:05d}", image, {"en": caption}, {"class": name})


SOURCE = Source(
    name="fashion-mnist",
    debian_package="dataset-fashion-mnist",
    license="MIT (Expat), Zalando SE 2017",
    read=read_fashion_mnist,
)
