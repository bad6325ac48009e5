"""Unit checks of dataset_tool's parts against independent references."""
import io
import itertools
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.fft
from PIL import Image

from fashion_data import cleaning
from fashion_data.cleaning import (CleanOptions, NearDuplicateIndex, Rejected, colour_distance, decode_image,
                                   fingerprint, hamming, normalize_mode, perceptual_hash)
from fashion_data.framing import estimate_background, frame_image
from fashion_data.metadata import MetadataError, load_metadata
from fashion_data.parallel import ordered_map
from fashion_data.sources import Source
from fashion_data.writer import DatasetWriter, archive_name


def encode(image, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_dct_matrix_matches_scipy_orthonormal_dct():
    grey = np.random.RandomState(0).rand(32, 32)
    ours = cleaning._DCT @ grey @ cleaning._DCT.T
    reference = scipy.fft.dctn(grey, type=2, norm="ortho")
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_perceptual_hash_bits_follow_the_median_rule():
    image = Image.fromarray(np.random.RandomState(1).randint(0, 256, (40, 50, 3), dtype=np.uint8))
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = scipy.fft.dctn(grey, type=2, norm="ortho")[:8, :8].ravel()
    expected = sum(2 ** i for i in range(64) if low[i] > np.median(low[1:]))
    assert perceptual_hash(image) == expected


def test_colour_layout_is_the_4x4_block_mean():
    pixels = np.random.RandomState(4).randint(0, 256, (64, 96, 3), dtype=np.uint8)
    phash, layout = fingerprint(Image.fromarray(pixels))
    blocks = pixels.reshape(4, 16, 4, 24, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(np.frombuffer(layout, np.uint8).reshape(4, 4, 3) - blocks).max() <= 1
    assert phash == perceptual_hash(Image.fromarray(pixels))
    assert colour_distance(layout, bytes(48)) == int(np.frombuffer(layout, np.uint8).max())


def test_hamming_counts_differing_bits():
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2 ** 63, 0) == 1


@pytest.mark.parametrize("threshold", [0, 3, 6])
def test_near_duplicate_index_agrees_with_brute_force(threshold):
    rng = np.random.RandomState(threshold)
    hashes = [int(h) for h in rng.randint(0, 2 ** 62, 300, dtype=np.int64)]
    for i in range(0, 300, 7):   # plant neighbours a few bits away
        hashes[i] = hashes[i // 2] ^ sum(1 << int(b) for b in rng.choice(64, rng.randint(0, 9), replace=False))
    index = NearDuplicateIndex(threshold)
    colour = bytes(48)
    kept = []
    for key, value in enumerate(hashes):
        candidates = [(hamming(value, other), order, k) for order, (other, k) in enumerate(kept)
                      if hamming(value, other) <= threshold]
        expected = None if not candidates else (min(candidates)[2], min(candidates)[0])
        assert index.find(value, colour) == expected
        if expected is None:
            index.add(value, colour, str(key))
            kept.append((value, str(key)))


def test_near_duplicate_index_keeps_other_colourways():
    index = NearDuplicateIndex(4, colour_tolerance=20)
    red = np.full((4, 4, 3), (200, 10, 10), np.uint8)
    index.add(12345, red.tobytes(), "red.jpg")
    blue_centre = red.copy()
    blue_centre[1:3, 1:3] = (10, 10, 200)
    assert index.find(12345, blue_centre.tobytes()) is None
    assert index.find(12345 ^ 1, (red + 20).tobytes()) == ("red.jpg", 1)
    assert index.find(12345 ^ 1, (red + 21).tobytes()) is None


def corrupt_pixels() -> bytes:
    """A WebP cut in half: the header parses, the decoder cannot start."""
    data = encode(Image.fromarray(np.random.RandomState(5).randint(0, 256, (40, 40, 3), dtype=np.uint8)), "WEBP")
    return data[: len(data) // 2]


def test_decode_rejects_with_reasons():
    options = CleanOptions(min_size=16, max_aspect=4, max_pixels=10_000)
    cases = {
        b"": "empty_file",
        corrupt_pixels(): "undecodable",
        b"hello": "not_an_image",
        encode(Image.new("RGB", (200, 200))): "too_many_pixels",
        encode(Image.new("RGB", (8, 40))): "too_small",
        encode(Image.new("RGB", (20, 90))): "extreme_aspect",
        encode(Image.new("RGB", (60, 60)), "JPEG")[:300]: "truncated",
    }
    for data, reason in cases.items():
        with pytest.raises(Rejected) as caught:
            decode_image(data, options)
        assert caught.value.reason == reason, (data[:20], caught.value)


def test_size_checks_use_the_rotated_shape():
    image = Image.new("RGB", (40, 10))
    exif = image.getexif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", exif=exif.tobytes())
    assert decode_image(data, CleanOptions()).size == (10, 40)
    assert decode_image(data, CleanOptions(exif_rotate=False)).size == (40, 10)


def test_alpha_composite_matches_float_formula():
    rng = np.random.RandomState(2)
    rgba = rng.randint(0, 256, (8, 9, 4), dtype=np.uint8)
    background = (10, 200, 90)
    out = np.asarray(normalize_mode(Image.fromarray(rgba, "RGBA"), 3, background), dtype=np.float64)
    alpha = rgba[..., 3:4] / 255.0
    expected = rgba[..., :3] * alpha + np.array(background) * (1 - alpha)
    assert np.abs(out - expected).max() <= 1.0


def test_sixteen_bit_grey_scales_to_eight_bits():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    out = np.asarray(normalize_mode(Image.fromarray(values), 3, (255, 255, 255)))
    assert out[..., 0].tolist() == [[0, 1, 128, 255]] and out.shape == (1, 4, 3)


def test_one_channel_output():
    out = normalize_mode(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), 1, (255, 255, 255))
    assert out.mode == "L" and np.asarray(out).min() == 255


def test_background_estimate_is_the_border_median():
    pixels = np.full((60, 80, 3), (240, 235, 230), np.uint8)
    pixels[10:50, 10:70] = (5, 5, 5)
    pixels[0, :5] = (0, 0, 0)   # a little border noise does not move the median
    assert estimate_background(Image.fromarray(pixels)) == (240, 235, 230)


def test_pad_keeps_the_whole_photo_centred_on_the_backdrop():
    photo = Image.new("RGB", (100, 50), (200, 30, 30))
    framed = np.asarray(frame_image(photo, 32, "pad", background=(0, 255, 0)))
    assert framed.shape == (32, 32, 3)
    assert (framed[:7] == (0, 255, 0)).all() and (framed[-7:] == (0, 255, 0)).all()   # 8 rows of pad each side
    assert (framed[9:23] == (200, 30, 30)).all()


def test_center_crop_equals_crop_then_plain_lanczos():
    grid = np.random.RandomState(3).randint(0, 256, (5, 8, 3), dtype=np.uint8)
    photo = Image.fromarray(grid).resize((80, 50), Image.Resampling.BICUBIC)   # a smooth 'photo'
    expected = np.asarray(photo.crop((15, 0, 65, 50)).resize((16, 16), Image.Resampling.LANCZOS), dtype=np.int16)
    ours = np.asarray(frame_image(photo, 16, "center-crop"), dtype=np.int16)
    assert np.abs(ours - expected).max() <= 4   # the box pre-reduction (reducing_gap) changes a few levels at most
    assert frame_image(photo, 16, "resize").size == (16, 16)


def test_rgb_background_on_a_grey_canvas_is_its_luma():
    framed = frame_image(Image.new("L", (8, 4), 0), 8, "pad", background=(255, 0, 0))
    assert framed.mode == "L" and framed.getpixel((0, 0)) == 76 == Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0))


def test_center_crop_wide_is_a_centred_two_to_one_band():
    photo = Image.new("RGB", (64, 64), (0, 0, 255))
    framed = np.asarray(frame_image(photo, 32, "center-crop-wide", background=(0, 0, 0)))
    assert (framed[8:24] == (0, 0, 255)).all() and (framed[:8] == 0).all() and (framed[24:] == 0).all()


def test_portrait_pad_fits_the_whole_photo_into_the_frame():
    photo = Image.new("RGB", (40, 100), (200, 30, 30))   # taller than 3:4: the height fills the 32x24 frame
    framed = np.asarray(frame_image(photo, (32, 24), "pad", background=(0, 255, 0)))
    assert framed.shape == (32, 24, 3)   # height x width
    # scale min(24/40, 32/100) = 0.32: a 13x32 photo, 5 or 6 columns of backdrop either side
    assert (framed[:, :5] == (0, 255, 0)).all() and (framed[:, -5:] == (0, 255, 0)).all()
    assert (framed[:, 6:18] == (200, 30, 30)).all()


def test_portrait_center_crop_cuts_to_the_frames_aspect():
    grid = np.random.RandomState(4).randint(0, 256, (8, 5, 3), dtype=np.uint8)
    photo = Image.fromarray(grid).resize((60, 100), Image.Resampling.BICUBIC)   # 3:5, narrower than 3:4
    expected = np.asarray(photo.crop((0, 10, 60, 90)).resize((12, 16), Image.Resampling.LANCZOS), dtype=np.int16)
    ours = np.asarray(frame_image(photo, (16, 12), "center-crop"), dtype=np.int16)
    assert ours.shape == (16, 12, 3) and np.abs(ours - expected).max() <= 4
    assert frame_image(photo, (16, 8), "resize").size == (8, 16)


def test_square_framing_is_unchanged_by_the_shape_form():
    grid = np.random.RandomState(5).randint(0, 256, (6, 9, 3), dtype=np.uint8)
    photo = Image.fromarray(grid).resize((90, 61), Image.Resampling.BICUBIC)
    for transform in ("pad", "center-crop", "center-crop-wide", "resize"):
        assert np.array_equal(np.asarray(frame_image(photo, 32, transform)),
                              np.asarray(frame_image(photo, (32, 32), transform))), transform


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        frame_image(Image.new("RGB", (4, 4)), 4, "zoom")


def test_writer_zip_and_folder(tmp_path):
    assert archive_name(0) == "00000/img00000000.png" and archive_name(12345) == "00012/img00012345.png"
    with DatasetWriter(tmp_path / "a.zip") as writer:
        writer.add("00000/img00000000.png", b"x")
        assert not (tmp_path / "a.zip").exists()   # only the hidden partial exists while writing
    assert zipfile.ZipFile(tmp_path / "a.zip").read("00000/img00000000.png") == b"x"
    writer = DatasetWriter(tmp_path / "folder")
    writer.add("dataset.json", b"{}")
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_writer_clears_partials_of_killed_runs_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.zip.partial-{int(dead.stdout)}"
    stale.write_bytes(b"half a zip")
    alive = tmp_path / ".out.zip.partial-1"   # pid 1 always exists
    alive.write_bytes(b"another run in progress")
    DatasetWriter(tmp_path / "out.zip").abort()
    assert not stale.exists() and alive.exists()


def test_source_lists_sorted_posix_paths_from_folder_and_zip(tmp_path):
    (tmp_path / "src/b").mkdir(parents=True)
    for name in ["b/z.jpg", "a.jpg", "b/é 1.png"]:
        (tmp_path / "src" / name).write_bytes(name.encode())
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for name in ["b/z.jpg", "a.jpg", "b/é 1.png"]:
            z.writestr(name, name.encode())
        z.writestr("empty_dir/", b"")
    for source in (Source(tmp_path / "src"), Source(tmp_path / "src.zip")):
        assert source.list_files() == ["a.jpg", "b/z.jpg", "b/é 1.png"]
        assert source.read_bytes("b/é 1.png", limit=1000) == "b/é 1.png".encode()


def test_metadata_formats_and_matching(tmp_path):
    (tmp_path / "t.csv").write_text("Image,Title\nhttps://x.org/p/a%20b.jpg,Kente dress\nshop/c.jpg,Skirt\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"path": "c.jpg", "description": "Top"}) + "\n")
    (tmp_path / "t.json").write_text(json.dumps({"c.jpg": {"title": "Kaftan"}, "d.jpg": "Gown"}))
    csv_table = load_metadata(tmp_path / "t.csv")
    assert csv_table.text(csv_table.lookup("any/folder/a b.jpg")) == "Kente dress"
    assert csv_table.text(csv_table.lookup("shop/c.jpg")) == "Skirt"
    assert csv_table.lookup("nothing.jpg") is None and len(csv_table.matched) == 2
    assert load_metadata(tmp_path / "t.jsonl").lookup("x/c.jpg")["description"] == "Top"
    json_table = load_metadata(tmp_path / "t.json")
    assert json_table.text(json_table.lookup("d.jpg")) == "Gown"
    (tmp_path / "bad.csv").write_text("title,price\nDress,3\n")
    with pytest.raises(MetadataError, match="--metadata-file-column"):
        load_metadata(tmp_path / "bad.csv")
    (tmp_path / "t.xml").write_text("<a/>")
    with pytest.raises(MetadataError, match=".csv, .json or .jsonl"):
        load_metadata(tmp_path / "t.xml")


def _square(x):
    return x * x


def test_ordered_map_keeps_order_with_workers():
    items = list(range(50))
    assert list(ordered_map(_square, items, workers=2)) == [x * x for x in items]
    assert list(itertools.islice(ordered_map(_square, iter(items), workers=2), 3)) == [0, 1, 4]


def test_summary_marks_attribute_lists_it_cuts_with_an_ellipsis():
    from fashion_data.report import Report
    report = Report({})
    for i, colour in enumerate(["red", "blue", "green", "black", "white", "gold", "pink", "grey"]):
        for _ in range(8 - i):
            report.keep({"colour": colour}, None, ["colour"])
    line = [row for row in report.summary().splitlines() if row.strip().startswith("colour:")][0]
    assert line.strip() == "colour: red 8, blue 7, green 6, black 5, white 4, gold 3, ... (2 more)"
    short = Report({})
    short.keep({"colour": "red"}, None, ["colour"])
    assert "..." not in short.summary()
