"""PhotoIndex shared by real processes: writers at once, a writer beside a long-lived reader, processes
creating one index at the same moment, and a SIGKILL while the ANN index is being built."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siglip2_sdk import Encoder, PhotoIndex

from fixtures import solid_image, tiny_checkpoint

TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("processes"), seed=3)


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return Encoder.load(checkpoint)


def picture(i: int):
    return solid_image(((37 * i) % 256, (91 * i + 50) % 256, (53 * i + 120) % 256), (36 + i % 7, 30))


def assert_consistent(index: PhotoIndex, files: list[Path]) -> None:
    """Every file on disk exactly once, each pointing at a stored vector, and found first by itself."""
    rows = index.db.execute("SELECT path, status, vector_id FROM files").fetchall()
    assert sorted(Path(p.decode()) for p, _, _ in rows) == sorted(f.absolute() for f in files)
    assert all(status == "ok" for _, status, _ in rows)
    stored = {i for (i,) in index.db.execute("SELECT id FROM vectors")}
    assert {vector_id for _, _, vector_id in rows} == stored  # none dangling, none unused
    for file in files:
        same = [h.path for h in index.search(file, k=3) if h.score == pytest.approx(1.0, abs=1e-4)]
        assert str(file.absolute()) in same  # first, or tied with a copy of it


WRITER = """
import sys, time
from siglip2_sdk import Encoder, PhotoIndex
encoder = Encoder.load(sys.argv[1])
embed = encoder.embed_images
def slowly(images, batch_size=32):
    time.sleep(0.05)  # a larger model: the two writers' batches interleave
    return embed(images, batch_size)
encoder.embed_images = slowly
print("ready", flush=True)
sys.stdin.readline()  # start together
with PhotoIndex.open(sys.argv[2], encoder) as index:
    for folder in sys.argv[3:]:
        index.add(folder, batch_size=2)
"""


def test_two_writers_at_once_index_every_file_exactly_once(checkpoint, encoder, tmp_path):
    photos = tmp_path / "photos"
    files = []
    for i in range(24):
        folder = photos / ("a" if i < 12 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        picture(i).save(folder / f"{i:02d}.png")
        files.append(folder / f"{i:02d}.png")
    (photos / "a" / "copy.png").write_bytes(files[3].read_bytes())  # shares a vector with 03.png
    files.append(photos / "a" / "copy.png")
    index_dir = str(tmp_path / "index")  # created by both at once
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(checkpoint), index_dir, *folders],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for folders in ([str(photos)], [str(photos / "b"), str(photos / "a")])
    ]
    assert [writer.stdout.readline().strip() for writer in writers] == ["ready", "ready"]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.flush()
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0]
    with PhotoIndex.open(index_dir, encoder) as index:
        assert_consistent(index, files)
        assert index.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 24


CHANGER = """
import sys
from pathlib import Path
from PIL import Image
from siglip2_sdk import Encoder, PhotoIndex
photos = Path(sys.argv[3])
with PhotoIndex.open(sys.argv[2], Encoder.load(sys.argv[1])) as index:
    print("ready", flush=True)
    for line in sys.stdin:  # "delete NAME new SOURCE NAME"
        _, gone, _, source, name = line.split()
        (photos / gone).unlink()
        Path(source).rename(photos / name)
        index.add(photos)
        print("committed", flush=True)
"""


def test_a_long_lived_reader_sees_each_commit_of_another_process(checkpoint, encoder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        picture(i).save(photos / f"{i:02d}.png")
    with PhotoIndex.open(tmp_path / "index", encoder) as reader:
        reader.add(photos)
        reader.search("a photo", k=3)  # the reader's caches are warm
        writer = subprocess.Popen(
            [sys.executable, "-c", CHANGER, str(checkpoint), str(tmp_path / "index"), str(photos)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout.readline().strip() == "ready"
            for round_ in range(5):
                gone, name = f"{round_:02d}.png", f"new-{round_}.png"
                gone_vector = encoder.embed_images([photos / gone])[0]
                source = tmp_path / f"staged-{round_}.png"
                picture(100 + round_).save(source)
                writer.stdin.write(f"delete {gone} new {source} {name}\n")
                writer.stdin.flush()
                assert writer.stdout.readline().strip() == "committed"
                best = reader.search(photos / name, k=1)
                assert [Path(h.path).name for h in best] == [name]
                assert best[0].score == pytest.approx(1.0, abs=1e-4)
                names = [Path(h.path).name for h in reader.search_by_vector(gone_vector, k=50)]
                assert gone not in names and len(names) == 6 == len(set(names))
            files = sorted(photos.iterdir())
            assert_consistent(reader, files)
        finally:
            writer.stdin.close()
            writer.wait(timeout=60)
    assert writer.returncode == 0


CREATOR = f"""
import sys, time
sys.path.insert(0, {TESTS!r})
from test_index_ann import SyntheticModel, clustered, put
from siglip2_sdk import PhotoIndex
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
with PhotoIndex.open(sys.argv[1], SyntheticModel()) as index:
    put(index, clustered(5, seed=int(sys.argv[3])), 5 * int(sys.argv[3]))
"""


def test_processes_creating_the_same_index_at_once_all_succeed(tmp_path):
    for round_ in range(3):
        folder = tmp_path / f"index-{round_}"
        start = str(time.time() + 2)
        creators = [
            subprocess.Popen(
                [sys.executable, "-c", CREATOR, str(folder), start, str(n)], stderr=subprocess.PIPE, text=True
            )
            for n in range(4)
        ]
        errors = [creator.communicate(timeout=120)[1] for creator in creators]
        assert [creator.returncode for creator in creators] == [0] * 4, errors
        with sqlite3.connect(folder / "catalog.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 20
            assert db.execute("SELECT COUNT(*) FROM meta WHERE key = 'catalog_id'").fetchone()[0] == 1


BUILDER = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {TESTS!r})
import faiss
from test_index_ann import SyntheticModel, clustered, put
from siglip2_sdk import PhotoIndex
index = PhotoIndex.open(sys.argv[1], SyntheticModel(), ann_threshold=100)
put(index, clustered(600, seed=1), 0)
index.add([])  # the first ANN file
put(index, clustered(2000, seed=2), 600)  # grown past 4x: the next add rebuilds it
train = faiss.Index.train
def train_then_wait(self, x):
    train(self, x)
    Path(sys.argv[2]).touch()
    time.sleep(600)
faiss.IndexIVFFlat.train = train_then_wait
index.add([])
"""


def test_sigkill_while_the_ann_index_is_built_leaves_a_usable_index(tmp_path):
    from test_index_ann import SyntheticModel, clustered, same_as_exact, saved_coverage

    ready = tmp_path / "training-done"
    builder = subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path / "index"), str(ready)])
    deadline = time.time() + 120
    while not ready.exists() and time.time() < deadline and builder.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), "the build should have started"
    builder.send_signal(signal.SIGKILL)
    builder.wait()
    assert saved_coverage(tmp_path / "index").count == 600  # the previous file, untouched
    with PhotoIndex.open(tmp_path / "index", SyntheticModel(), ann_threshold=100) as index:
        assert index.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 2600  # nothing lost
        assert same_as_exact(index, clustered(10, seed=7)) >= 0.9
        best = index.search_by_vector(clustered(2000, seed=2)[5], k=1)[0]
        assert best.score == pytest.approx(1.0, abs=1e-5)
        index.add([])
    assert saved_coverage(tmp_path / "index").count == 2600
