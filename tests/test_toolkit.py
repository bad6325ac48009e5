"""toolkit: the shared covariance, list parsers and image grid, against independent references."""
import math

import numpy as np
import pytest
import torch

from toolkit.covariance import StreamingCovariance
from toolkit.images import image_grid
from toolkit.naming import slug
from toolkit.parsing import MAX_SEED, parse_float_list, parse_seed_list


class Refused(Exception):
    """Stands in for a caller's own error type (click.BadParameter, RecipeError)."""


# ----------------------------------------------------------------------------- covariance

def test_streaming_covariance_equals_numpy_cov_with_a_large_offset_and_mixed_batches():
    rng = np.random.RandomState(0)
    data = rng.randn(3001, 7) * np.arange(1, 8) + 1e4  # large mean: the raw-moment formula would cancel badly
    stats = StreamingCovariance(7)
    for k, chunk in enumerate(np.split(data, [0, 1, 7, 250, 251, 2000])):   # includes an empty batch
        stats.update(torch.from_numpy(chunk) if k % 2 else chunk.astype(np.float64))
    assert stats.count == 3001
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance(), np.cov(data.T), rtol=1e-9)
    np.testing.assert_allclose(stats.covariance(ddof=0), np.cov(data.T, bias=True), rtol=1e-9)
    again = StreamingCovariance.from_state(stats.count, stats.mean, stats.scatter)
    again.update(data[:10])
    np.testing.assert_allclose(again.covariance(), np.cov(np.concatenate([data, data[:10]]).T), rtol=1e-9)


def test_streaming_covariance_refuses_what_it_cannot_answer():
    stats = StreamingCovariance(3)
    with pytest.raises(ValueError, match="no rows"):
        stats.mean
    stats.update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        stats.covariance()
    with pytest.raises(ValueError, match="changed from 3 to 4"):
        stats.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        stats.update(np.zeros(3))


# ----------------------------------------------------------------------------- parsing

def test_seed_lists_keep_order_drop_duplicates_and_raise_the_callers_error():
    assert parse_seed_list("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seed_list("5, 2 - 3, 5") == [5, 2, 3]
    assert parse_seed_list(9) == [9] and parse_seed_list([4, 4, 1]) == [4, 1]
    assert parse_seed_list(f"{MAX_SEED}") == [MAX_SEED]
    for bad in ["", " , ", "a-b", "3-1", "1,,x", "1.5", "-2", str(MAX_SEED + 1)]:
        with pytest.raises(Refused):
            parse_seed_list(bad, error=Refused)
    with pytest.raises(ValueError):   # the default error type
        parse_seed_list("x")


def test_a_huge_seed_range_is_refused_before_it_is_built():
    with pytest.raises(Refused, match="at most 1000 seeds; '0-4000000000' holds 4000000001"):
        parse_seed_list("0-4000000000", max_count=1000, error=Refused)
    assert len(parse_seed_list("0-499, 500-999", max_count=1000)) == 1000


def test_float_lists_refuse_nan_infinity_and_values_out_of_the_callers_bounds():
    assert parse_float_list("-3,-1.5, 0,1.5,3") == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert parse_float_list("100", low=-100, high=100) == [100.0]
    for bad in ["nan", "1, NaN", "inf", "-inf, 2", "1e400", "two", "", "1;2"]:
        with pytest.raises(Refused, match="finite numbers"):
            parse_float_list(bad, error=Refused)
    with pytest.raises(Refused, match="between -100 and 100"):
        parse_float_list("100.5", low=-100, high=100, error=Refused)
    with pytest.raises(Refused, match="1 to 2 finite"):
        parse_float_list("1,2,3", max_count=2, error=Refused)
    assert all(math.isfinite(v) for v in parse_float_list("1e300, -1e300"))


# ----------------------------------------------------------------------------- image grid

def test_slug_keeps_lowercase_letters_and_digits_joined_by_single_dashes():
    assert slug("Long sleeve / Ankara") == "long-sleeve-ankara"
    assert slug("  --Kente_2026!! ") == "kente-2026"
    assert slug("T-Shirt") == "t-shirt" and slug(7) == "7"
    assert slug("über") == "ber" and slug("ñ ñ") == "" and slug("") == ""  # the caller decides what "" means


def test_image_grid_places_images_in_rows_with_padding():
    images = [np.full((2, 2, 3), i * 10, np.uint8) for i in range(7)]
    sheet = image_grid(images, cols=3, pad=0)
    assert sheet.shape == (6, 6, 3)
    assert sheet[2, 2, 0] == 40 and sheet[4, 0, 0] == 60 and sheet[4, 2, 0] == 255  # empty cell stays white
    padded = image_grid(images[:2], cols=2, pad=1, background=7)
    assert padded.shape == (4, 7, 3) and padded[0, 0, 0] == 7 and padded[1, 4, 0] == 10
    with pytest.raises(ValueError):
        image_grid([])


def test_training_grids_keep_the_official_layout(tmp_path):
    """reals.png / fakes*.png: (columns, rows) images edge to edge, filled row by row (as the official
    save_image_grid's reshape/transpose does, written out here by hand)."""
    from PIL import Image

    from training.loop import save_grid

    rng = np.random.RandomState(1)
    images = rng.randint(0, 256, size=(6, 3, 4, 3), dtype=np.uint8)
    save_grid(images, (3, 2), tmp_path / "grid.png")
    expected = np.zeros((2 * 3, 3 * 4, 3), np.uint8)
    for i, image in enumerate(images):
        row, col = divmod(i, 3)
        expected[row * 3:(row + 1) * 3, col * 4:(col + 1) * 4] = image
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grid.png")), expected)
