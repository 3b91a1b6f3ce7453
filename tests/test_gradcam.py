"""Grad-CAM stage: target layers, the map's way back onto the uncropped slice, peaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from spinedx import config as configuration, splitting
from spinedx.demo.plan import demo_settings
from spinedx.demo.spine import generate_demo_cohort
from spinedx.imaging import slice_view
from spinedx.imaging.cache import align, read_cache, write_cache
from spinedx.models.backbones import to_model_input
from spinedx.models.checkpoints import load_checkpoint
from spinedx.models.gradcam import find_target_layer, fold_mean_cams, grad_cams
from spinedx.readers.cases import read_cases
from spinedx.stages import annotations, gradcam, preprocessing, training
from spinedx.errors import InputError


@pytest.mark.parametrize("backbone, size, expected", [
    ("resnet10t", 64, "layer4"), ("mobilenetv3_small_050", 64, "blocks"), ("mobilenetv3_small_050", 32, "blocks"),
    ("efficientnet_b0", 64, "conv_head"), ("inception_v3", 80, "Mixed_7c")])
def test_target_layer_is_found_from_the_model(backbone, size, expected):
    model = timm.create_model(backbone, num_classes=2, in_chans=1).eval()
    layer, name = find_target_layer(model, size, 1)
    assert name == expected and layer is model.get_submodule(expected)


def test_target_layer_override_and_its_error():
    model = timm.create_model("resnet10t", num_classes=2, in_chans=1).eval()
    assert find_target_layer(model, 64, 1, "layer3.0")[1] == "layer3.0"
    with pytest.raises(InputError, match="no module 'Mixed_7c'"):
        find_target_layer(model, 64, 1, "Mixed_7c")


class BrightSpotNet(torch.nn.Module):
    """Class 1 score = mean brightness after a blur: its Grad-CAM is the blurred image itself."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False)
        self.head = torch.nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.features.weight.fill_(1 / 25)
            self.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))

    def forward(self, x):
        return self.head(torch.relu(self.features(x)).mean(dim=(2, 3)))


def crop_and_cam(tmp_path, spot_xy, settings):
    """A dark 100 x 80 slice with one bright spot, its labelme box (40, 30)-(60, 70),
    cropped like the pipeline does; the map of BrightSpotNet back on the slice."""
    height, width = 100, 80
    pixels = np.full((height, width), 20, np.uint8)
    x, y = spot_xy
    pixels[y - 2:y + 3, x - 2:x + 3] = 250
    Image.fromarray(pixels).save(tmp_path / "slice.png")
    row = pd.Series({"x0": 40.0, "y0": 30.0, "x1": 60.0, "y1": 70.0, "width": width, "height": height})
    crop = preprocessing.preprocess_image(tmp_path / "slice.png", row, settings, 10**7)
    net = BrightSpotNet().eval()
    # Pixels scaled to [0, 1] without centring: every activation is positive, so the CAM
    # is the blurred slice and peaks on the spot.
    cam = grad_cams(net, net.features, crop[None], np.array([1]),
                    lambda batch: to_model_input(torch.from_numpy(batch.copy()), 0.0, 1.0, 1), 4)[0]
    full = slice_view.to_original(cam, row, settings)
    return full, row


@pytest.mark.parametrize("keep_aspect", [True, False])
def test_map_lands_on_the_slice_where_the_evidence_is(tmp_path, keep_aspect):
    settings = {"crop": "box", "margin": 0.1, "keep_aspect": keep_aspect, "size": 32}
    # A spot off the box centre (lower left), so a flipped or shifted mapping misses it.
    full, row = crop_and_cam(tmp_path, (44, 63), settings)
    assert full.shape == (100, 80) and np.isfinite(full).all() and full.min() >= 0 and full.max() <= 1
    stats = gradcam.peak_statistics(full, row, settings)
    assert abs(stats["peak_x"] - 44) <= 2 and abs(stats["peak_y"] - 63) <= 2 and stats["peak_in_box"]
    x0, y0, x1, y1 = slice_view.view_window(row, settings)
    outside = np.ones(full.shape, bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert (full[outside] == 0).all()  # nothing outside what the model saw
    assert stats["box_fraction_of_image"] == pytest.approx(20 * 40 / (100 * 80))


def test_evidence_in_the_margin_is_not_counted_in_the_box(tmp_path):
    settings = {"crop": "box", "margin": 0.1, "keep_aspect": True, "size": 32}
    full, row = crop_and_cam(tmp_path, (35, 50), settings)  # left of the box, inside the crop window
    stats = gradcam.peak_statistics(full, row, settings)
    assert abs(stats["peak_x"] - 35) <= 2 and not stats["peak_in_box"]


def test_whole_image_crop_maps_one_to_one(tmp_path):
    settings = {"crop": "image", "margin": 0.1, "keep_aspect": True, "size": 40}
    full, row = crop_and_cam(tmp_path, (20, 80), settings)
    stats = gradcam.peak_statistics(full, row, settings)
    assert abs(stats["peak_x"] - 20) <= 3 and abs(stats["peak_y"] - 80) <= 3 and not stats["peak_in_box"]
    assert stats["box_fraction_of_view"] == pytest.approx(stats["box_fraction_of_image"])


def test_flat_map_has_no_peak():
    row = pd.Series({"x0": 1.0, "y0": 1.0, "x1": 3.0, "y1": 3.0, "width": 5, "height": 5})
    stats = gradcam.peak_statistics(np.zeros((5, 5)), row, {"crop": "image"})
    assert stats["peak_in_box"] is pd.NA and stats["peak_x"] is pd.NA


def test_demo_cohort_maps_peak_in_the_lesion_box_more_often_than_chance(tmp_path):
    """A resnet10t fold model trained briefly on a small demo cohort (64 px crops, as the
    demo config): fold-mean maps have each slice's shape, are finite, and their peaks
    fall in the labelme box more often than the box's share of the slice."""
    config = configuration.resolve({"demo_cohort": {"n_internal": {"ependymoma": 8, "schwannoma": 8},
                                                    "n_external": {"ependymoma": 4, "schwannoma": 4}},
                                    "splits": {"n_folds": 2}, "training": {"epochs": 4, "device": "cpu"}})
    images_dir, cases = tmp_path / "images", tmp_path / "cases.csv"
    generate_demo_cohort(images_dir, cases, demo_settings(config))
    table = annotations.tabulate(images_dir, cases, config, "CE-T1")
    table.to_parquet(tmp_path / "images.parquet")
    write_cache(preprocessing.build_cache(table, images_dir, config), tmp_path / "cache.npz")
    splitting.write_folds(splitting.make_folds(read_cases(cases, config["classes"]), 2, 0), tmp_path / "folds.tsv")
    for fold in (0, 1):
        training.train(tmp_path / "cache.npz", tmp_path / "images.parquet", tmp_path / "folds.tsv", "resnet10t",
                       "CE-T1", fold, config, tmp_path / f"fold{fold}")
    external = table[table.cohort == "external"].reset_index(drop=True)
    checkpoints = [load_checkpoint(tmp_path / f"fold{k}/best.pt") for k in (0, 1)]
    cams = fold_mean_cams(checkpoints, align(read_cache(tmp_path / "cache.npz"), external, "cache"),
                          external["label"].to_numpy(), torch.device("cpu"), 16)
    rows = []
    for cam, row in zip(cams, external.itertuples(index=False)):
        full = slice_view.to_original(cam, row, config["preprocessing"])
        assert full.shape == (row.height, row.width) and np.isfinite(full).all()
        rows.append(gradcam.peak_statistics(full, row, config["preprocessing"]))
    stats = pd.DataFrame(rows)
    assert stats["peak_in_box"].notna().all()
    assert stats["peak_in_box"].mean() > stats["box_fraction_of_image"].mean()
