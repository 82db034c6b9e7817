"""Pascal VOC XML folders: read and checked (tlx.data.voc), prepared as tfds records
(tlx.data.detection_folder), on generated folders and on deepforest's real annotated images."""

import importlib.util
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from tlx.data import detection_folder
from tlx.data.voc import AnnotationError, check_names, read_voc


def voc_xml(filename, width, height, objects):
    parts = [
        f"<annotation><filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (x0, y0, x1, y1), *difficult in objects:
        flag = f"<difficult>{int(bool(difficult and difficult[0]))}</difficult>"
        parts.append(
            f"<object><name>{name}</name>{flag}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_example(folder, stem, objects, size=(40, 30), image_folder=None):
    """An RGB PNG of `size` (width, height) and its XML; the image in `image_folder` if given."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(stem)).integers(0, 256, (size[1], size[0], 3), np.uint8)
    target = image_folder or folder
    target.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(target / f"{stem}.png")
    (folder / f"{stem}.xml").write_text(voc_xml(f"{stem}.png", *size, objects))
    return pixels


def records(builder, split):
    return list(builder.as_data_source(split=split))


def test_read_voc_keeps_boxes_names_and_difficult(tmp_path):
    write_example(tmp_path, "a", [("cat", (1, 2, 30, 20)), ("dog", (5, 5, 9, 9), True)])
    annotation = read_voc(tmp_path / "a.xml")
    assert (annotation.width, annotation.height, annotation.filename) == (40, 30, "a.png")
    np.testing.assert_array_equal(annotation.boxes, [[1, 2, 30, 20], [5, 5, 9, 9]])
    assert annotation.names == ("cat", "dog")
    assert annotation.difficult.tolist() == [False, True]
    assert check_names(annotation, ["dog", "cat"]).tolist() == [1, 0]


@pytest.mark.parametrize(
    "objects, message",
    [
        ([("cat", (10, 2, 5, 20))], r"object 1 \(cat\).*inverted; xmin must be below xmax"),
        ([("cat", (1, 2, 30, 20)), ("cat", (0, 0, 41, 10))], r"object 2.*outside the 40x30 image"),
        ([("cat", (-1, 0, 10, 10))], "outside the 40x30 image"),
    ],
)
def test_bad_boxes_name_the_file_and_object(tmp_path, objects, message):
    write_example(tmp_path, "bad", objects)
    with pytest.raises(AnnotationError, match=message) as info:
        read_voc(tmp_path / "bad.xml")
    assert "bad.xml" in str(info.value)


def test_unknown_class_missing_image_and_broken_xml_are_refused_before_preparing(tmp_path):
    write_example(tmp_path / "f", "a", [("cat", (1, 2, 30, 20))])
    with pytest.raises(AnnotationError, match=r"class 'cat' is not in the label list \(dog\)"):
        detection_folder.folder_config(tmp_path / "f", labels=["dog"])
    (tmp_path / "f" / "a.png").unlink()
    with pytest.raises(AnnotationError, match="its image 'a.png' is not there"):
        detection_folder.folder_config(tmp_path / "f")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "x.xml").write_text("<annotation><filename>")
    with pytest.raises(AnnotationError, match="not well-formed XML"):
        detection_folder.folder_config(tmp_path / "g")


def test_undecodable_image_and_wrong_size_name_the_file_when_prepared(tmp_path):
    write_example(tmp_path / "f", "a", [("cat", (1, 2, 30, 20))])
    (tmp_path / "f" / "a.png").write_bytes(b"not a png")
    with pytest.raises(Exception, match=r"Cannot read image .*a\.png"):
        detection_folder.builder(tmp_path / "f", str(tmp_path / "data"))
    write_example(tmp_path / "g", "a", [("cat", (1, 2, 30, 20))])
    Image.new("RGB", (50, 30)).save(tmp_path / "g" / "a.png")
    with pytest.raises(Exception, match=r"the size given is 40x30, but a.png is 50x30"):
        detection_folder.builder(tmp_path / "g", str(tmp_path / "data2"))


def test_voc_layout_presplit_folders_round_trip_boxes_and_pixels(tmp_path):
    root = tmp_path / "voc"
    train = write_example(
        root / "train" / "Annotations",
        "a",
        [("cat", (4, 3, 20, 15)), ("dog", (0, 0, 40, 30))],
        image_folder=root / "train" / "JPEGImages",
    )
    write_example(root / "test", "b", [("dog", (10, 10, 20, 20))])
    builder = detection_folder.builder(root, str(tmp_path / "data"))
    assert builder.info.features["objects"]["label"].names == ["cat", "dog"]
    (record,) = records(builder, "train")
    np.testing.assert_array_equal(record["image"], train)  # PNG: lossless
    # tfds BBoxes: (ymin, xmin, ymax, xmax) as fractions of the 40 x 30 image.
    np.testing.assert_allclose(
        record["objects"]["bbox"], [[3 / 30, 4 / 40, 15 / 30, 20 / 40], [0, 0, 1, 1]], atol=1e-6
    )
    assert np.asarray(record["objects"]["label"]).tolist() == [0, 1]
    assert [r["path"] for r in records(builder, "test")] == [b"test/b.xml"]


def test_flat_folder_splits_by_hash_and_is_prepared_once_per_content(tmp_path):
    root = tmp_path / "flat"
    for i in range(12):
        write_example(root, f"img{i:02d}", [("thing", (1, 1, 10 + i, 12))])
    first = detection_folder.folder_config(root)
    assert {split for split, _, _ in first.files} <= {"train", "validation", "test"}
    assert first.name == detection_folder.folder_config(root).name
    write_example(root, "img99", [("thing", (1, 1, 5, 5))])
    assert detection_folder.folder_config(root).name != first.name


def test_deepforest_real_annotations(tmp_path):
    spec = importlib.util.find_spec("deepforest")
    if spec is None:
        pytest.skip("deepforest is not installed (pip install --no-deps deepforest==2.1.0)")
    source = pathlib.Path(spec.submodule_search_locations[0]) / "data"
    root = tmp_path / "trees" / "test"
    root.mkdir(parents=True)
    # As deepforest ships them: OSBS_029.xml names its GeoTIFF, SOAP_061.xml its PNG.
    for name in ("OSBS_029.xml", "OSBS_029.tif", "SOAP_061.xml", "SOAP_061.png"):
        shutil.copy(source / name, root / name)
    counts = {stem: len(read_voc(root / f"{stem}.xml").names) for stem in ("OSBS_029", "SOAP_061")}
    assert counts == {"OSBS_029": 61, "SOAP_061": 37}
    (tmp_path / "trees" / "train").mkdir()
    shutil.copy(root / "SOAP_061.xml", tmp_path / "trees" / "train" / "SOAP_061.xml")
    shutil.copy(root / "SOAP_061.png", tmp_path / "trees" / "train" / "SOAP_061.png")
    builder = detection_folder.builder(tmp_path / "trees", str(tmp_path / "data"))
    assert builder.info.features["objects"]["label"].names == ["Alive", "Dead", "Tree"]
    test = records(builder, "test")
    assert sorted(len(r["objects"]["label"]) for r in test) == [37, 61]
    for r in test:
        bbox = np.asarray(r["objects"]["bbox"])
        assert r["image"].shape[2] == 3 and np.all((bbox >= 0) & (bbox <= 1))
        assert np.all(bbox[:, 2] > bbox[:, 0]) and np.all(bbox[:, 3] > bbox[:, 1])


def coco_file(path, images, annotations, categories):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def coco_image(folder, name, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(name)).integers(0, 256, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(folder / name)
    return {"id": len(name), "file_name": name, "width": size[0], "height": size[1]}


def test_coco_folder_splits_by_file_name_and_keeps_category_order(tmp_path):
    root = tmp_path / "coco"
    categories = [{"id": 7, "name": "zebra"}, {"id": 3, "name": "ant"}]  # sorted by id: ant, zebra
    a = coco_image(root / "images", "a.png")
    bb = coco_image(root / "images", "bb.png")
    coco_file(
        root / "annotations" / "instances_train.json",
        [a],
        [
            {"id": 1, "image_id": a["id"], "bbox": [4, 3, 16, 12], "category_id": 7},
            {"id": 2, "image_id": a["id"], "bbox": [0, 0, 10, 10], "category_id": 3, "iscrowd": 1},
        ],
        categories,
    )
    coco_file(
        root / "annotations" / "instances_val.json",
        [bb],
        [{"id": 3, "image_id": bb["id"], "bbox": [1, 1, 5, 5], "category_id": 3}],
        categories,
    )
    builder = detection_folder.builder(root, str(tmp_path / "data"))
    assert builder.info.features["objects"]["label"].names == ["ant", "zebra"]
    (train,) = records(builder, "train")
    np.testing.assert_allclose(
        train["objects"]["bbox"], [[3 / 30, 4 / 40, 15 / 30, 20 / 40], [0, 0, 10 / 30, 10 / 40]]
    )
    assert np.asarray(train["objects"]["label"]).tolist() == [1, 0]
    assert np.asarray(train["objects"]["difficult"]).tolist() == [False, True]  # crowd
    assert len(records(builder, "validation")) == 1


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"bbox": [30, 0, 20, 10], "category_id": 1}, "outside image a.png"),
        ({"bbox": [0, 0, 0, 10], "category_id": 1}, "has no area"),
        ({"bbox": [0, 0, 5, 5], "category_id": 9}, "category_id 9 is not in categories"),
        ({"bbox": [0, 0, 5, 5], "category_id": 1, "image_id": 99}, "image_id 99 is not in"),
    ],
)
def test_bad_coco_annotations_name_the_file_and_annotation(tmp_path, annotation, message):
    root = tmp_path / "coco"
    a = coco_image(root, "a.png")
    coco_file(
        root / "labels.json",
        [a],
        [{"id": 5, "image_id": a["id"], **annotation}],
        [{"id": 1, "name": "thing"}],
    )
    with pytest.raises(AnnotationError, match=message) as info:
        detection_folder.folder_config(root)
    assert "labels.json, annotation 1 (id 5)" in str(info.value)
