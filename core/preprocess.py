"""Image preprocessing: decode any photo into RGB, then resize and normalize it as the checkpoint expects.

Torch-free on purpose (numpy and Pillow only): the ONNX Runtime and LiteRT runtimes use it on phone-class
machines. The pixel pipeline follows transformers' PIL backend of `SiglipImageProcessor` step by step
(resize the 8-bit RGB image with Pillow, rescale, normalize), so a bundle sees the pixels the float model
saw at export time.
"""

from __future__ import annotations

import io
import math
import operator
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from siglip2_sdk.core.errors import ImageLoadError

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray

# 150 MP: 108 MP phone photos (12000 × 9000) and long panoramas load, while decoding one image stays
# under ~450 MB of RGB. Decompression bombs claim far more (10⁹–10¹⁰ px). Pillow's own hard limit
# (2 × PIL.Image.MAX_IMAGE_PIXELS ≈ 179 MP by default) still applies on top of this one.
DEFAULT_MAX_PIXELS = 150_000_000
# Files above this are refused before they are read: the largest photos (108 MP JPEGs, 16-bit TIFF
# scans of a few hundred MB) fit, and a sparse or endless file cannot exhaust memory.
MAX_FILE_BYTES = 512 * 2**20
# What an ISO base media file (HEIC/HEIF, AVIF) starts with: a box size, then b"ftyp" and the brand.
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_RESAMPLE_NAME = {int(code): name for name, code in _RESAMPLE.items()}

# What transformers' SiglipImageProcessor assumes for keys a preprocessor_config.json leaves out.
_HF_DEFAULTS: dict[str, Any] = {
    "size": {"height": 224, "width": 224},
    "resample": int(Image.Resampling.BICUBIC),
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "rescale_factor": 1 / 255,
}

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


@dataclass(frozen=True)
class ImagePreprocessing:
    """The exact pixel transform a checkpoint was trained with; it travels in the bundle manifest."""

    size: tuple[int, int]  # (height, width)
    resample: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255

    def __post_init__(self) -> None:
        try:
            size = tuple(operator.index(s) for s in self.size)
        except TypeError:
            size = ()
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be (height, width) with two positive integers, got {self.size!r}")
        resample = str(self.resample).lower()
        if resample not in _RESAMPLE:
            raise ValueError(f"unknown resample {self.resample!r}; use one of {', '.join(_RESAMPLE)}")
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(
                f"mean and std need one value per RGB channel, got {self.mean!r} and {self.std!r}"
            )
        if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"mean must be finite and std positive, got {self.mean!r} and {self.std!r}")
        rescale_factor = float(self.rescale_factor)
        if not (math.isfinite(rescale_factor) and rescale_factor > 0):
            raise ValueError(f"rescale_factor must be positive, got {self.rescale_factor!r}")
        # Normalized copies, so that a spec read back from JSON (lists) equals the original (tuples).
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "resample", resample)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "rescale_factor", rescale_factor)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, as stored in the bundle manifest."""
        return {
            "size": list(self.size),
            "resample": self.resample,
            "mean": list(self.mean),
            "std": list(self.std),
            "rescale_factor": self.rescale_factor,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImagePreprocessing:
        """Inverse of `to_dict`; unknown keys are an error so that a newer manifest is not half-read."""
        unknown = set(d) - {"size", "resample", "mean", "std", "rescale_factor"}
        if unknown:
            raise ValueError(f"unknown image preprocessing keys {sorted(unknown)}")
        if "size" not in d:
            raise ValueError("image preprocessing needs 'size' as [height, width]")
        return cls(**d)

    @classmethod
    def from_hf_config(cls, d: dict[str, Any]) -> ImagePreprocessing:
        """Read a checkpoint's `preprocessor_config.json`; keys it leaves out (or sets to null) take
        transformers' defaults."""
        d = {key: value for key, value in d.items() if value is not None}
        if not d.get("do_resize", True):
            raise ValueError("do_resize=false is not supported: the model needs a fixed input size")
        size = d.get("size", _HF_DEFAULTS["size"])
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if "height" in size and "width" in size:
            height, width = size["height"], size["width"]
        elif set(size) == {"shortest_edge"}:
            height = width = size["shortest_edge"]
        else:
            raise ValueError(
                f"unsupported size {size!r}; expected {{'height', 'width'}} or {{'shortest_edge'}}"
            )
        code = d.get("resample", _HF_DEFAULTS["resample"])
        if code not in _RESAMPLE_NAME:
            raise ValueError(f"unknown PIL resample code {code!r}; expected one of {sorted(_RESAMPLE_NAME)}")
        if d.get("do_normalize", True):
            mean = _per_channel(d.get("image_mean", _HF_DEFAULTS["image_mean"]))
            std = _per_channel(d.get("image_std", _HF_DEFAULTS["image_std"]))
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        rescale_factor = (
            d.get("rescale_factor", _HF_DEFAULTS["rescale_factor"]) if d.get("do_rescale", True) else 1.0
        )
        return cls(
            size=(height, width),
            resample=_RESAMPLE_NAME[code],
            mean=mean,
            std=std,
            rescale_factor=rescale_factor,
        )

    def to_hf_config(self) -> dict[str, Any]:
        """The `preprocessor_config.json` that transformers' SiglipImageProcessor reads back as this spec."""
        height, width = self.size
        return {
            "image_processor_type": "SiglipImageProcessor",
            "processor_class": "SiglipProcessor",
            "do_resize": True,
            "do_rescale": True,
            "do_normalize": True,
            "do_convert_rgb": True,
            "size": {"height": height, "width": width},
            "resample": int(_RESAMPLE[self.resample]),
            "rescale_factor": self.rescale_factor,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
        }


def _per_channel(value: float | Sequence[float]) -> tuple[float, ...]:
    """transformers allows one number for all channels."""
    return (float(value),) * 3 if isinstance(value, int | float) else tuple(value)


def load_image(
    source: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, jpeg_draft: int | None = None
) -> Image.Image:
    """Decode a path, encoded bytes, a PIL image or a uint8 array into an 8-bit RGB image.

    EXIF orientation is applied, transparency is composited onto white, multi-frame files give their
    first frame. Every failure raises `ImageLoadError` with a short reason. `max_pixels` guards against
    decompression bombs in encoded input (None: no limit beyond Pillow's own). An RGB PIL image without
    orientation or transparency comes back as the same object. `jpeg_draft`: let libjpeg decode a JPEG
    at 1/2, 1/4 or 1/8 scale while both sides stay at least this many pixels (its DCT scaling: a
    2-4x faster decode of large photos, with pixels that differ slightly from a full decode; see
    benchmarks/results/data_path.md).
    """
    if isinstance(source, np.ndarray):
        return _to_rgb(_from_array(source))
    if isinstance(source, Image.Image):
        name: str | os.PathLike = "<PIL image>"
    elif isinstance(source, bytes | bytearray | memoryview):
        name = "<bytes>"
    elif isinstance(source, str | os.PathLike):
        name = source
    else:
        kind = type(source).__name__
        hint = "pass a path, bytes, a PIL image or a uint8 array"
        raise ImageLoadError(repr(source)[:80], f"unsupported input type {kind}; {hint}")
    try:
        if isinstance(source, Image.Image):
            img = _decoded(source)
        elif isinstance(source, str | os.PathLike):
            with _open_regular(source) as f:
                img = _decoded(_open(f, name, max_pixels, jpeg_draft))
        else:
            if len(source) == 0:
                raise ImageLoadError(name, "empty data (0 bytes)")
            img = _decoded(_open(io.BytesIO(source), name, max_pixels, jpeg_draft))
        if img.width == 0 or img.height == 0:
            raise ImageLoadError(name, f"image has no pixels ({img.width}×{img.height})")
        return _to_rgb(img)
    except ImageLoadError:
        raise
    except Exception as exc:
        # Pillow's decoders signal bad input with many exception types (OSError, SyntaxError, ValueError,
        # struct.error, zlib.error, ...); a photo library always holds a few broken files, and each must
        # come back as one ImageLoadError that the caller can record and skip.
        raise ImageLoadError(name, _reason(exc, name)) from exc


def _open_regular(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES):
    """The file opened for reading, once it is known to be a regular, non-empty file of at most
    `max_bytes`: a FIFO, a device (/dev/zero linked as a .jpg) or a huge sparse file is refused before
    a byte is read. Opened non-blocking, so a FIFO cannot hang the open itself."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageLoadError(path, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ImageLoadError(path, f"not a regular file ({_file_kind(info.st_mode)})")
        if info.st_size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        if info.st_size > max_bytes:
            raise ImageLoadError(
                path, f"file too large ({info.st_size:,} bytes, limit {max_bytes:,}); not read"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_image_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file, read only when it is a regular file of at most `max_bytes`
    (ImageLoadError otherwise, with the reason; OSError when the system refuses the read); never more
    than `max_bytes` are read, even from a file that grows meanwhile."""
    with _open_regular(path, max_bytes) as f:
        content = f.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise ImageLoadError(path, f"file grew past {max_bytes:,} bytes while being read; not read")
    return content


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


_heif_registered: bool | None = None


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF through pillow-heif (the `heic` extra), once; False without it."""
    global _heif_registered
    if _heif_registered is None:
        try:
            import pillow_heif
        except ImportError:
            _heif_registered = False
        else:
            pillow_heif.register_heif_opener()
            _heif_registered = True
    return _heif_registered


def _is_heif(fp: Any) -> bool:
    fp.seek(0)
    head = fp.read(12)
    fp.seek(0)
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _open(fp: Any, name: str | os.PathLike, max_pixels: int | None, jpeg_draft: int | None) -> Image.Image:
    """Open (header only) and check the size before any pixel is decoded; a JPEG may be asked for a
    reduced-scale decode (a square request: EXIF orientation may still turn it)."""
    # Pillow warns above its own MAX_IMAGE_PIXELS; `max_pixels` is the limit here, so the warning is
    # silenced and the size checked below instead (Pillow's global setting is left untouched).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except UnidentifiedImageError:
            # HEIC needs a plugin, registered only when such a file comes by (it costs an import).
            if not _is_heif(fp):
                raise
            if not _register_heif():
                raise ImageLoadError(
                    name, "a HEIC/HEIF image: pip install 'siglip2-sdk[heic]' (pillow-heif) to read it"
                ) from None
            img = Image.open(fp)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageLoadError(
                name,
                f"image too large ({img.width}×{img.height} = {img.width * img.height:,} pixels, limit "
                f"{max_pixels:,}; a decompression bomb guard, raise max_pixels to load it)",
            )
        if jpeg_draft and img.format == "JPEG":
            img.draft("RGB", (jpeg_draft, jpeg_draft))
        img.load()
    return img


def _decoded(img: Image.Image) -> Image.Image:
    """Force the full decode (so truncated data fails here) and apply the EXIF orientation."""
    img.load()
    if img.getexif().get(ExifTags.Base.Orientation, 1) not in (1, None):
        img = ImageOps.exif_transpose(img)
    return img


def _reason(exc: Exception, name: str | os.PathLike) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large ({exc})"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        # Windows reports opening a directory as a permission error.
        return "is a directory" if Path(name).is_dir() else "permission denied"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read file ({exc.strerror})"
    return f"truncated or corrupt image data ({exc})"


def _from_array(a: np.ndarray) -> Image.Image:
    if a.dtype != np.uint8:
        raise ImageLoadError("<array>", f"array dtype is {a.dtype}; pass uint8 values 0..255")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageLoadError(
            "<array>", f"array shape {a.shape} is not HxW, HxWx3 or HxWx4; pass a list for several images"
        )
    if a.size == 0:
        raise ImageLoadError("<array>", f"array shape {a.shape} has no pixels")
    return Image.fromarray(np.ascontiguousarray(a))


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; transparent pixels become white (dropping alpha would show black there)."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        img = _high_depth_to_l(img)
    if img.mode == "La":  # Pillow converts premultiplied La to nothing but LA
        img = img.convert("LA")
    if img.mode in _ALPHA_MODES or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale 16-bit / 32-bit / float greyscale to 8 bits; Pillow's own convert("L") clips at 255 instead."""
    values = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0)
        # Float images carry no range; like transformers, treat values within [0, 1] as that range and
        # anything else as 0..255.
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
    else:
        # 16-bit greyscale PNGs open as I;16 (or as I, 32-bit, in older Pillow): 0..65535 is the range.
        values = np.clip(values.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def preprocess_one(image: ImageSource, spec: ImagePreprocessing) -> np.ndarray:
    """One image as float32 (3, H, W), ready for the image tower."""
    return normalize(resized_rgb(image, spec), spec)


def resized_rgb(image: ImageSource, spec: ImagePreprocessing, *, jpeg_draft: bool = False) -> np.ndarray:
    """The decoding and resizing half of `preprocess_one`: uint8 (H, W, 3) at the model's size
    (`jpeg_draft`: a large JPEG is decoded at reduced scale first, see `load_image`)."""
    height, width = spec.size
    draft = max(height, width) if jpeg_draft else None
    return np.asarray(load_image(image, jpeg_draft=draft).resize((width, height), _RESAMPLE[spec.resample]))


def normalize(rgb: np.ndarray, spec: ImagePreprocessing) -> np.ndarray:
    """The arithmetic half of `preprocess_one`: uint8 (..., H, W, 3) -> float32 (..., 3, H, W), one
    image or a batch of them."""
    x = rgb.astype(np.float32) * np.float32(spec.rescale_factor)
    x = (x - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(images: ImageSource | Sequence[ImageSource], spec: ImagePreprocessing) -> np.ndarray:
    """A single image or a sequence of them as float32 (N, 3, H, W)."""
    if isinstance(images, ImageSource):
        images = [images]
    batch = np.empty((len(images), 3, *spec.size), dtype=np.float32)
    for i, image in enumerate(images):
        batch[i] = preprocess_one(image, spec)
    return batch
