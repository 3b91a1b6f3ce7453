"""Every stage writes through spinedx.io: whole files or nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spinedx import io
from spinedx.imaging.cache import read_cache, write_cache


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "deep/table.csv"
    io.write_csv(pd.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError):
        with io.atomic_output(target) as partial:
            partial.write_text("a\n2\n")  # half written when the job dies
            raise RuntimeError("killed")
    assert pd.read_csv(target).a.tolist() == [1]
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_text_and_npz_writers_land_on_the_requested_name(tmp_path):
    io.write_text("x: 1\n", tmp_path / "a/config.yaml")
    assert (tmp_path / "a/config.yaml").read_text() == "x: 1\n"
    cache = {"images": np.zeros((2, 4, 4), np.uint8), "image_id": np.array(["p1", "p2"])}
    write_cache(cache, tmp_path / "T2.npz")  # savez appends .npz: still one file, this name
    assert [p.name for p in tmp_path.glob("T2*")] == ["T2.npz"]
    assert read_cache(tmp_path / "T2.npz")["image_id"].tolist() == ["p1", "p2"]
