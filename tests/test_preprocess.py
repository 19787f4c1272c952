"""Image preprocessing: the pixels the model sees, and one clear error for every file it cannot read."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siglip2_sdk.core.errors import ImageLoadError
from siglip2_sdk.core.preprocess import (
    DEFAULT_MAX_PIXELS,
    ImagePreprocessing,
    load_image,
    normalize,
    preprocess,
    preprocess_one,
    resized_rgb,
)

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera"]  # camera() is greyscale
SIZES = [(224, 224), (256, 256), (224, 320)]


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)())


@pytest.fixture(scope="module")
def hf_siglip_pil():
    """transformers' reference: the PIL backend of SiglipImageProcessor (a dev dependency)."""
    module = pytest.importorskip("transformers.models.siglip.image_processing_pil_siglip")
    return module.SiglipImageProcessorPil


def hf_pixels(processor, images: list[Image.Image]) -> np.ndarray:
    return processor(images, return_tensors="np")["pixel_values"]


def save(img: Image.Image, path: Path, **params) -> Path:
    img.save(path, **params)
    return path


# --- the spec ---------------------------------------------------------------------------------------


def test_spec_defaults_follow_big_vision():
    spec = ImagePreprocessing(size=(256, 256))
    assert spec.resample == "bilinear"
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)
    assert spec.rescale_factor == pytest.approx(1 / 255)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": (0, 224)},
        {"size": (224,)},
        {"size": (224.5, 224)},
        {"size": (224, 224), "resample": "cubic"},
        {"size": (224, 224), "mean": (0.5, 0.5)},
        {"size": (224, 224), "std": (0.5, 0.0, 0.5)},
        {"size": (224, 224), "rescale_factor": 0},
    ],
)
def test_spec_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        ImagePreprocessing(**kwargs)


def test_spec_round_trips_through_manifest_json():
    spec = ImagePreprocessing(size=(384, 256), resample="bicubic", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    assert ImagePreprocessing.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match="crop"):
        ImagePreprocessing.from_dict({"size": [224, 224], "crop": True})


def test_reads_a_siglip2_preprocessor_config():
    config = {
        "do_convert_rgb": None,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor",
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 256, "width": 256},
    }
    assert ImagePreprocessing.from_hf_config(config) == ImagePreprocessing(size=(256, 256))


def test_hf_config_nulls_take_transformers_defaults():
    spec = ImagePreprocessing.from_hf_config({"size": {"height": 224, "width": 224}, "resample": None})
    assert spec.resample == "bicubic"


def test_hf_config_shortest_edge_means_square():
    spec = ImagePreprocessing.from_hf_config({"size": {"shortest_edge": 384}, "resample": 3})
    assert spec.size == (384, 384)
    assert spec.resample == "bicubic"


def test_hf_config_without_normalize_or_rescale():
    spec = ImagePreprocessing.from_hf_config(
        {"size": {"height": 224, "width": 224}, "resample": 2, "do_normalize": False, "do_rescale": False}
    )
    assert spec.mean == (0.0, 0.0, 0.0)
    assert spec.std == (1.0, 1.0, 1.0)
    assert spec.rescale_factor == 1.0


def test_hf_config_without_resize_is_refused():
    with pytest.raises(ValueError, match="do_resize"):
        ImagePreprocessing.from_hf_config({"size": {"height": 224, "width": 224}, "do_resize": False})


def test_hf_config_round_trip():
    spec = ImagePreprocessing(size=(256, 384), resample="bicubic", mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert ImagePreprocessing.from_hf_config(spec.to_hf_config()) == spec


def test_transformers_reads_our_hf_config_as_the_same_transform(hf_siglip_pil):
    spec = ImagePreprocessing(size=(224, 256))
    config = spec.to_hf_config()
    del config["image_processor_type"], config["processor_class"]
    images = [photo("chelsea"), photo("camera")]
    np.testing.assert_allclose(
        preprocess(images, spec), hf_pixels(hf_siglip_pil(**config), images), atol=1e-5
    )


# --- parity with transformers on real photos ---------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", PHOTOS)
def test_matches_transformers_on_real_photos(hf_siglip_pil, name, size):
    from transformers.image_utils import PILImageResampling

    height, width = size
    reference = hf_siglip_pil(
        size={"height": height, "width": width},
        resample=PILImageResampling.BILINEAR,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    img = photo(name)
    ours = preprocess(img, ImagePreprocessing(size=size))
    theirs = hf_pixels(reference, [img])
    assert ours.shape == theirs.shape == (1, 3, height, width)
    assert ours.dtype == np.float32
    # Normalized with std 0.5, one 0..255 pixel step is 2/255.
    assert np.abs(ours - theirs).max() * 0.5 * 255 <= 1.0


# --- odd but valid files -----------------------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "red.jpg", quality=95)
    assert_colour(load_image(path), (255, 0, 0), tol=3)


def test_palette_png_transparent_index_becomes_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.putpixel((3, 3), 1)
    out = load_image(save(img, tmp_path / "p.png", transparency=0))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((3, 3)) == (255, 0, 0)


def test_half_transparent_rgba_png_is_composited_on_white(tmp_path):
    out = load_image(save(Image.new("RGBA", (4, 4), (0, 0, 255, 128)), tmp_path / "a.png"))
    assert_colour(out, (127, 127, 255), tol=1)


def test_grey_with_alpha_is_composited_on_white(tmp_path):
    out = load_image(save(Image.new("LA", (4, 4), (0, 0)), tmp_path / "la.png"))
    assert_colour(out, (255, 255, 255), tol=0)


def test_one_bit_png(tmp_path):
    img = Image.new("1", (4, 4), 0)
    img.putpixel((1, 1), 1)
    out = load_image(save(img, tmp_path / "bw.png"))
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 1)) == (255, 255, 255)


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    out = np.asarray(load_image(save(Image.fromarray(values), tmp_path / "g16.png")))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_32_bit_integer_grey_is_read_as_16_bit_range():
    out = np.asarray(load_image(Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_float_tiff_in_unit_range(tmp_path):
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    out = np.asarray(load_image(save(Image.fromarray(values), tmp_path / "f.tif")))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_float_image_beyond_unit_range_reads_as_0_to_255():
    out = np.asarray(load_image(Image.fromarray(np.array([[-5.0, 100.0, 300.0]], dtype=np.float32))))
    assert out[0, :, 0].tolist() == [0, 100, 255]


def test_animated_gif_gives_first_frame(tmp_path):
    red, green = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 255, 0))
    path = save(red, tmp_path / "anim.gif", save_all=True, append_images=[green], duration=100, loop=0)
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    assert_colour(load_image(path), (255, 0, 0), tol=0)


@pytest.mark.parametrize(
    ("orientation", "red_at"),
    [(6, (27, 4)), (8, (4, 59))],  # 6: turn 90° clockwise to display (top-left → top-right), 8: the other way
)
def test_exif_orientation_is_applied(tmp_path, orientation, red_at):
    img = Image.new("RGB", (64, 32), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 16, 16))  # red top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(img, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (32, 64)
    assert near(out.getpixel(red_at), (255, 0, 0), tol=10)
    assert near(out.getpixel((16, 32)), (0, 0, 255), tol=10)
    with Image.open(path) as opened:
        assert load_image(opened).size == (32, 64), "an opened PIL image is turned the same way"


def test_path_bytes_pil_and_array_give_the_same_pixels(tmp_path):
    img = photo("coffee")
    path = save(img, tmp_path / "coffee.png")
    spec = ImagePreprocessing(size=(224, 224))
    expected = preprocess_one(img, spec)
    for source in (path, str(path), path.read_bytes(), np.asarray(img)):
        np.testing.assert_array_equal(preprocess_one(source, spec), expected)


# --- files it cannot read ----------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    photo("astronaut").save(buffer, fmt)
    return buffer.getvalue()


BAD_FILES = {
    "empty": (lambda: b"", "empty"),
    "truncated_jpeg": (lambda: encoded("JPEG")[:20_000], "truncated or corrupt"),
    "truncated_png": (lambda: encoded("PNG")[:5_000], "truncated or corrupt"),
    "random_bytes": (lambda: np.random.default_rng(0).bytes(4096), "not an image"),
    "text_named_jpg": (lambda: b"holiday photos, see folder 2019\n", "not an image"),
    "bomb_over_pillow_limit": (lambda: png_header(100_000, 100_000), "too large"),
    "bomb_over_our_limit": (lambda: png_header(13_000, 12_000), "too large"),
}


@pytest.mark.filterwarnings("error")  # no DecompressionBombWarning (or anything else) leaks out
@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_raises_image_load_error(tmp_path, kind):
    make, reason = BAD_FILES[kind]
    path = tmp_path / "photo.jpg"
    path.write_bytes(make())
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert reason in info.value.reason
    assert info.value.source == str(path)


@pytest.mark.parametrize("kind", ["empty", "truncated_jpeg", "random_bytes", "bomb_over_our_limit"])
def test_bad_bytes_raise_image_load_error(kind):
    make, reason = BAD_FILES[kind]
    with pytest.raises(ImageLoadError) as info:
        load_image(make())
    assert reason in info.value.reason
    assert info.value.source == "<bytes>"


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")


def test_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_unreadable_file_is_permission_denied(tmp_path, monkeypatch):
    path = save(photo("camera"), tmp_path / "secret.png")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: simulate the refusal where Pillow opens it

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(Image, "open", refuse)
    try:
        with pytest.raises(ImageLoadError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o600)


def test_max_pixels_limits_encoded_input_and_none_lifts_it(tmp_path):
    path = save(Image.new("RGB", (20, 20)), tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)
    assert load_image(path, max_pixels=None).size == (20, 20)
    assert DEFAULT_MAX_PIXELS >= 12_000 * 9_000, "108 MP phone photos must load by default"


def test_pillow_limit_is_left_untouched(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError):
        load_image(png_header(100_000, 100_000))
    assert before == Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(save(Image.new("RGB", (4, 4)), tmp_path / "ok.png"))


# --- arrays and other inputs -------------------------------------------------------------------------


def test_uint8_arrays():
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    assert load_image(rgb).size == (6, 4)
    assert_colour(load_image(rgb), (200, 0, 0), tol=0)
    assert_colour(load_image(np.full((4, 6), 70, dtype=np.uint8)), (70, 70, 70), tol=0)
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)  # fully transparent black
    assert_colour(load_image(rgba), (255, 255, 255), tol=0)


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((4, 4, 3), dtype=np.float64), "dtype"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "shape"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "no pixels"),
    ],
)
def test_bad_arrays(array, reason):
    with pytest.raises(ImageLoadError, match=reason):
        load_image(array)


def test_unsupported_input_type():
    with pytest.raises(ImageLoadError, match="unsupported input type"):
        load_image(42)


# --- the batch -------------------------------------------------------------------------------------


def test_preprocess_takes_one_image_or_a_sequence():
    spec = ImagePreprocessing(size=(224, 320))
    one = preprocess(photo("rocket"), spec)
    two = preprocess([photo("rocket"), photo("camera")], spec)
    assert one.shape == (1, 3, 224, 320)
    assert two.shape == (2, 3, 224, 320)
    assert two.dtype == np.float32
    np.testing.assert_array_equal(two[0], one[0])
    assert two.min() >= -1.0 and two.max() <= 1.0
    assert preprocess([], spec).shape == (0, 3, 224, 320)


def test_preprocess_reports_the_bad_image(tmp_path):
    missing = tmp_path / "gone.jpg"
    with pytest.raises(ImageLoadError) as info:
        preprocess([photo("rocket"), missing], ImagePreprocessing(size=(64, 64)))
    assert info.value.source == str(missing)


def near(pixel: tuple[int, ...], rgb: tuple[int, int, int], tol: int) -> bool:
    return max(abs(p - c) for p, c in zip(pixel, rgb, strict=True)) <= tol


def assert_colour(img: Image.Image, rgb: tuple[int, int, int], tol: int) -> None:
    pixels = np.asarray(img).reshape(-1, 3).astype(int)
    assert np.abs(pixels - np.array(rgb)).max() <= tol, f"{pixels[:3].tolist()} != {rgb}"


def test_normalize_gives_a_batch_exactly_what_it_gives_each_image():
    spec = ImagePreprocessing(size=(24, 24))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]
    rgbs = np.stack([resized_rgb(image, spec) for image in images])
    assert np.array_equal(normalize(rgbs, spec), np.stack([preprocess_one(image, spec) for image in images]))


def test_jpeg_draft_decodes_a_large_jpeg_at_reduced_scale_with_nearly_the_same_pixels():
    """Training's --jpeg-draft: libjpeg's DCT scaling, never below the requested side."""
    import io

    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut()).resize((1024, 1024))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=95)
    jpeg = buffer.getvalue()
    assert load_image(jpeg, jpeg_draft=256).size == (256, 256)
    assert load_image(jpeg, jpeg_draft=300).size == (512, 512)
    spec = ImagePreprocessing(size=(224, 224))
    full, drafted = resized_rgb(jpeg, spec), resized_rgb(jpeg, spec, jpeg_draft=True)
    difference = np.abs(full.astype(np.int16) - drafted.astype(np.int16))
    assert 0 < difference.mean() < 3
    png = io.BytesIO()
    photo.save(png, format="PNG")
    assert load_image(png.getvalue(), jpeg_draft=256).size == (1024, 1024)  # only JPEG has a draft mode
