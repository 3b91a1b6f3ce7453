
import numpy as np
import pytest
from PIL import Image

from spinedx.readers.cases import read_cases
from spinedx.readers.tree import sequence_files
from spinedx.stages.annotations import tabulate
from spinedx.errors import InputError

from conftest import write_labelme


def test_valid_tree_gives_one_row_per_image(tree, config):
    images, cases = tree
    table = tabulate(images, cases, config, "T1")
    assert list(table["patient_id"]) == ["P1", "P2"]
    assert list(table["sequence"]) == ["T1", "T1"]  # folder T1WI mapped to the canonical name
    assert list(table["diagnosis"]) == ["ependymoma", "schwannoma"]
    assert list(table["label"]) == [0, 1]
    assert list(table["cohort"]) == ["internal", "external"]
    row = table.iloc[0]
    assert (row.x0, row.y0, row.x1, row.y1) == (5, 4, 20, 18)
    assert (row.width, row.height) == (40, 30)
    assert len(row.image_sha256) == 64 and row.image_path == "P1/T1WI/P1_a.png"
    assert tabulate(images, cases, config, None).shape[0] == 2


@pytest.mark.parametrize("points", [[[20, 18], [5, 4]], [[20, 4], [5, 18]], [[5, 18], [20, 4]]])
def test_corner_order_does_not_matter(tree, config, points):
    images, cases = tree
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", points)
    row = tabulate(images, cases, config, "T1").iloc[0]
    assert (row.x0, row.y0, row.x1, row.y1) == (5, 4, 20, 18)


def test_box_is_clipped_to_the_image(tree, config):
    images, cases = tree
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", [[-10, -3.5], [55, 12]])
    row = tabulate(images, cases, config, "T1").iloc[0]
    assert (row.x0, row.y0, row.x1, row.y1) == (0, 0, 40, 12)


def test_box_outside_the_image_is_an_error(tree, config):
    images, cases = tree
    path = write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", [[50, 40], [60, 45]])
    with pytest.raises(InputError, match="outside") as error:
        tabulate(images, cases, config, "T1")
    assert str(path) in str(error.value)


def test_old_labelme_untyped_four_point_box_is_a_rectangle(tree, config):
    """labelme before 3.x wrote no shape_type: a 4-point box on the corners of a rectangle."""
    images, cases = tree
    shapes = [{"label": "tumor", "points": [[5, 4], [20, 4], [20, 18], [5, 18]]}]
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", None, shapes=shapes)
    row = tabulate(images, cases, config, "T1").iloc[0]
    assert (row.x0, row.y0, row.x1, row.y1) == (5, 4, 20, 18)


def test_explicit_four_point_polygon_is_never_a_rectangle(tree, config):
    images, cases = tree
    path = write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png",
                         [[5, 4], [20, 4], [20, 18], [5, 18]], shape_type="polygon")
    with pytest.raises(InputError, match="found 0 rectangles; other shapes ignored: 1 polygon") as error:
        tabulate(images, cases, config, "T1")
    assert str(path) in str(error.value)


def test_free_text_label_never_sets_the_diagnosis(tree, config):
    images, cases = tree
    shapes = [{"label": "schwannoma", "points": [[5, 4], [20, 18]], "shape_type": "rectangle"}]
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", None, shapes=shapes)
    assert tabulate(images, cases, config, "T1").iloc[0]["diagnosis"] == "ependymoma"


@pytest.mark.parametrize("count", [0, 2])
def test_zero_or_several_rectangles_are_errors(tree, config, count):
    images, cases = tree
    shapes = [{"label": "t", "points": [[5, 4], [20, 18]], "shape_type": "rectangle"}] * count
    shapes.append({"label": "cord", "points": [[1, 1], [3, 3]], "shape_type": "line"})
    path = write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", None, shapes=shapes)
    with pytest.raises(InputError, match=f"found {count}") as error:
        tabulate(images, cases, config, "T1")
    assert str(path) in str(error.value)


def test_malformed_json_names_the_file(tree, config):
    images, cases = tree
    path = images / "P1" / "T1WI" / "P1_a.json"
    path.write_text('{"shapes": [')
    with pytest.raises(InputError, match="not valid JSON") as error:
        tabulate(images, cases, config, "T1")
    assert str(path) in str(error.value)


def test_missing_image_is_an_error(tree, config):
    images, cases = tree
    (images / "P1" / "T1WI" / "P1_a.png").unlink()
    with pytest.raises(InputError, match="image file is missing"):
        tabulate(images, cases, config, "T1")


def test_truncated_image_is_an_error(tree, config):
    images, cases = tree
    png = images / "P1" / "T1WI" / "P1_a.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(InputError, match="cannot decode") as error:
        tabulate(images, cases, config, "T1")
    assert str(png) in str(error.value)


def test_windows_separators_in_image_path(tree, config):
    images, cases = tree
    sub = images / "P1" / "T1WI" / "png"
    sub.mkdir()
    (images / "P1" / "T1WI" / "P1_a.png").rename(sub / "P1_a.png")
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", None, [[5, 4], [20, 18]],
                  extra={"imagePath": "png\\P1_a.png"})
    assert tabulate(images, cases, config, "T1").iloc[0]["image_path"] == "P1/T1WI/png/P1_a.png"


@pytest.mark.parametrize("image_path", ["../../../outside.png", "/etc/passwd", "C:\\data\\x.png",
                                        "..\\..\\..\\outside.png"])
def test_image_path_escaping_the_data_folder_is_refused(tree, config, image_path):
    images, cases = tree
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(images.parent / "outside.png")
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", None, [[5, 4], [20, 18]],
                  extra={"imagePath": image_path})
    with pytest.raises(InputError, match="outside the images folder|absolute"):
        tabulate(images, cases, config, "T1")


def test_declared_size_must_match_the_image(tree, config):
    images, cases = tree
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", [[5, 4], [20, 18]],
                  extra={"imageWidth": 400})
    with pytest.raises(InputError, match="differ from the image"):
        tabulate(images, cases, config, "T1")


def test_decompression_bomb_is_refused(tree, config):
    images, cases = tree
    config["data"]["max_image_pixels"] = 1000
    with pytest.raises(InputError, match="decompression bomb"):
        tabulate(images, cases, config, "T1")


def test_unknown_sequence_folder_is_an_error(tree, config):
    images, cases = tree
    write_labelme(images / "P1" / "FLAIR" / "x.json", "x.png", [[5, 4], [20, 18]])
    with pytest.raises(InputError, match="unknown sequence folder 'FLAIR'"):
        tabulate(images, cases, config, "T1")


def test_patient_missing_from_cases_is_an_error(tree, config):
    images, cases = tree
    write_labelme(images / "P9" / "T1WI" / "x.json", "x.png", [[5, 4], [20, 18]])
    with pytest.raises(InputError, match="'P9' is not in the cases table"):
        tabulate(images, cases, config, "T1")


def test_same_image_under_two_patients_is_an_error(tree, config):
    images, cases = tree
    same = np.full((30, 40), 7, np.uint8)
    write_labelme(images / "P1" / "T1WI" / "P1_a.json", "P1_a.png", [[5, 4], [20, 18]], image=same)
    write_labelme(images / "P2" / "T1WI" / "P2_a.json", "P2_a.png", [[5, 4], [20, 18]], image=same)
    with pytest.raises(InputError, match="identical sha256"):
        tabulate(images, cases, config, "T1")


@pytest.mark.parametrize("content, message", [
    ("patient_id,diagnosis\nP1,ependymoma\n", "missing column"),
    ("patient_id,diagnosis,cohort\nP1,glioma,internal\nP2,schwannoma,external\n", "unknown diagnosis"),
    ("patient_id,diagnosis,cohort\nP1,ependymoma,training\nP2,schwannoma,external\n", "unknown cohort"),
    ("patient_id,diagnosis,cohort\nP1,ependymoma,internal\nP1,ependymoma,external\n", "more than once"),
])
def test_bad_cases_table(tmp_path, config, content, message):
    path = tmp_path / "cases.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        read_cases(path, config["classes"])
    assert str(path) in str(error.value)


def test_sequence_files_lists_only_that_sequence(tree, config):
    images, _ = tree
    write_labelme(images / "P1" / "t2wi" / "x.json", "x.png", [[5, 4], [20, 18]])
    t1 = sequence_files(images, config["sequences"], "T1")
    t2 = sequence_files(images, config["sequences"], "T2")
    assert {p.parent.name for p in t1} == {"T1WI"} and len(t1) == 4
    assert {p.name for p in t2} == {"x.json", "x.png"}
