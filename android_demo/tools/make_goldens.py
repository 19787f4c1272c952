"""Golden files for the Android app's pure-JVM core, written by the Python SDK itself.

The JVM tests (android_demo/run-jvm-tests) check that the phone tokenizes, lowercases, preprocesses,
reads bundles and ranks exactly like siglip2-sdk, by comparing against what this script writes:

  tokens.json       token ids of multilingual captions (emoji names in 14 languages, hand-picked hard
                    cases, demo-corpus captions when artifacts/data exists) from the SDK's Tokenizer
  lowercase.json    Python's str.lower() for every code point, and the Final_Sigma context classes
  images.json       PNG inputs (scikit-image photos, synthetic sizes/aspects, alpha, EXIF orientations,
                    every resample filter) with the SDK's preprocessed float32 pixels beside them
  search.json       unit vectors and queries with the expected top-k (dyadic vectors make exact ties)
  bundles.json      a bundle written by core.bundle plus broken copies, with the SDK's verdict on each
  real-bundles.json the SDK's verdict on the bundles exported on this machine (artifacts/bundles), if any

Needs no demo corpus (CI does not build it); the Gemma tokenizer is fetched by core.assets. Run with
the project's venv: `.venv/bin/python android_demo/tools/make_goldens.py`. Skips the work when the
inputs (this file, the SDK modules it mirrors, the tokenizer, library versions) did not change.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import unicodedata
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from siglip2_sdk.core import bundle as bundle_module
from siglip2_sdk.core import preprocess as preprocess_module
from siglip2_sdk.core import tokenizer as tokenizer_module
from siglip2_sdk.core.assets import fetch_gemma_tokenizer
from siglip2_sdk.core.bundle import Manifest, TextPreprocessing, describe_file, verify_bundle, write_manifest
from siglip2_sdk.core.errors import BundleError
from siglip2_sdk.core.fileio import sha256_file
from siglip2_sdk.core.preprocess import ImagePreprocessing, preprocess_one
from siglip2_sdk.core.tokenizer import Tokenizer

ANDROID_DEMO = Path(__file__).resolve().parents[1]
REPO = ANDROID_DEMO.parent
DEFAULT_OUT = ANDROID_DEMO / "build" / "goldens"
CORPUS = REPO / "artifacts" / "data"
TEXT_LENGTH = 64
SHORT_LENGTH = 16  # the demo student's context: truncation shows up on ordinary captions
MAX_CORPUS_CAPTIONS = 3000
MAX_CORPUS_IMAGES = 6
MAX_CODE_POINT = 0x10FFFF

HARD_CASES = [
    # Mixed scripts and emoji
    "a photo of 東京 tower 🗼 at night",
    "ein rotes Fahrrad 🚲 vor der Kölner Domplatte",
    "café ☕️ au lait, s'il vous plaît",
    "👩🏽‍🚀 astronaut with 🇯🇵 flag",
    "🙂👍🏽👨‍👩‍👧‍👦🏳️‍🌈",
    "😀" * 40,
    # Case mapping: Python's str.lower(), not Java's default locale
    "ΟΔΟΣ ΣΑΣ ΣΑΣ. Σ ΑΣ' Σ1 ΑΣ̈",
    "İSTANBUL DİYARBAKIR IĞDIR",
    "ǅemal ǈuba ǋiva",
    "STRASSE ẞ GROẞ",
    "K Ω Å",  # Kelvin, ohm, angstrom signs
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ",
    "𐐀𐐁𐐂 Deseret",
    "𞤀𞤁 Adlam",
    "Ꭰ Ꭱ Cherokee",
    "Ა Ბ Mtavruli",
    "𝐀𝐁𝐂 math bold",
    "ﬁ ﬂ ligatures",
    # Scripts
    "ภาพถ่ายของแมวบนโซฟาสีแดง",
    "صورة لقطة على أريكة حمراء",
    "العَرَبِيَّة مع تشكيل",
    "תמונה של חתול על ספה",
    "एक लाल साइकिल की तस्वीर",
    "একটি লাল সাইকেলের ছবি",
    "சிவப்பு மிதிவண்டியின் படம்",
    "一辆红色的自行车停在街边",
    "赤い自転車の写真、カタカナ、ひらがな",
    "빨간 자전거 사진",
    "ᄀᄁᄂ 한글 자모",
    "Ελληνικά γράμματα",
    "кошка на красном диване",
    "Tiếng Việt có dấu",
    # Whitespace
    "",
    " ",
    "   ",
    "  leading and trailing  ",
    "tab\tand\nnewline\r\n",
    "no\u00a0break\u3000ideographic\u2009thin",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "e\u0301 combining versus \u00e9 precomposed",
    "\x00\x01\x7f control",
    # Special and added tokens stay text (encode_special_tokens), non-special added tokens do not
    "<eos>",
    "<pad> <bos> <unk>",
    "a<mask>b",
    "</code> <code> </sub>",
    "<start_of_turn>user",
    "<unused0><unused99>",
    "[@BOS@] <2mass>",
    "<0x41> byte token text",
    "▁already▁marked",
    # Merge priority and byte fallback
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 50,
    "1234567890 3.14159 2025-01-01",
    "https://example.com/path?query=1&b=2#frag",
    "def f(x):\n    return x ** 2",
    "\U000e0041 tag characters \U0001fbf9 \U00010fff",
    "㊗️ ㍿ ℡ ™ № ⅷ",
    # Very long text: truncation keeps EOS
    "a very long caption " * 40,
    " ".join(["Mehrsprachige Bildunterschrift mit Umlauten äöü"] * 12),
]


def fingerprint(tokenizer_path: Path) -> str:
    """Everything the goldens depend on: when none of it changed, the files on disk are current."""
    h = hashlib.sha256()
    for path in (Path(__file__), Path(tokenizer_module.__file__), Path(preprocess_module.__file__)):
        h.update(path.read_bytes())
    h.update(Path(bundle_module.__file__).read_bytes())
    stat = tokenizer_path.stat()
    h.update(f"{tokenizer_path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for package in ("tokenizers", "pillow", "numpy", "emoji", "scikit-image"):
        h.update(f"{package}={metadata.version(package)}".encode())
    h.update(sys.version.encode())
    for shard in sorted(CORPUS.glob("test-*.tar")):
        h.update(f"{shard.name}:{shard.stat().st_size}".encode())
    for manifest in sorted((REPO / "artifacts" / "bundles").glob("*/manifest.json")):
        h.update(f"{manifest}:{manifest.stat().st_mtime_ns}".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- text


def clean_name(name: str) -> str:
    """`:grinning_face:` -> `grinning face`, as the demo corpus names its emoji."""
    return " ".join(name.strip(":").replace("_", " ").split())


def emoji_captions() -> list[tuple[str, str]]:
    """Every emoji's name in the 14 languages of PyPI `emoji`, plus the emoji themselves."""
    import emoji

    emoji.config.load_language()
    captions = []
    for text, data in sorted(emoji.EMOJI_DATA.items()):
        captions.append(("emoji", text))
        captions.extend((f"emoji-{lang}", clean_name(data[lang])) for lang in emoji.LANGUAGES if lang in data)
    # The raw names keep colons and underscores, which tokenize differently.
    captions.extend(("emoji-raw", data["en"]) for _, data in sorted(emoji.EMOJI_DATA.items())[::7])
    return captions


def corpus_captions() -> list[tuple[str, str]]:
    """Captions of the demo corpus test split, when it was built on this machine."""
    from siglip2_sdk.core.shards import iter_examples

    shards = sorted(CORPUS.glob("test-*.tar"))
    captions: list[tuple[str, str]] = []
    for example in iter_examples(shards):
        captions.extend((f"corpus-{lang}", text) for lang, text in sorted(example.captions.items()))
        if len(captions) >= MAX_CORPUS_CAPTIONS:
            break
    return captions[:MAX_CORPUS_CAPTIONS]


def unique(captions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    kept = []
    for source, text in captions:
        if text not in seen:
            seen.add(text)
            kept.append((source, text))
    return kept


def write_tokens(out: Path, tokenizer_path: Path) -> int:
    tokenizer = Tokenizer.from_file(tokenizer_path, length=TEXT_LENGTH)
    short = Tokenizer.from_file(tokenizer_path, length=SHORT_LENGTH)
    captions = unique([("hard", text) for text in HARD_CASES] + emoji_captions() + corpus_captions())
    texts = [text for _, text in captions]
    full = [tokenizer.encode(text) for text in texts]
    rows = tokenizer(texts)
    short_rows = short(texts)
    cases = []
    for i, (source, text) in enumerate(captions):
        case = {"source": source, "text": text, "ids": full[i]}
        # Rows are the truncation/padding layout: checked on every hard case and on a spread of the rest.
        if source == "hard" or i % 25 == 0:
            case["row"] = rows[i].tolist()
            case["short_row"] = short_rows[i].tolist()
        cases.append(case)
    payload = {
        "tokenizer": str(tokenizer_path),
        "tokenizer_sha256": sha256_file(tokenizer_path),
        "length": TEXT_LENGTH,
        "short_length": SHORT_LENGTH,
        "pad_id": tokenizer.pad_id,
        "eos_id": tokenizer.eos_id,
        "cases": cases,
    }
    (out / "tokens.json").write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return len(cases)


def ranges(code_points: list[int]) -> list[list[int]]:
    """Sorted code points as inclusive [first, last] runs (keeps the file small)."""
    runs: list[list[int]] = []
    for cp in code_points:
        if runs and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return runs


def write_lowercase(out: Path) -> int:
    """Python's lowercasing for every code point, and the two character classes of its Final_Sigma rule,
    observed through str.lower() itself: the Σ of `cΣ` is final when c is cased (and not case-ignorable),
    the Σ of `AcΣ` when c is case-ignorable or cased."""
    changed, cased, ignorable = [], [], []
    for cp in range(MAX_CODE_POINT + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        lower = c.lower()
        if lower != c:
            changed.append([cp, lower])
        cased_not_ignorable = (c + "Σ").lower()[-1] == "ς"
        ignorable_or_cased = ("A" + c + "Σ").lower()[-1] == "ς"
        if cased_not_ignorable:
            cased.append(cp)
        elif ignorable_or_cased:
            ignorable.append(cp)
    payload = {
        "python": sys.version.split()[0],
        "unicode": unicodedata.unidata_version,
        "changed": changed,
        "cased": ranges(cased),
        "case_ignorable": ranges(ignorable),
    }
    (out / "lowercase.json").write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return len(changed)


# -------------------------------------------------------------------------------------------- images


def sample_photos() -> dict[str, Image.Image]:
    """scikit-image's bundled photos (no download), as 8-bit RGB or RGBA."""
    from skimage import data

    photos = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "colorwheel"):
        photos[name] = Image.fromarray(getattr(data, name)()).convert("RGB")
    photos["camera-gray"] = Image.fromarray(data.camera()).convert("RGB")
    photos["logo-rgba"] = Image.fromarray(data.logo()).convert("RGBA")
    return photos


def synthetic(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 4 if mode == "RGBA" else 3
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = rng.choice(np.array([0, 1, 64, 128, 254, 255], dtype=np.uint8), size=(height, width))
    return Image.fromarray(pixels, mode)


def gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(255, 0, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, (x + y) / 2], -1).round().astype(np.uint8), "RGB")


def corpus_images() -> dict[str, Image.Image]:
    from siglip2_sdk.core.preprocess import load_image
    from siglip2_sdk.core.shards import iter_examples

    images = {}
    for example in iter_examples(sorted(CORPUS.glob("test-*.tar"))):
        decoded = Image.open(io.BytesIO(example.image))
        # RGBA keeps the transparency the SDK composites onto white; ImageIO reads RGB/RGBA PNGs exactly.
        has_alpha = decoded.mode in ("RGBA", "LA", "PA") or "transparency" in decoded.info
        images[f"corpus-{example.key}"] = (
            decoded.convert("RGBA") if has_alpha else load_image(example.image).convert("RGB")
        )
        if len(images) >= MAX_CORPUS_IMAGES:
            break
    return images


def image_cases() -> list[tuple[str, Image.Image, ImagePreprocessing, int]]:
    """(name, image, spec, EXIF orientation) for every golden image."""
    square = {size: ImagePreprocessing(size=(size, size)) for size in (32, 64, 224, 256, 384)}
    photos = sample_photos()
    cases = [
        ("astronaut-256", photos["astronaut"], square[256], 1),
        ("coffee-224", photos["coffee"], square[224], 1),
        ("chelsea-384", photos["chelsea"], square[384], 1),
        ("rocket-32", photos["rocket"], square[32], 1),
        ("hubble-256", photos["hubble_deep_field"], square[256], 1),
        ("colorwheel-64", photos["colorwheel"], square[64], 1),
        ("camera-gray-64", photos["camera-gray"], square[64], 1),
        ("logo-rgba-256", photos["logo-rgba"], square[256], 1),
        ("pixel-1x1-32", synthetic(1, 1, 1), square[32], 1),
        ("tiny-7x3-32", synthetic(7, 3, 2), square[32], 1),
        ("same-size-32", synthetic(32, 32, 3), square[32], 1),
        ("panorama-1000x10-64", synthetic(1000, 10, 4), square[64], 1),
        ("tall-9x700-32", synthetic(9, 700, 5), square[32], 1),
        # Pillow runs the vertical pass first when the height shrinks by more than twice the width.
        ("portrait-coffee-224", photos["coffee"].transpose(Image.Transpose.ROTATE_90), square[224], 1),
        ("vertical-first-boundary", synthetic(100, 200, 8), ImagePreprocessing(size=(100, 50)), 1),
        ("vertical-first-just-past", synthetic(100, 201, 9), ImagePreprocessing(size=(100, 50)), 1),
        ("noise-rgba-97x61-32", synthetic(97, 61, 6, "RGBA"), square[32], 1),
        ("gradient-non-square", gradient(301, 203), ImagePreprocessing(size=(24, 40)), 1),
        (
            "imagenet-mean-std",
            photos["chelsea"],
            ImagePreprocessing(size=(64, 64), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
            1,
        ),
    ]
    for resample in ("nearest", "bicubic", "lanczos", "box", "hamming"):
        spec = ImagePreprocessing(size=(48, 48), resample=resample)
        cases.append((f"{resample}-down", photos["coffee"], spec, 1))
        cases.append((f"{resample}-up", synthetic(13, 21, 7), spec, 1))
    for orientation in range(1, 9):
        cases.append(
            (f"exif-{orientation}", gradient(61, 37), ImagePreprocessing(size=(24, 40)), orientation)
        )
    cases.extend((name, image, square[32], 1) for name, image in corpus_images().items())
    return cases


def write_images(out: Path) -> int:
    folder = out / "images"
    folder.mkdir()
    entries = []
    for name, image, spec, orientation in image_cases():
        # The JVM gets raw pixels (ImageIO ignores EXIF, as Bitmap decoding does): it must rotate them
        # itself, while the SDK applies the orientation tag when it loads the file.
        raw = folder / f"{name}.png"
        image.save(raw)
        source = raw
        if orientation != 1:
            exif = Image.Exif()
            exif[0x0112] = orientation
            source = folder / f"{name}.exif.png"
            image.save(source, exif=exif)
        pixels = preprocess_one(source, spec)
        pixels.astype("<f4").tofile(folder / f"{name}.f32")
        if source != raw:
            source.unlink()
        entries.append(
            {
                "name": name,
                "png": raw.name,
                "pixels": f"{name}.f32",
                "width": image.width,
                "height": image.height,
                "orientation": orientation,
                "image": spec.to_dict(),
            }
        )
    (out / "images.json").write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return len(entries)


# -------------------------------------------------------------------------------------------- search


def dyadic_unit_vectors(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Four entries of ±1/2: unit length, and every dot product between them is exact in float32 in any
    summation order, so equal scores are real ties for the SDK and the phone alike."""
    vectors = np.zeros((count, dim), np.float32)
    for row in vectors:
        row[rng.choice(dim, 4, replace=False)] = rng.choice(np.array([-0.5, 0.5], np.float32), 4)
    return vectors


def sequential_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Dot products summed left to right in float32, as the JVM loop does (BLAS may order sums otherwise)."""
    scores = np.zeros(len(matrix), np.float32)
    for d in range(matrix.shape[1]):
        scores = scores + matrix[:, d] * query[d]
    return scores


def write_search(out: Path, dim: int = 64, k: int = 10) -> int:
    rng = np.random.default_rng(7)
    random_vectors = rng.standard_normal((700, dim)).astype(np.float32)
    random_vectors /= np.linalg.norm(random_vectors, axis=1, keepdims=True)
    dyadic = dyadic_unit_vectors(300, dim, rng)
    matrix = np.concatenate([random_vectors, dyadic, dyadic[:40]])  # exact duplicates tie too
    matrix = matrix[rng.permutation(len(matrix))]
    queries = np.concatenate(
        [rng.standard_normal((20, dim)).astype(np.float32), dyadic_unit_vectors(20, dim, rng)]
    )
    queries[:20] /= np.linalg.norm(queries[:20], axis=1, keepdims=True)
    expected = []
    for query in queries:
        scores = sequential_scores(matrix, query)
        top = np.argsort(-scores, kind="stable")[:k]
        # The SDK's own search (sdk/index.py) must rank the same way.
        sdk_top = np.argsort(-(matrix @ query), kind="stable")[:k]
        if not np.array_equal(top, sdk_top):
            raise SystemExit("golden search: the sequential ranking differs from the SDK's; change the seed")
        expected.append({"top": top.tolist(), "scores": [float(s) for s in scores[top]]})
    matrix.astype("<f4").tofile(out / "vectors.f32")
    queries.astype("<f4").tofile(out / "queries.f32")
    payload = {"dim": dim, "count": len(matrix), "k": k, "vectors": "vectors.f32", "queries": "queries.f32"}
    payload["expected"] = expected
    (out / "search.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return len(queries)


# ------------------------------------------------------------------------------------------- bundles


def good_bundle(folder: Path) -> Manifest:
    folder.mkdir(parents=True)
    (folder / "image.tflite").write_bytes(b"image tower bytes")
    (folder / "text.tflite").write_bytes(b"text tower bytes")
    (folder / "tokenizer.json").write_bytes(b'{"model": {}}')
    manifest = Manifest(
        model_id="golden-student",
        runtime="litert",
        precision="int8",
        quantization="dynamic int8, per-channel weights",
        embed_dim=96,
        image=ImagePreprocessing(size=(32, 48), resample="bilinear"),
        text=TextPreprocessing(length=16, pad_id=0, eos_id=1, lowercase=True),
        logit_scale=9.8,
        logit_bias=-10.0,
        files={
            "image_model": describe_file(folder, "image.tflite"),
            "text_model": describe_file(folder, "text.tflite"),
            "tokenizer": describe_file(folder, "tokenizer.json"),
        },
        batch_size={"image": 8, "text": 1},
        max_batch={"image": None, "text": None},
        parity={"image_cosine_min": 0.997, "t2i_top1_agreement": 0.99},
        created_by="make_goldens.py",
    )
    write_manifest(folder, manifest)
    return manifest


def edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")


BROKEN = {
    "tampered-file": lambda f: (f / "text.tflite").write_bytes(b"text tower bytez"),
    "missing-file": lambda f: (f / "image.tflite").unlink(),
    "failed-parity": lambda f: edit_manifest(f, lambda m: m.update(status="failed")),
    "format-version-2": lambda f: edit_manifest(f, lambda m: m.update(format_version=2)),
    "no-format-version": lambda f: edit_manifest(f, lambda m: m.pop("format_version")),
    "path-escapes": lambda f: edit_manifest(
        f, lambda m: m["files"]["tokenizer"].update(path="../tokenizer.json")
    ),
    "absolute-path": lambda f: edit_manifest(f, lambda m: m["files"]["tokenizer"].update(path="/etc/passwd")),
    "unknown-runtime": lambda f: edit_manifest(f, lambda m: m.update(runtime="coreml")),
    "missing-role": lambda f: edit_manifest(f, lambda m: m["files"].pop("text_model")),
    "unknown-key": lambda f: edit_manifest(f, lambda m: m.update(colour="blue")),
    "missing-key": lambda f: edit_manifest(f, lambda m: m.pop("embed_dim")),
    "bad-resample": lambda f: edit_manifest(f, lambda m: m["image"].update(resample="area")),
    "zero-std": lambda f: edit_manifest(f, lambda m: m["image"].update(std=[0.5, 0.0, 0.5])),
    "not-json": lambda f: (f / "manifest.json").write_text("{not json", encoding="utf-8"),
    "no-manifest": lambda f: (f / "manifest.json").unlink(),
}


def write_bundles(out: Path) -> int:
    root = out / "bundles"
    manifest = good_bundle(root / "good")
    cases = [
        {"name": "good", "ok": True, "manifest": json.loads((root / "good" / "manifest.json").read_text())}
    ]
    for name, breakage in BROKEN.items():
        shutil.copytree(root / "good", root / name)
        breakage(root / name)
        try:
            verify_bundle(root / name)
        except BundleError as exc:
            cases.append({"name": name, "ok": False, "python_error": str(exc)})
        else:
            raise SystemExit(f"golden bundle '{name}' was accepted by the SDK; the case is wrong")
    verify_bundle(root / "good")
    assert manifest.status == "ok"
    (out / "bundles.json").write_text(json.dumps(cases, indent=1), encoding="utf-8")
    (out / "real-bundles.json").write_text(json.dumps(real_bundles(), indent=1), encoding="utf-8")
    return len(cases)


def real_bundles() -> list[dict]:
    """The SDK's verdict on every bundle exported on this machine (artifacts/bundles), if any."""
    verdicts = []
    for folder in sorted(p for p in (REPO / "artifacts" / "bundles").glob("*") if p.is_dir()):
        try:
            manifest = verify_bundle(folder, allow_failed=True)
        except BundleError as exc:
            verdicts.append({"path": str(folder), "ok": False, "python_error": str(exc)})
        else:
            verdicts.append(
                {"path": str(folder), "ok": True, "model_id": manifest.model_id, "status": manifest.status}
            )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="rewrite even when the inputs did not change")
    args = parser.parse_args()
    tokenizer_path = fetch_gemma_tokenizer()
    stamp = args.out / "FINGERPRINT"
    current = fingerprint(tokenizer_path)
    if not args.force and stamp.is_file() and stamp.read_text() == current:
        print(f"goldens in {args.out} are up to date")
        return
    staging = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    counts = {
        "captions": write_tokens(staging, tokenizer_path),
        "lowercase mappings": write_lowercase(staging),
        "images": write_images(staging),
        "search queries": write_search(staging),
        "bundles": write_bundles(staging),
    }
    (staging / "FINGERPRINT").write_text(current)
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    print(f"goldens in {args.out}: " + ", ".join(f"{n:,} {what}" for what, n in counts.items()))


if __name__ == "__main__":
    main()
