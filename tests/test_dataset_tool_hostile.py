"""dataset_tool against hostile sources: it never modifies or deletes what it reads, and every bad
file is a reported skip, never a crash, a hang or a leak of a file from outside the source.

Every hostile file (FIFO, links, corrupted zip entries, bombs, bad YAML/JSON) is made by the test.
"""
import json
import os
import pathlib
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dataset_tool
from fashion_data.attributes import VocabularyError, load_vocabulary
from fashion_data.cleaning import _to_uint8
from fashion_data.metadata import MetadataError, load_metadata
from fashion_data.pipeline import BuildOptions, build_dataset
from fashion_data.sources import Source
from fashion_data.writer import DestinationError

RES = 32


def photo_bytes(seed: int) -> bytes:
    import io

    grid = np.random.RandomState(seed).randint(0, 256, (4, 4, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grid).resize((48, 64), Image.Resampling.BICUBIC).save(buffer, "PNG")
    return buffer.getvalue()


def photos(folder: pathlib.Path, count: int = 4) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"p{i}.png").write_bytes(photo_bytes(i))
    return folder


def build(source, dest, **kwargs):
    return build_dataset(BuildOptions(source=str(source), dest=str(dest), resolution=RES, **kwargs), progress=False)


def fates(report) -> dict:
    return {d["file"]: d["reason"] for d in report.dropped}


# ----------------------------------------------------------------------------- point 5: --overwrite and the source


@pytest.mark.parametrize("what", ["source folder", "zip source", "metadata"])
def test_overwrite_never_deletes_a_source_metadata_or_vocabulary_inside_dest(tmp_path, what):
    dest = tmp_path / "work"
    src = photos(dest / "photos")
    kwargs = {}
    if what == "zip source":
        with zipfile.ZipFile(dest / "photos.zip", "w") as zf:
            for path in sorted(src.iterdir()):
                zf.write(path, path.name)
        src = dest / "photos.zip"
    if what == "metadata":
        src = photos(tmp_path / "elsewhere")
        kwargs["metadata"] = str(dest / "titles.csv")
        (dest / "titles.csv").write_text("file,title\np0.png,kente dress\n")
    before = sorted(p.relative_to(tmp_path) for p in dest.rglob("*"))
    with pytest.raises(DestinationError, match="inside --dest"):
        build(src, dest, overwrite=True, **kwargs)
    assert sorted(p.relative_to(tmp_path) for p in dest.rglob("*")) == before


def test_overwrite_only_replaces_a_dataset_this_tool_wrote(tmp_path):
    src = photos(tmp_path / "photos")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_text("years of work")
    with pytest.raises(DestinationError, match="not a dataset written by dataset_tool.py"):
        build(src, folder, overwrite=True)
    assert (folder / "thesis.docx").read_text() == "years of work"
    other_zip = tmp_path / "holiday.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("beach.jpg", b"x")
    with pytest.raises(DestinationError, match="not a dataset written by dataset_tool.py"):
        build(src, other_zip, overwrite=True)
    assert zipfile.ZipFile(other_zip).namelist() == ["beach.jpg"]
    ours = tmp_path / "ours"
    assert build(src, ours).written == 4
    (ours / "00000" / "img00000000.png").unlink()
    assert build(src, ours, overwrite=True).written == 4  # our own dataset is replaced
    assert (ours / "00000" / "img00000000.png").exists()


# ----------------------------------------------------------------------------- point 6: zip sources and workers


def test_a_zip_source_with_several_workers_reads_every_photo(tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(24):
            zf.writestr(f"p{i:02d}.png", photo_bytes(i))
    one = build(archive, tmp_path / "one.zip", workers=1, dedupe=False, near_threshold=-1)
    three = build(archive, tmp_path / "three.zip", workers=3, dedupe=False, near_threshold=-1)
    assert one.written == three.written == 24, fates(three)
    read = lambda p: {n: zipfile.ZipFile(p).read(n) for n in zipfile.ZipFile(p).namelist() if n.endswith(".png")}  # noqa: E731
    assert read(tmp_path / "one.zip") == read(tmp_path / "three.zip")


def _move_zip_offset(source: Source) -> None:
    os.lseek(source._archive().fp.fileno(), 12345, os.SEEK_SET)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers are what share a handle")
def test_a_forked_worker_never_moves_the_zip_offset_of_another_process(tmp_path):
    import multiprocessing

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("p.png", photo_bytes(0) * 4)
    source = Source(archive)
    source.list_files()  # the parent opens the zip before the workers fork, as build_dataset does
    parent_fd = source._archive().fp.fileno()
    os.lseek(parent_fd, 0, os.SEEK_SET)
    worker = multiprocessing.get_context("fork").Process(target=_move_zip_offset, args=(source,))
    worker.start()
    worker.join()
    assert worker.exitcode == 0
    assert os.lseek(parent_fd, 0, os.SEEK_CUR) == 0, "the worker moved the parent's file offset: one shared handle"


# ----------------------------------------------------------------------------- points 7-8: bad files are reported skips


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symlinks")
def test_links_fifos_devices_and_vanished_files_are_reported_not_followed(tmp_path, monkeypatch):
    src = photos(tmp_path / "photos", 2)
    private = tmp_path / "private.png"
    private.write_bytes(photo_bytes(99))  # a perfectly good photo that is not the user's to publish
    (src / "secret.png").symlink_to(private)
    (src / "gone.png").symlink_to(src / "never-existed.png")
    (src / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(src / "pipe.png")
    (src / "inside.png").symlink_to(src / "p0.png")  # a link within the source is fine (a duplicate here)
    listed = Source.list_files
    monkeypatch.setattr(Source, "list_files", lambda self: listed(self) + ["vanished.png"])
    report = build(src, tmp_path / "out.zip", max_file_mb=5)
    got = fates(report)
    assert got["secret.png"] == got["zero.png"] == "symlink_outside_source"
    assert got["gone.png"] == got["vanished.png"] == "unreadable"
    assert got["pipe.png"] == "not_a_regular_file"
    assert got.get("inside.png", got.get("p0.png")) == "exact_duplicate"  # the link is read: same photo twice
    assert report.written == 2
    names = zipfile.ZipFile(tmp_path / "out.zip").namelist()
    assert sum(n.endswith(".png") for n in names) == 2  # the private photo is not in the dataset


def _corrupt_zip(path: pathlib.Path) -> None:
    """photos.zip with a good entry, one whose stored bytes are damaged (bad CRC), one whose header
    claims fewer bytes than it holds, and an 8 KB bzip2 entry that expands to 64 MB."""
    good, damaged, lying = photo_bytes(1), bytearray(photo_bytes(2)), photo_bytes(3)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("good.png", good)
        zf.writestr("damaged.png", bytes(damaged))
        zf.writestr("lying.png", lying)
        zf.writestr(zipfile.ZipInfo("bomb.bmp"), b"\0" * (64 << 20), compress_type=zipfile.ZIP_BZIP2)
    data = bytearray(path.read_bytes())
    at = data.index(bytes(damaged[100:140]))
    data[at + 5] ^= 0xFF
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("lying.png")
    # the size fields of the central directory entry of lying.png (local header sizes are not read)
    central = data.index(b"PK\x01\x02" + data[info.header_offset + 4:info.header_offset + 30][:26][:0], data.index(b"PK\x01\x02"))
    for _ in range(3):
        entry = data.index(b"PK\x01\x02", central)
        name_len = int.from_bytes(data[entry + 28:entry + 30], "little")
        if data[entry + 46:entry + 46 + name_len] == b"lying.png":
            data[entry + 24:entry + 28] = (len(lying) // 2).to_bytes(4, "little")  # uncompressed size
            break
        central = entry + 46
    path.write_bytes(bytes(data))


def test_damaged_zip_entries_and_zip_bombs_are_reported_and_the_run_goes_on(tmp_path):
    archive = tmp_path / "photos.zip"
    _corrupt_zip(archive)
    report = build(archive, tmp_path / "out.zip", workers=2)
    got = fates(report)
    assert report.written == 1 and "good.png" not in got
    assert got["damaged.png"] == got["lying.png"] == "unreadable"
    assert got["bomb.bmp"] == "zip_bomb"
    details = {d["file"]: d["detail"] for d in report.dropped}
    assert "BadZipFile" in details["damaged.png"]


def test_sixteen_bit_greys_convert_with_integers_to_the_rounded_value():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)  # the float64 definition
    assert np.array_equal(_to_uint8(values, "I;16"), expected)
    assert np.array_equal(_to_uint8(values.astype(np.int32), "I"), expected)
    assert np.array_equal(_to_uint8(np.array([[-5, 7, 300]], np.int32), "I"), [[0, 0, 1]])  # 300 > 255: 16-bit
    assert np.array_equal(_to_uint8(np.array([[-5, 7, 200]], np.int32), "I"), [[0, 7, 200]])  # 8-bit values in "I"
    assert np.array_equal(_to_uint8(np.array([[-0.4, 7.6, 300.0]], np.float32), "F"), [[0, 8, 255]])
    big = np.full((3000, 3000), 40000, dtype=np.uint16)
    tracemalloc.start()
    try:
        out = _to_uint8(big, "I;16")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out[0, 0] == round(40000 / 257)
    assert peak < 2 * big.nbytes, f"{peak / 2**20:.0f} MiB to convert {big.nbytes / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- vocabulary and metadata files


@pytest.mark.parametrize("text,message", [
    ("attributes: [1, 2]", "'attributes:' mapping"),
    ("attributes:\n  garment: [dress]", "needs a non-empty 'values:'"),
    ("attributes:\n  garment:\n    values:\n      dress: [gown]", "garment.dress must be a mapping"),
    ("attributes:\n  garment:\n    values:\n      dress: {synonyms: gown}", "garment.dress.synonyms must be a list"),
    ("attributes:\n  garment:\n    values:\n      dress: {synonyms: [[a, b]]}", "synonyms must be a list of words"),
    ("attributes:\n  garment:\n    values:\n      dress: {priority: high}", "priority must be a whole number"),
    ("negators: 3\nattributes: {}", "negators must be a list"),
    ("attributes: {g: {values: {a: {}}}}\ncompounds: {x: [1]}", "compound 'x' must be a mapping"),
    ("attributes: {g: {values: {a: {}}}}\n\tbad", "not valid YAML"),
], ids=["attributes", "values", "value-spec", "synonyms", "nested-synonyms", "priority", "negators", "compounds",
        "yaml-syntax"])
def test_malformed_vocabularies_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "vocabulary.yaml"
    path.write_text(text)
    with pytest.raises(VocabularyError, match=message):
        load_vocabulary(path)


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["attributes:", "  garment:", "    values:", "      dress:", "        synonyms: *a9"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # ~1 KB; expanded: 9**10 = 3.5 billion words
    assert path.stat().st_size < 2000
    with pytest.raises(VocabularyError, match="YAML aliases .* expand to more than"):
        load_vocabulary(path)


def test_nested_or_mistyped_metadata_is_a_message(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MetadataError, match="nested too deeply"):
        load_metadata(deep)
    typed = tmp_path / "typed.json"
    typed.write_text(json.dumps([{"file": "a.png", "title": {"nested": ["x"]}}]))
    with pytest.raises(MetadataError, match="record 1, field 'title' is a dict"):
        load_metadata(typed)


def test_the_cli_prints_one_line_for_a_bad_vocabulary(tmp_path):
    src = photos(tmp_path / "photos", 1)
    vocab = tmp_path / "v.yaml"
    vocab.write_text("attributes:\n  garment:\n    values:\n      dress: [gown]\n")
    result = CliRunner().invoke(dataset_tool.main, ["--source", str(src), "--dest", str(tmp_path / "o.zip"),
                                                    "--vocabulary", str(vocab), "--quiet"])
    assert result.exit_code == 1 and "garment.dress must be a mapping" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ----------------------------------------------------------------------------- temporaries of killed runs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_runs_are_swept_and_scratch_sits_beside_dest(tmp_path, monkeypatch):
    src = photos(tmp_path / "photos", 2)
    dead = _dead_pid()
    for kind in ("partial", "scratch", "old"):
        (tmp_path / f".out.zip.{kind}-{dead}").mkdir()
    live = tmp_path / f".out.zip.scratch-{os.getpid()}-other"  # not ours to judge: no pid at the end
    live.mkdir()
    seen = []
    from fashion_data import writer as writer_module

    original = writer_module.DatasetWriter.add_file
    monkeypatch.setattr(writer_module.DatasetWriter, "add_file",
                        lambda self, name, path: (seen.append(pathlib.Path(path)), original(self, name, path))[1])
    build(src, tmp_path / "out.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photos", "out.zip", live.name])
    assert seen and all(p.parent.parent == tmp_path for p in seen)  # the sidecar was written beside --dest


def test_stale_atomic_temporaries_are_swept_and_live_ones_kept(tmp_path):
    from toolkit.atomic import sweep_stale_temporaries

    dead = _dead_pid()
    stale = tmp_path / f".network.safetensors.a1b2c3d4e5f6-{dead}.tmp"
    old = tmp_path / ".stats.jsonl.0123456789ab.tmp"
    live = tmp_path / f".fakes.png.a1b2c3d4e5f6-{os.getpid()}.tmp"
    for path in (stale, old, live):
        path.write_bytes(b"half")
    os.utime(old, (1, 1))
    assert sorted(sweep_stale_temporaries(tmp_path)) == sorted([stale, old])
    assert [p.name for p in tmp_path.iterdir()] == [live.name]
