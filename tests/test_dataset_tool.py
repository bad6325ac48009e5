"""dataset_tool end to end on a home-made messy corpus: report, output, source untouched."""
import csv
import hashlib
import io
import json
import os
import pathlib
import shutil
import struct
import zipfile
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dataset_tool
from fashion_data import pipeline
from fashion_data.pipeline import BuildOptions, build_dataset
from fashion_data.writer import DestinationError
from conftest import CLOTHING, require
from training.dataset import ImageDataset

RES = 32


def smooth_photo(seed: int, size=(96, 128)) -> Image.Image:
    """A distinct low-frequency 'photo' (random 4x4 colour grid, smoothly upsampled)."""
    grid = np.random.RandomState(seed).randint(0, 256, (4, 4, 3)).astype(np.uint8)
    return Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)


def save(image: Image.Image, path: pathlib.Path, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **kwargs)


def png_bomb_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height pixels, with a valid CRC but no pixel data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# file -> expected fate: "ok" or a drop reason
EXPECTED = {
    "good/a_photo.jpg": "ok",
    "good/b_photo.png": "ok",
    "good/c_photo.webp": "ok",
    "good/d_photo.bmp": "ok",
    "good/e_photo.tiff": "ok",
    "good/f_animated.gif": "ok",
    "good/g_grey.jpg": "ok",
    "good/robe élégante 1.jpg": "ok",
    "good/nested/deeper/kente 👗.png": "ok",
    "odd/cmyk.jpg": "ok",
    "odd/grey16.png": "ok",
    "odd/rgba.png": "ok",
    "odd/palette_transparent.png": "ok",
    "odd/la.png": "ok",
    "odd/exif_rotated.jpg": "ok",
    "odd/uppercase.JPEG": "ok",
    "bad/truncated.jpg": "truncated",
    "bad/zero.jpg": "empty_file",
    "bad/text.jpg": "not_an_image",
    "bad/one_pixel.png": "too_small",
    "bad/sliver_10000x10.png": "too_small",
    "bad/wide_400x40.png": "extreme_aspect",
    "bad/bomb.png": "too_many_pixels",
    "later/copy_of_a.jpg": "exact_duplicate",
    "later/near_b.jpg": "near_duplicate",
    "notes.txt": "not_image_extension",
    ".DS_Store": "hidden",
}


def make_corpus(root: pathlib.Path) -> None:
    save(smooth_photo(1), root / "good/a_photo.jpg", "JPEG", quality=95)
    save(smooth_photo(2), root / "good/b_photo.png", "PNG")
    save(smooth_photo(3), root / "good/c_photo.webp", "WEBP", quality=90)
    save(smooth_photo(4), root / "good/d_photo.bmp", "BMP")
    save(smooth_photo(5), root / "good/e_photo.tiff", "TIFF")
    frames = [Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))]
    frames[0].save(root / "good/f_animated.gif", save_all=True, append_images=frames[1:], duration=100)
    save(smooth_photo(6).convert("L"), root / "good/g_grey.jpg", "JPEG")
    save(smooth_photo(7), root / "good/robe élégante 1.jpg", "JPEG")
    save(smooth_photo(8), root / "good/nested/deeper/kente 👗.png", "PNG")
    cmyk = Image.new("CMYK", (64, 64), (0, 0, 0, 0))              # white ...
    cmyk.paste((0, 255, 255, 0), (0, 0, 32, 64))                 # ... with a pure red left half
    save(cmyk, root / "odd/cmyk.jpg", "JPEG", quality=95)
    save(Image.fromarray(np.full((64, 64), 0x8080, np.uint16)), root / "odd/grey16.png", "PNG")    # mid grey 128
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 0          # fully transparent blue ...
    rgba[16:48, 16:48] = (0, 0, 255, 255)        # ... around an opaque blue square
    save(Image.fromarray(rgba, "RGBA"), root / "odd/rgba.png", "PNG")
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([0, 255, 0] + [200, 0, 200] * 255)
    palette.paste(1, (16, 16, 48, 48))
    save(palette, root / "odd/palette_transparent.png", "PNG", transparency=0)   # green is transparent
    save(Image.fromarray(np.dstack([np.full((64, 64), 50, np.uint8), np.full((64, 64), 255, np.uint8)]), "LA"),
         root / "odd/la.png", "PNG")
    marked = Image.new("RGB", (128, 64), (255, 0, 0))
    marked.paste((0, 0, 255), (64, 0, 128, 64))           # stored: red left, blue right
    exif = marked.getexif()
    exif[0x0112] = 6                                        # display: rotate 90 deg clockwise -> red on top
    save(marked, root / "odd/exif_rotated.jpg", "JPEG", quality=95, exif=exif.tobytes())
    save(smooth_photo(9), root / "odd/uppercase.JPEG", "JPEG")
    good_jpeg = (root / "good/a_photo.jpg").read_bytes()
    full = io.BytesIO()
    smooth_photo(10, (256, 256)).save(full, "JPEG", quality=95)
    (root / "bad").mkdir()
    (root / "bad/truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (root / "bad/zero.jpg").write_bytes(b"")
    (root / "bad/text.jpg").write_text("this is not a photo\n")
    save(Image.new("RGB", (1, 1), (9, 9, 9)), root / "bad/one_pixel.png", "PNG")
    save(Image.new("RGB", (10000, 10), (9, 9, 9)), root / "bad/sliver_10000x10.png", "PNG")
    save(Image.new("RGB", (400, 40), (9, 9, 9)), root / "bad/wide_400x40.png", "PNG")
    (root / "bad/bomb.png").write_bytes(png_bomb_header(60000, 60000))
    (root / "later").mkdir()
    (root / "later/copy_of_a.jpg").write_bytes(good_jpeg)
    save(smooth_photo(2).resize((90, 120), Image.Resampling.LANCZOS), root / "later/near_b.jpg", "JPEG", quality=70)
    (root / "notes.txt").write_text("shop notes")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


def tree_fingerprint(root: pathlib.Path) -> dict:
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_metadata(path: pathlib.Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["filename", "title", "description", "garment"])
        writer.writeheader()
        writer.writerow({"filename": "a_photo.jpg", "title": "Women's kente maxi dress", "description": "long sleeves"})
        writer.writerow({"filename": "good/b_photo.png", "title": "Chemise homme en pagne wax", "description": ""})
        writer.writerow({"filename": "https://shop.example/img/robe%20%C3%A9l%C3%A9gante%201.jpg",
                         "title": "Robe courte sans manches", "description": "dentelle"})
        writer.writerow({"filename": "cmyk.jpg", "title": "Beautiful piece", "garment": "Jupe"})
        writer.writerow({"filename": "exif_rotated.jpg", "title": "Agbada", "garment": "spaceship"})
        writer.writerow({"filename": "missing.jpg", "title": "Kaftan", "description": ""})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "photos"
    make_corpus(root)
    return root


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    """The corpus built once, conditional on garment with an 'unknown' class."""
    out = tmp_path_factory.mktemp("out")
    metadata = out / "titles.csv"
    write_metadata(metadata)
    before = tree_fingerprint(corpus)
    options = BuildOptions(source=str(corpus), dest=str(out / "fashion.zip"), resolution=RES,
                           metadata=str(metadata), cond_attr=("garment",), unlabelled="unknown")
    report = build_dataset(options, progress=False)
    return {"report": report, "zip": out / "fashion.zip", "before": before, "after": tree_fingerprint(corpus)}


def read_zip(path):
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_source_is_untouched(built):
    assert built["before"] == built["after"]
    assert len(built["before"]) == len(EXPECTED)


def test_report_gives_every_file_its_fate(built):
    report = json.loads(read_zip(built["zip"])["report.json"])
    fates = {entry["file"]: entry["reason"] for entry in report["dropped"]}
    attributes = [json.loads(line) for line in read_zip(built["zip"])["attributes.jsonl"].decode().splitlines()]
    fates.update({record["source"]: "ok" for record in attributes})
    assert fates == EXPECTED
    assert report["files_found"] == len(EXPECTED)
    assert report["images_written"] == sum(v == "ok" for v in EXPECTED.values())
    assert report["by_step"]["decode"] == {"empty_file": 1, "not_an_image": 1, "too_many_pixels": 1, "truncated": 1}
    assert report["by_step"]["dedupe"] == {"exact_duplicate": 1, "near_duplicate": 1}
    groups = {g["kept"]: g["duplicates"] for g in report["duplicate_groups"]}
    assert groups["good/a_photo.jpg"] == [{"file": "later/copy_of_a.jpg", "kind": "exact", "distance": 0}]
    assert [d["file"] for d in groups["good/b_photo.png"]] == ["later/near_b.jpg"]
    assert 0 < groups["good/b_photo.png"][0]["distance"] <= 6


def test_output_is_official_layout_with_clean_pngs(built):
    files = read_zip(built["zip"])
    images = sorted(n for n in files if n.endswith(".png"))
    assert images == [f"00000/img{i:08d}.png" for i in range(len(images))]
    assert set(files) - set(images) == {"dataset.json", "attributes.jsonl", "report.json"}
    for name in images:
        image = Image.open(io.BytesIO(files[name]))
        assert (image.size, image.mode) == ((RES, RES), "RGB")


def output_by_source(built) -> dict:
    files = read_zip(built["zip"])
    records = [json.loads(line) for line in files["attributes.jsonl"].decode().splitlines()]
    return {r["source"]: np.asarray(Image.open(io.BytesIO(files[r["fname"]])), dtype=np.int16) for r in records}


def test_modes_are_normalised_to_rgb(built):
    out = output_by_source(built)
    assert np.abs(out["odd/cmyk.jpg"][RES // 2, RES // 4] - (255, 0, 0)).max() <= 3
    assert np.abs(out["odd/cmyk.jpg"][RES // 2, 3 * RES // 4] - (255, 255, 255)).max() <= 3
    assert np.abs(out["odd/grey16.png"] - 128).max() <= 1                # 0x8080 / 257 = 128
    assert np.abs(out["odd/la.png"] - 50).max() <= 1                    # opaque grey 50
    # transparency composited on white (the default); the opaque square keeps its colour
    assert tuple(out["odd/rgba.png"][0, 0]) == (255, 255, 255)
    assert np.abs(out["odd/rgba.png"][RES // 2, RES // 2] - (0, 0, 255)).max() <= 2
    assert tuple(out["odd/palette_transparent.png"][1, 1]) == (255, 255, 255)
    assert np.abs(out["odd/palette_transparent.png"][RES // 2, RES // 2] - (200, 0, 200)).max() <= 2
    assert np.abs(out["good/f_animated.gif"] - (255, 0, 0)).max() <= 2  # first frame only
    grey = out["good/g_grey.jpg"]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_exif_rotation_is_applied(built):
    rotated = output_by_source(built)["odd/exif_rotated.jpg"]
    # displayed upright the photo is portrait, red above blue; pad centres it horizontally
    assert np.abs(rotated[RES // 4, RES // 2] - (255, 0, 0)).max() <= 25
    assert np.abs(rotated[3 * RES // 4, RES // 2] - (0, 0, 255)).max() <= 25


def test_labels_attributes_and_loader_agree(built):
    files = read_zip(built["zip"])
    meta = json.loads(files["dataset.json"])
    records = {json.loads(line)["source"]: json.loads(line) for line in files["attributes.jsonl"].decode().splitlines()}
    assert records["good/a_photo.jpg"]["attributes"] == {"wearer": "women", "fabric": "kente", "length": "maxi",
                                                         "garment": "dress", "sleeve": "long"}
    assert records["good/a_photo.jpg"]["caption"] == "women's maxi dress, long sleeves, kente"
    assert records["good/b_photo.png"]["attributes"] == {"garment": "shirt", "wearer": "men", "fabric": "ankara"}
    assert records["good/robe élégante 1.jpg"]["attributes"] == {"garment": "dress", "length": "mini",
                                                                 "sleeve": "sleeveless", "fabric": "lace"}
    assert records["odd/cmyk.jpg"]["attributes"] == {"garment": "skirt"}            # explicit column
    assert records["odd/exif_rotated.jpg"]["attributes"] == {"garment": "agbada"}   # bad explicit value ignored
    assert records["good/c_photo.webp"]["class"] == "unknown"
    assert meta["class_names"] == ["agbada", "dress", "shirt", "skirt", "unknown"]
    report = json.loads(files["report.json"])
    assert report["class_balance"] == {"agbada": 1, "dress": 2, "shirt": 1, "skirt": 1, "unknown": 11}
    assert report["metadata"]["rows_matched"] == 5
    assert report["metadata"]["unrecognised_values"] == {"garment": {"spaceship": 1}}
    assert report["attribute_coverage"]["garment"]["dress"] == 2

    dataset = ImageDataset(built["zip"], use_labels=True)
    assert (len(dataset), dataset.resolution, dataset.num_channels, dataset.label_dim) == (16, RES, 3, 5)
    assert dataset.class_names == meta["class_names"]
    by_fname = dict(meta["labels"])
    for record in records.values():
        index = int(record["fname"][-12:-4])
        image, label = dataset[index]
        expected = np.asarray(Image.open(io.BytesIO(files[record["fname"]]))).transpose(2, 0, 1)
        assert np.array_equal(image, expected)
        assert label.argmax() == by_fname[record["fname"]] == meta["class_names"].index(record["class"])


def test_zip_source_gives_the_same_dataset(corpus, built, tmp_path):
    source_zip = tmp_path / "photos.zip"
    with zipfile.ZipFile(source_zip, "w") as z:
        for path in sorted(corpus.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(corpus).as_posix())
    metadata = tmp_path / "titles.csv"
    write_metadata(metadata)
    build_dataset(BuildOptions(source=str(source_zip), dest=str(tmp_path / "from_zip.zip"), resolution=RES,
                               metadata=str(metadata), cond_attr=("garment",), unlabelled="unknown"), progress=False)
    ours, theirs = read_zip(tmp_path / "from_zip.zip"), read_zip(built["zip"])
    assert {k: v for k, v in ours.items() if k != "report.json"} == {k: v for k, v in theirs.items() if k != "report.json"}


def test_two_workers_give_identical_output(corpus, tmp_path):
    outputs = []
    for workers in (1, 2):
        dest = tmp_path / f"w{workers}"
        build_dataset(BuildOptions(source=str(corpus), dest=str(dest), resolution=RES, workers=workers), progress=False)
        outputs.append({p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
                        if p.is_file() and p.name != "report.json"})
    assert outputs[0] == outputs[1]
    assert len([n for n in outputs[0] if n.endswith(".png")]) == 16


def test_a_failed_run_leaves_no_dataset_behind(corpus, tmp_path, monkeypatch):
    calls = []

    def failing_frame(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash mid-run")
        return real_frame(*args, **kwargs)

    real_frame = pipeline.frame_image
    monkeypatch.setattr(pipeline, "frame_image", failing_frame)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset(BuildOptions(source=str(corpus), dest=str(tmp_path / "out.zip"), resolution=RES), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_dest_is_kept_unless_overwrite(corpus, tmp_path):
    dest = tmp_path / "out.zip"
    dest.write_bytes(b"precious")
    with pytest.raises(DestinationError, match="--overwrite"):
        build_dataset(BuildOptions(source=str(corpus), dest=str(dest), resolution=RES), progress=False)
    assert dest.read_bytes() == b"precious"
    with pytest.raises(DestinationError, match="not a dataset written by dataset_tool.py"):  # not ours to replace
        build_dataset(BuildOptions(source=str(corpus), dest=str(dest), resolution=RES, overwrite=True), progress=False)
    assert dest.read_bytes() == b"precious"
    dest.unlink()
    build_dataset(BuildOptions(source=str(corpus), dest=str(dest), resolution=RES), progress=False)
    build_dataset(BuildOptions(source=str(corpus), dest=str(dest), resolution=RES, overwrite=True), progress=False)
    assert zipfile.is_zipfile(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zip"]


def test_max_images_channels_and_shuffle(corpus, tmp_path):
    def build(name, **kwargs):
        report = build_dataset(BuildOptions(source=str(corpus), dest=str(tmp_path / name), resolution=RES,
                                            max_images=3, **kwargs), progress=False)
        records = [json.loads(line) for line in (tmp_path / name / "attributes.jsonl").read_text().splitlines()]
        return report, [r["source"] for r in records]

    report, first = build("sorted", channels=1)
    assert first == ["good/a_photo.jpg", "good/b_photo.png", "good/c_photo.webp"]
    assert report.written == 3 and report.reasons["max_images"] > 0
    assert Image.open(tmp_path / "sorted/00000/img00000000.png").mode == "L"
    _, shuffled = build("shuffled", shuffle=True, seed=3)
    _, again = build("again", shuffle=True, seed=3)
    assert shuffled == again and shuffled != first


def test_an_exclude_list_holds_photos_out_and_reports_them(corpus, tmp_path):
    held_out = ["good/b_photo.png", "good/c_photo.webp"]
    (tmp_path / "heldout.txt").write_text("# evaluation photos\n" + "\n".join(held_out) + "\nnot/in/source.jpg\n")
    report = build_dataset(BuildOptions(source=str(corpus), dest=str(tmp_path / "out"), resolution=RES,
                                        exclude=str(tmp_path / "heldout.txt")), progress=False)
    sources = [json.loads(line)["source"] for line in (tmp_path / "out/attributes.jsonl").read_text().splitlines()]
    assert sources and not set(held_out) & set(sources)
    assert report.reasons["excluded"] == 2
    assert sorted(d["file"] for d in report.to_dict()["dropped"] if d["reason"] == "excluded") == held_out
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="--exclude"):
        build_dataset(BuildOptions(source=str(corpus), dest=str(tmp_path / "out2"), resolution=RES,
                                   exclude=str(tmp_path / "binary.txt")), progress=False)


def test_label_from_folder(tmp_path):
    for folder, seeds in {"dress": (1, 2), "t-shirt": (3,), "outwear": (4, 5)}.items():
        for seed in seeds:
            save(smooth_photo(seed), tmp_path / "src" / folder / f"{seed}.jpg", "JPEG")
    save(smooth_photo(6), tmp_path / "src" / "loose.jpg", "JPEG")   # no folder: no class
    report = build_dataset(BuildOptions(source=str(tmp_path / "src"), dest=str(tmp_path / "out"), resolution=RES,
                                        label_from_folder=True), progress=False)
    meta = json.loads((tmp_path / "out/dataset.json").read_text())
    assert meta["class_names"] == ["dress", "outwear", "t-shirt"] and meta["cond_attr"] == ["folder"]
    assert [label for _, label in meta["labels"]] == [0, 0, 1, 1, 2]
    assert report.reasons == {"no_label": 1}
    records = [json.loads(line) for line in (tmp_path / "out/attributes.jsonl").read_text().splitlines()]
    assert [r["attributes"].get("garment") for r in records] == ["dress", "dress", "jacket", "jacket", "t_shirt"]


def test_class_from_combined_attributes(tmp_path):
    for name, seed in [("a.jpg", 1), ("b.jpg", 2), ("c.jpg", 3)]:
        save(smooth_photo(seed), tmp_path / "src" / name, "JPEG")
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(row) for row in [
        {"file": "a.jpg", "title": "Women's kente dress"}, {"file": "b.jpg", "title": "Men's kente shirt"},
        {"file": "c.jpg", "title": "Kente dress"}]))
    report = build_dataset(BuildOptions(source=str(tmp_path / "src"), dest=str(tmp_path / "out"), resolution=RES,
                                        metadata=str(tmp_path / "t.jsonl"), cond_attr=("garment", "wearer")),
                           progress=False)
    meta = json.loads((tmp_path / "out/dataset.json").read_text())
    assert meta["class_names"] == ["dress / women", "shirt / men"] and [c for _, c in meta["labels"]] == [0, 1]
    assert report.to_dict()["dropped"] == [{"file": "c.jpg", "step": "label", "reason": "no_label",
                                             "detail": "no garment + wearer found"}]


def test_dest_inside_source_is_refused(corpus):
    with pytest.raises(ValueError, match="inside --source"):
        build_dataset(BuildOptions(source=str(corpus), dest=str(corpus / "out.zip"), resolution=RES), progress=False)
    assert not (corpus / "out.zip").exists()


def test_cli_builds_and_explains_errors(corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(dataset_tool.main, ["--source", str(corpus), "--dest", str(tmp_path / "d.zip"),
                                               "--resolution", "32", "--quiet", "--background", "#102030"])
    assert result.exit_code == 0, result.output
    assert "16 images written" in result.output and "truncated" in result.output
    assert json.loads(read_zip(tmp_path / "d.zip")["report.json"])["settings"]["background"] == [16, 32, 48]
    bad = runner.invoke(dataset_tool.main, ["--source", str(corpus), "--dest", str(tmp_path / "e.zip"), "--resolution", "100"])
    assert bad.exit_code != 0 and "power of two" in bad.output
    bad = runner.invoke(dataset_tool.main, ["--source", str(corpus), "--dest", str(tmp_path / "e.zip"), "--cond-attr", "mood"])
    assert bad.exit_code != 0 and "not an attribute" in bad.output
    assert not (tmp_path / "e.zip").exists()


def test_real_clothing_photos(tmp_path):
    """A few real CC0 photos per class: every one decodes and lands in its folder's class."""
    root = require(CLOTHING) / "validation"
    for class_dir in sorted(root.iterdir()):
        for photo in sorted(class_dir.glob("*.jpg"))[:2]:
            (tmp_path / "src" / class_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, tmp_path / "src" / class_dir.name / photo.name)
    report = build_dataset(BuildOptions(source=str(tmp_path / "src"), dest=str(tmp_path / "real.zip"),
                                        resolution=RES, label_from_folder=True), progress=False)
    assert report.written == 20 and not report.reasons
    dataset = ImageDataset(tmp_path / "real.zip", use_labels=True)
    assert dataset.label_dim == 10 and dataset.class_names[0] == "dress"
    assert [int(dataset.get_label(i).argmax()) for i in range(20)] == [i // 2 for i in range(20)]
    assert os.path.getsize(tmp_path / "real.zip") > 0


# ----------------------------------------------------------------------------- portrait frames

def garment_box(pixels: np.ndarray, backdrop, tolerance: int = 40):
    """Bounding box (x0, y0, x1, y1) of the pixels that differ from the backdrop colour by more than `tolerance`."""
    ys, xs = np.nonzero(np.abs(pixels.astype(int) - np.array(backdrop)).max(axis=2) > tolerance)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_portrait_frame_keeps_the_whole_garment_of_real_photos(tmp_path):
    """--resolution 64x48 on real 400x533 shop photos: each output holds the whole photo, so the garment's
    bounding box (non-backdrop pixels) maps inside the frame; a square centre crop would cut it."""
    root = require(CLOTHING / "train")
    source = tmp_path / "photos"
    source.mkdir()
    photos = {}
    for garment in ("dress", "longsleeve", "pants", "skirt", "outwear", "shoes"):
        photo = sorted((root / garment).glob("*.jpg"))[0]
        shutil.copy(photo, source / f"{garment}.jpg")
        photos[f"{garment}.jpg"] = Image.open(photo).convert("RGB")
    result = CliRunner().invoke(dataset_tool.main, ["--source", str(source), "--dest", str(tmp_path / "p.zip"),
                                                    "--resolution", "64x48", "--quiet", "--near-threshold", "-1"])
    assert result.exit_code == 0, result.output
    files = read_zip(tmp_path / "p.zip")
    assert json.loads(files["dataset.json"])["image_shape"] == [64, 48]
    records = [json.loads(line) for line in files["attributes.jsonl"].decode().splitlines()]
    assert len(records) == len(photos)
    cut_by_a_square_crop = 0
    for record in records:
        photo = photos[record["source"]]
        framed = np.asarray(Image.open(io.BytesIO(files[record["fname"]])))
        assert framed.shape == (64, 48, 3)
        width, height = photo.size
        scale = min(48 / width, 64 / height)
        inner_w, inner_h = round(width * scale), round(height * scale)
        left, top = (48 - inner_w) // 2, (64 - inner_h) // 2
        # the whole photo is in the frame (a plain resize of it, up to resampling differences)
        whole = np.asarray(photo.resize((inner_w, inner_h), Image.Resampling.LANCZOS), dtype=int)
        assert np.abs(framed[top:top + inner_h, left:left + inner_w].astype(int) - whole).mean() < 4
        x0, y0, x1, y1 = garment_box(np.asarray(photo), np.median(np.asarray(photo)[:4].reshape(-1, 3), axis=0))
        assert 0 <= left + x0 * scale and left + x1 * scale <= 48 + 1e-6
        assert 0 <= top + y0 * scale and top + y1 * scale <= 64 + 1e-6
        side = min(width, height)  # the square centre crop of the same photo
        cut_by_a_square_crop += y0 < (height - side) // 2 or y1 > (height + side) // 2
    assert cut_by_a_square_crop > 0
    dataset = ImageDataset(tmp_path / "p.zip")
    assert dataset.image_shape == [3, 64, 48] and (dataset.resolution, dataset.base_shape) == (64, (4, 3))
