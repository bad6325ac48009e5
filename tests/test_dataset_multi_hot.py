"""dataset_tool --multi-hot and --derive-colour: label vectors with their layout, read back by our loader
and by an official-style reader; garment colours measured on synthetic photos of a known colour."""
import csv
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dataset_tool
from fashion_data.attributes import load_vocabulary
from fashion_data.colour import measure_colour, srgb_to_lab, vocabulary_palette
from stylegan2.labels import LabelLayout
from training.dataset import ImageDataset

RES = 16
PALETTE = vocabulary_palette(load_vocabulary())


def garment_photo(colour, backdrop=(245, 245, 242), size=(48, 64), stripes=()) -> Image.Image:
    """A flat-lay 'photo': a garment-shaped block of `colour` (with bands of the `stripes` colours) on a backdrop."""
    pixels = np.empty((size[1], size[0], 3), np.uint8)
    pixels[:] = backdrop
    h, w = size[1], size[0]
    pixels[h // 6: 5 * h // 6, w // 5: 4 * w // 5] = colour
    bands = [colour, *stripes]
    for row in range(h // 6, 5 * h // 6):   # 4-pixel bands taking turns: each colour an equal share
        pixels[row, w // 5: 4 * w // 5] = bands[(row // 4) % len(bands)]
    rng = np.random.RandomState(sum(colour))
    noisy = np.clip(pixels.astype(int) + rng.randint(-6, 7, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy)


# file -> (title, garment colour); titles name garment/fabric/sleeve sometimes and colour rarely
PHOTOS = {
    "a.png": ("women's maxi dress in kente, long sleeves", (30, 80, 160)),      # blue, measured
    "b.png": ("ankara skirt", (185, 30, 40)),                                  # red, measured
    "c.png": ("green dress", (185, 30, 40)),                                   # the title's green wins
    "d.png": ("kente", (240, 196, 25)),                                        # no garment: zero block
    "e.png": ("mystery item", (245, 245, 242)),                                # white on white: no colour
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    source = root / "photos"
    source.mkdir()
    for name, (_, colour) in PHOTOS.items():
        garment_photo(colour).save(source / name)
    with open(root / "titles.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "title"])
        writer.writerows([name, title] for name, (title, _) in PHOTOS.items())
    dest = root / "multi.zip"
    result = CliRunner().invoke(dataset_tool.main, [
        "--source", str(source), "--dest", str(dest), "--resolution", str(RES), "--metadata", str(root / "titles.csv"),
        "--cond-attr", "garment,fabric,colour,sleeve", "--multi-hot", "--derive-colour", "--unlabelled", "unknown",
        "--quiet", "--no-dedupe", "--near-threshold", "-1"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(dest) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    return dest, files, result.output


def records_by_source(files):
    return {r["source"]: r for r in map(json.loads, files["attributes.jsonl"].decode().splitlines())}


def test_layout_and_vectors_are_written_with_unknown_as_zero_blocks(built):
    _, files, _ = built
    meta = json.loads(files["dataset.json"])
    layout = LabelLayout.from_json(meta["label_layout"])
    assert layout.names == ["garment", "fabric", "colour", "sleeve"]
    assert layout.block("garment").values == ("dress", "skirt")           # values seen, vocabulary order
    assert layout.block("fabric").values == ("ankara", "kente")
    assert layout.block("colour").values == ("red", "blue", "green", "yellow")
    assert layout.block("sleeve").values == ("long",) and layout.block("sleeve").captions == ("long sleeves",)
    assert layout.offsets == [(0, 2), (2, 4), (4, 8), (8, 9)] and layout.dim == 9
    vectors = {fname: np.array(v) for fname, v in meta["labels"]}
    records = records_by_source(files)
    expected = {"a.png": [1, 0, 0, 1, 0, 1, 0, 0, 1], "b.png": [0, 1, 1, 0, 1, 0, 0, 0, 0],
                "c.png": [1, 0, 0, 0, 0, 0, 1, 0, 0], "d.png": [0, 0, 0, 1, 0, 0, 0, 1, 0],
                "e.png": [0, 0, 0, 0, 0, 0, 0, 0, 0]}
    for source, row in expected.items():
        assert vectors[records[source]["fname"]].tolist() == row, source
    assert layout.decode(vectors[records["e.png"]["fname"]]) == dict.fromkeys(layout.names)
    assert layout.decode(vectors[records["d.png"]["fname"]]) == {"garment": None, "fabric": "kente",
                                                                 "colour": "yellow", "sleeve": None}


def test_derived_colour_is_marked_and_counted(built):
    _, files, output = built
    records = records_by_source(files)
    assert records["a.png"]["attributes"]["colour"] == "blue" and records["a.png"]["derived"] == ["colour"]
    assert records["b.png"]["attributes"]["colour"] == "red" and records["b.png"]["derived"] == ["colour"]
    assert records["c.png"]["attributes"]["colour"] == "green" and "derived" not in records["c.png"]
    assert "colour" not in records["e.png"]["attributes"]        # white on white: not measurable
    report = json.loads(files["report.json"])
    assert report["derived"] == {"colour": {"blue": 1, "red": 1, "yellow": 1}}
    assert "colour measured on the image for 3 images" in output


def test_our_loader_and_an_official_style_reader_agree(built):
    dest, files, _ = built
    dataset = ImageDataset(dest, use_labels=True)
    # the official loader: dict(labels), one row per sorted image name, np.array, float32 when 2-D
    labels = dict(json.loads(files["dataset.json"])["labels"])
    official = np.array([labels[name] for name in dataset.image_names])
    assert official.ndim == 2
    official = official.astype({1: np.int64, 2: np.float32}[official.ndim])
    assert dataset.label_dim == official.shape[1] == 9
    assert np.array_equal(dataset.labels, official)
    assert [dataset.get_label(i).tolist() for i in range(len(dataset))] == official.tolist()
    assert dataset.label_layout.dim == 9 and dataset.class_names is None
    assert np.array_equal(ImageDataset(dest, use_labels=True, xflip=True)[len(dataset)][1], official[0])


def test_cartesian_classes_stay_as_before(tmp_path):
    """Without --multi-hot several attributes still make one class per combination (old datasets unchanged)."""
    source = tmp_path / "photos"
    source.mkdir()
    garment_photo((30, 80, 160)).save(source / "kente dress.png")
    garment_photo((185, 30, 40)).save(source / "ankara skirt.png")
    meta_dir = tmp_path / "o2"
    (tmp_path / "t.csv").write_text("file,title\nkente dress.png,kente dress\nankara skirt.png,ankara skirt\n")
    result = CliRunner().invoke(dataset_tool.main, ["--source", str(source), "--dest", str(meta_dir),
                                                    "--resolution", str(RES), "--cond-attr", "garment,fabric",
                                                    "--metadata", str(tmp_path / "t.csv"), "--quiet"])
    assert result.exit_code == 0, result.output
    meta = json.loads((meta_dir / "dataset.json").read_text())
    assert meta["class_names"] == ["dress / kente", "skirt / ankara"] and "label_layout" not in meta
    assert ImageDataset(meta_dir, use_labels=True).label_layout is None


def test_multi_hot_needs_cond_attr(tmp_path):
    (tmp_path / "p").mkdir()
    garment_photo((30, 80, 160)).save(tmp_path / "p" / "x.png")
    result = CliRunner().invoke(dataset_tool.main, ["--source", str(tmp_path / "p"), "--dest", str(tmp_path / "o"),
                                                    "--multi-hot", "--quiet"])
    assert result.exit_code != 0 and "--multi-hot needs --cond-attr" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name,rgb", [("red", (170, 25, 35)), ("blue", (20, 40, 120)), ("green", (60, 120, 50)),
                                      ("yellow", (235, 200, 40)), ("black", (25, 25, 28)), ("pink", (230, 120, 160)),
                                      ("blue", (150, 180, 225)),     # light blue: lightness must not make it grey
                                      ("red", (125, 22, 30)),        # a dark red is not brown or black
                                      ("grey", (128, 130, 128))])
def test_measured_colour_of_a_plain_garment(name, rgb):
    assert measure_colour(garment_photo(rgb), PALETTE) == name
    board = (120, 120, 120) if name != "grey" else (40, 40, 40)
    assert measure_colour(garment_photo(rgb, backdrop=board), PALETTE) == name   # a grey (or dark) board too


def test_two_colour_print_is_multicolour_and_a_garment_like_its_backdrop_is_nothing():
    kente = garment_photo((185, 30, 40), stripes=[(30, 80, 160), (240, 196, 25)])
    assert measure_colour(kente, PALETTE) == "multicolour"
    assert measure_colour(garment_photo((240, 240, 236)), PALETTE) is None


def test_lab_conversion_matches_published_values():
    """sRGB white is L 100 and pure red is (53.24, 80.09, 67.20) under D65 (the standard reference values)."""
    lab = srgb_to_lab(np.array([[255, 255, 255], [255, 0, 0], [0, 0, 0]], np.float64))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[1], [53.24, 80.09, 67.20], atol=0.02)
    np.testing.assert_allclose(lab[2], [0, 0, 0], atol=1e-9)
