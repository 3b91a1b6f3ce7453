import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spinedx.errors import InputError
from spinedx.imaging.cache import align, read_cache, write_cache
from spinedx.imaging.gray import to_grayscale_uint8
from spinedx.imaging.slice_view import crop_box
from spinedx.stages.annotations import tabulate
from spinedx.stages.preprocessing import build_cache

from conftest import write_labelme


def test_crop_keeps_the_lesion_shape_and_margin():
    row = pd.Series({"x0": 10.0, "y0": 20.0, "x1": 30.0, "y1": 100.0})
    # 20 x 80 box, 10% margin -> 24 x 96, squared around the centre -> 96 x 96.
    assert crop_box(row, 0.1, keep_aspect=True) == (-28, 12, 68, 108)
    assert crop_box(row, 0.0, keep_aspect=False) == (10, 20, 30, 100)


def test_cache_is_uint8_square_and_aligned(tree, config, tmp_path):
    images, cases = tree
    table = tabulate(images, cases, config, "T1")
    config["preprocessing"]["size"] = 32
    cache = build_cache(table, images, config)
    assert cache["images"].shape == (2, 32, 32) and cache["images"].dtype == np.uint8
    write_cache(cache, tmp_path / "T1.npz")
    loaded = read_cache(tmp_path / "T1.npz")
    reordered = align(loaded, table.iloc[::-1], tmp_path / "T1.npz")
    np.testing.assert_array_equal(reordered, cache["images"][::-1])
    with pytest.raises(InputError, match="missing from the cache"):
        align(loaded, table.assign(image_id="other"), tmp_path / "T1.npz")


def test_box_crop_shows_the_box_content(tmp_path, config):
    pixels = np.zeros((60, 80), np.uint8)
    pixels[20:40, 30:50] = 200  # the lesion, exactly the box
    write_labelme(tmp_path / "im" / "P1" / "T1" / "a.json", "a.png", [[30, 20], [50, 40]], size=(80, 60), image=pixels)
    (tmp_path / "cases.csv").write_text("patient_id,diagnosis,cohort\nP1,ependymoma,internal\n")
    table = tabulate(tmp_path / "im", tmp_path / "cases.csv", config, "T1")
    config["preprocessing"].update(size=32, margin=0.0)
    crop = build_cache(table, tmp_path / "im", config)["images"][0]
    assert crop[4:28, 4:28].min() > 150  # the crop is the bright lesion
    config["preprocessing"]["crop"] = "image"
    whole = build_cache(table, tmp_path / "im", config)["images"][0]
    assert whole.mean() < 100


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_any_png_mode_becomes_8bit_gray(tmp_path, mode):
    base = (np.arange(30 * 40).reshape(30, 40) % 200).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(base.astype(np.uint16) * 300)
    else:
        image = Image.fromarray(base).convert(mode)
    image.save(tmp_path / "x.png")
    gray = to_grayscale_uint8(Image.open(tmp_path / "x.png"))
    assert gray.dtype == np.uint8 and gray.shape == (30, 40)
    assert np.corrcoef(gray.ravel(), base.ravel())[0, 1] > 0.99


def test_corrupt_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable preprocessing cache"):
        read_cache(path)
