"""Reading img2dataset-layout WebDataset shards without torch."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.shards import expand_shards, iter_shard


def write_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_samples_group_by_key_and_captions_come_from_json_or_txt(tmp_path):
    shard = write_tar(
        tmp_path / "a.tar",
        {
            "0001.jpg": b"jpeg-bytes",
            "0001.txt": b"a red circle\n",
            "0002.png": b"png-bytes",
            "0002.json": json.dumps(
                {"captions": {"en": "blue", "de": "blau"}, "labels": {"c": "x"}}
            ).encode(),
            "0003.txt": b"caption without an image",
            "dir/0004.png": b"nested",
            "dir/0004.json": json.dumps({"caption": "img2dataset style"}).encode(),
        },
    )
    examples = list(iter_shard(shard))
    assert [e.key for e in examples] == ["0001", "0002", "dir/0004"]
    assert examples[0].captions == {"en": "a red circle"} and examples[0].image_ext == "jpg"
    assert examples[1].captions == {"en": "blue", "de": "blau"} and examples[1].labels == {"c": "x"}
    assert examples[2].captions == {"en": "img2dataset style"}


def test_patterns_folders_globs_and_braces(tmp_path):
    for i in range(3):
        write_tar(tmp_path / f"train-{i:06d}.tar", {})
    assert len(expand_shards(tmp_path)) == 3
    assert len(expand_shards(str(tmp_path / "train-*.tar"))) == 3
    assert len(expand_shards(str(tmp_path / "train-{000000..000001}.tar"))) == 2


def test_missing_shards_are_one_clear_error(tmp_path):
    with pytest.raises(Siglip2Error, match="not found"):
        expand_shards(str(tmp_path / "data-{000000..000002}.tar"))
    with pytest.raises(Siglip2Error, match="no .tar shards"):
        expand_shards(tmp_path)


def test_corrupt_shard_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x00not a tar" * 100)
    with pytest.raises(Siglip2Error, match="cannot read shard"):
        list(iter_shard(bad))
