"""training.dataset.ImageDataset on hand-made official-layout data, plain folders and dataset_tool output."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fashion_data.pipeline import BuildOptions, build_dataset
from training.dataset import DatasetError, ImageDataset


def random_images(count, size=8, mode="RGB", seed=0):
    rng = np.random.RandomState(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return [rng.randint(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def official_zip(path, images, labels=None, extra=None):
    """Written independently of dataset_tool, the way the official tool lays a dataset out."""
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(len(images))]
    with zipfile.ZipFile(path, "w") as z:
        for name, pixels in zip(names, images):
            z.writestr(name, png(pixels))
        meta = {"labels": [[n, int(c)] for n, c in zip(names, labels)] if labels is not None else None, **(extra or {})}
        z.writestr("dataset.json", json.dumps(meta))
    return path


def test_reads_images_and_one_hot_labels(tmp_path):
    images = random_images(5)
    path = official_zip(tmp_path / "ds.zip", images, labels=[2, 0, 1, 2, 0], extra={"class_names": ["a", "b", "c"]})
    dataset = ImageDataset(path, use_labels=True)
    assert (len(dataset), dataset.resolution, dataset.num_channels, dataset.label_dim) == (5, 8, 3, 3)
    assert dataset.has_labels and dataset.class_names == ["a", "b", "c"] and dataset.name == "ds"
    assert dataset.image_shape == [3, 8, 8]
    for i, (pixels, cls) in enumerate(zip(images, [2, 0, 1, 2, 0])):
        image, label = dataset[i]
        assert image.dtype == np.uint8 and np.array_equal(image, pixels.transpose(2, 0, 1))
        assert label.dtype == np.float32 and label.tolist() == np.eye(3)[cls].tolist()
    assert dataset.labels.shape == (5, 3)


def test_labels_are_ignored_unless_asked(tmp_path):
    dataset = ImageDataset(official_zip(tmp_path / "ds.zip", random_images(3), labels=[0, 1, 1]))
    assert dataset.label_dim == 0 and not dataset.has_labels and dataset.class_names is None
    assert dataset[0][1].shape == (0,)


def test_xflip_doubles_with_mirrored_second_half(tmp_path):
    images = random_images(3)
    dataset = ImageDataset(official_zip(tmp_path / "ds.zip", images, labels=[0, 1, 2]), use_labels=True, xflip=True)
    assert len(dataset) == 6 and dataset.labels.shape == (6, 3)
    for i in range(3):
        assert np.array_equal(dataset[i + 3][0], images[i][:, ::-1].transpose(2, 0, 1))
        assert np.array_equal(dataset[i + 3][1], dataset[i][1])
    with pytest.raises(IndexError):
        dataset[6]


def test_max_size_is_a_seeded_subset(tmp_path):
    images = random_images(10)
    path = official_zip(tmp_path / "ds.zip", images)
    a, b = ImageDataset(path, max_size=4, seed=1), ImageDataset(path, max_size=4, seed=1)
    chosen = [next(j for j, p in enumerate(images) if np.array_equal(a[i][0], p.transpose(2, 0, 1))) for i in range(4)]
    assert len(a) == 4 and chosen == sorted(chosen) and len(set(chosen)) == 4
    assert all(np.array_equal(a[i][0], b[i][0]) for i in range(4))
    assert len(ImageDataset(path, max_size=100)) == 10


def test_plain_folder_of_square_greyscale_images(tmp_path):
    images = random_images(3, size=4, mode="L")
    for i, pixels in enumerate(images):
        (tmp_path / "sub").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "sub" / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    dataset = ImageDataset(tmp_path)
    assert (len(dataset), dataset.num_channels, dataset.resolution) == (3, 1, 4)
    assert np.array_equal(dataset[2][0], images[2][None])


def test_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="dataset_tool.py"):
        ImageDataset(tmp_path / "missing.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        ImageDataset(tmp_path / "empty")
    Image.new("RGB", (8, 5)).save(tmp_path / "wide.png")  # 8x4 would be a landscape network's shape
    with pytest.raises(DatasetError, match="not a network shape"):
        ImageDataset(tmp_path)
    path = official_zip(tmp_path / "partial.zip", random_images(2), labels=[0, 1])
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("00000/img00000002.png", png(random_images(1)[0]))
    with pytest.raises(DatasetError, match="no label for 00000/img00000002.png"):
        ImageDataset(path, use_labels=True)
    mixed = official_zip(tmp_path / "mixed.zip", [random_images(1)[0], random_images(1, size=16)[0]])
    with pytest.raises(DatasetError, match="expected"):
        ImageDataset(mixed)[1]


def test_pickles_and_feeds_a_torch_dataloader(tmp_path):
    images = random_images(4)
    dataset = ImageDataset(official_zip(tmp_path / "ds.zip", images, labels=[0, 1, 0, 1]), use_labels=True)
    dataset[0]   # opens the zip handle, which must not travel in the pickle
    clone = pickle.loads(pickle.dumps(dataset))
    assert np.array_equal(clone[3][0], dataset[3][0])
    batch_images, batch_labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch_images.shape == (4, 3, 8, 8) and batch_images.dtype == torch.uint8
    assert batch_labels.argmax(1).tolist() == [0, 1, 0, 1]


def test_reads_dataset_tool_output_zip_and_folder(tmp_path):
    for cls, colour in [("dress", (200, 20, 20)), ("skirt", (20, 20, 200))]:
        for i in range(2):
            pixels = np.zeros((40, 40, 3), np.uint8)
            pixels[:, :] = colour
            pixels[i * 10:(i * 10) + 10] = 255 - np.array(colour)   # distinct shapes: not near duplicates
            (tmp_path / "src" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / "src" / cls / f"{i}.png")
    for dest in ("out.zip", "out_folder"):
        build_dataset(BuildOptions(source=str(tmp_path / "src"), dest=str(tmp_path / dest), resolution=16,
                                   label_from_folder=True, transform="resize"), progress=False)
        dataset = ImageDataset(tmp_path / dest, use_labels=True)
        assert dataset.class_names == ["dress", "skirt"] and len(dataset) == 4
        assert [int(dataset[i][1].argmax()) for i in range(4)] == [0, 0, 1, 1]
        for i, colour in [(0, (200, 20, 20)), (3, (20, 20, 200))]:   # stretching keeps each photo's mean colour
            expected = 0.75 * np.array(colour) + 0.25 * (255 - np.array(colour))
            assert np.abs(dataset[i][0].reshape(3, -1).mean(1) - expected).max() < 3


def test_portrait_and_landscape_sets_load_with_their_network_shape(tmp_path):
    rng = np.random.RandomState(2)
    portrait = [rng.randint(0, 256, (16, 12, 3), dtype=np.uint8) for _ in range(3)]
    dataset = ImageDataset(official_zip(tmp_path / "p.zip", portrait, extra={"image_shape": [16, 12]}), xflip=True)
    assert dataset.image_shape == [3, 16, 12] and (dataset.resolution, dataset.base_shape) == (16, (4, 3))
    image, _ = dataset[0]
    mirrored, _ = dataset[3]
    assert np.array_equal(image, portrait[0].transpose(2, 0, 1)) and np.array_equal(mirrored, image[:, :, ::-1])
    landscape = ImageDataset(official_zip(tmp_path / "l.zip", [rng.randint(0, 256, (8, 16, 3), dtype=np.uint8)]))
    assert landscape.image_shape == [3, 8, 16] and landscape.base_shape == (2, 4)


def test_shapes_no_network_draws_and_a_wrong_recorded_shape_are_refused(tmp_path):
    odd = [np.zeros((16, 10, 3), np.uint8)]
    with pytest.raises(DatasetError, match="not a network shape"):
        ImageDataset(official_zip(tmp_path / "odd.zip", odd))
    with pytest.raises(DatasetError, match="dataset.json says"):
        ImageDataset(official_zip(tmp_path / "lie.zip", [np.zeros((16, 12, 3), np.uint8)], extra={"image_shape": [12, 16]}))
    mixed = official_zip(tmp_path / "mixed.zip", [np.zeros((16, 12, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(DatasetError, match="expected"):
        ImageDataset(mixed)[1]
