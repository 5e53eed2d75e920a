"""The image-folder source (ROOT/SPLIT/CLASS/IMAGE, ImageNet's usual layout) on real image files."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from snnjax import data
from snnjax.data import image_folder, sources

REPO = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ("n01440764", "n01443537", "n02102040")


def _pixels(seed: int, height: int, width: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image_folder(root: pathlib.Path, per_class: dict[str, int],
                       classes=CLASSES) -> dict[pathlib.Path, np.ndarray]:
  """PNG files (lossless, so pixels can be compared) of varying sizes; returns path -> pixels."""
  written = {}
  for split, count in per_class.items():
    for c, name in enumerate(classes):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(count):
        pixels = _pixels(100 * c + i, 10 + 3 * i, 14 + c)
        path = folder / f"{name}_{i}.PNG"
        Image.fromarray(pixels).save(path)
        written[path] = pixels
  return written


def _config(root, **overrides):
  c = data.default_config()
  c.update(dict(source="image_folder", name="imagenet2012", folder=str(root), image_size=8,
                eval_split="val"))
  c.augment.update(dict(crop_padding=0, random_resized_crop=True))
  c.update(overrides)
  return c


def test_examples_are_the_files_with_sorted_class_labels(tmp_path):
  written = write_image_folder(tmp_path, {"train": 4, "val": 2})
  (tmp_path / "train" / CLASSES[0] / "notes.txt").write_text("not an image")
  info = sources.image_folder_source(str(tmp_path), "train")
  assert info.class_names == CLASSES and info.num_classes == 3 and len(info.data) == 12
  seen = set()
  for i in range(len(info.data)):
    path = info.data.path(i)
    example = info.data[i]
    np.testing.assert_array_equal(example["image"], written[path])
    assert example["label"] == CLASSES.index(path.parent.name)
    seen.add(path)
  assert seen == {p for p in written if p.parts[-3] == "train"}
  labels = [info.data[i]["label"] for i in range(4)]
  assert len(set(labels)) > 1  # shuffled order: the first examples are not all of class 0


def test_labels_come_from_train_when_a_split_lacks_a_class(tmp_path):
  write_image_folder(tmp_path, {"train": 1})
  write_image_folder(tmp_path, {"val": 2}, classes=CLASSES[1:])
  val = sources.image_folder_source(str(tmp_path), "val")
  assert sorted({val.data[i]["label"] for i in range(len(val.data))}) == [1, 2]
  assert val.num_classes == 3


def test_slices_draw_from_all_classes(tmp_path):
  write_image_folder(tmp_path, {"train": 6})
  full = sources.image_folder_source(str(tmp_path), "train")
  head = sources.image_folder_source(str(tmp_path), "train[:9]")
  assert len(head.data) == 9
  assert [head.data.path(i) for i in range(9)] == [full.data.path(i) for i in range(9)]
  assert len({head.data[i]["label"] for i in range(9)}) == 3


def test_grey_palette_and_cmyk_jpeg_become_rgb(tmp_path):
  folder = tmp_path / "train" / "a"
  folder.mkdir(parents=True)
  grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
  Image.fromarray(grey, "L").save(folder / "grey.png")
  Image.fromarray(_pixels(1, 6, 8)).convert("P").save(folder / "palette.png")
  Image.fromarray(_pixels(2, 6, 8)).convert("CMYK").save(folder / "cmyk.jpg")
  info = sources.image_folder_source(str(tmp_path), "train")
  images = {info.data.path(i).name: info.data[i]["image"] for i in range(3)}
  assert all(x.shape == (6, 8, 3) and x.dtype == np.uint8 for x in images.values())
  np.testing.assert_array_equal(images["grey.png"], np.repeat(grey[..., None], 3, -1))


def test_pipeline_decodes_in_grain_workers(tmp_path):
  write_image_folder(tmp_path, {"train": 4, "val": 3})
  c = _config(tmp_path, worker_count=1)
  train = data.create_dataset(c, "train", batch_size=4, seed=0, shard_index=0, shard_count=1)
  assert (train.num_examples, train.steps_per_epoch, train.num_classes) == (12, 3, 3)
  batches = [next(train) for _ in range(4)]
  assert all(b["image"].shape == (4, 8, 8, 3) and b["image"].dtype == np.float32 for b in batches)
  in_process = data.create_dataset(_config(tmp_path), "val", batch_size=4, seed=0,
                                   shard_index=0, shard_count=1)
  val = list(in_process)
  assert [int(b["mask"].sum()) for b in val] == [4, 4, 1]
  labels = np.concatenate([b["label"][b["mask"]] for b in val])
  assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("layout, split, message", [
    ("missing", "train", r"not found: config.data.folder must name the dataset's root"),
    ("no_val", "val", r"val not found: .*holds \['train'\]"),
    ("flat_val", "val", r"val holds 2 images but no class folders: sort them into"),
    ("extra_class", "val", r"class folders \['n99999999'\] that .*train lacks"),
    ("empty_classes", "train", r"class folders hold no images"),
])
def test_wrong_layouts_name_the_path_and_the_fix(tmp_path, layout, split, message):
  root = tmp_path / "imagenet"
  if layout != "missing":
    write_image_folder(root, {"train": 1} if layout != "empty_classes" else {"train": 0})
  if layout == "flat_val":
    (root / "val").mkdir()
    for i in range(2):
      Image.fromarray(_pixels(i, 4, 4)).save(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
  if layout == "extra_class":
    write_image_folder(root, {"val": 1}, classes=("n99999999",))
  with pytest.raises((FileNotFoundError, ValueError), match=message):
    sources.image_folder_source(str(root), split)


def test_a_truncated_file_is_named(tmp_path):
  write_image_folder(tmp_path, {"train": 1})
  broken = tmp_path / "train" / CLASSES[1] / "broken.JPEG"
  broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
  info = sources.image_folder_source(str(tmp_path), "train")
  index = [info.data.path(i) for i in range(len(info.data))].index(broken)
  with pytest.raises(ValueError, match=rf"cannot decode image {broken}: .*replace or remove"):
    info.data[index]


def test_config_checks():
  for overrides, message in [
      (dict(image_size=0), "varying size: set config.data.image_size"),
      (dict(name="tiny_imagenet"), r"no constants for image_folder/tiny_imagenet.*Set "
                                   r"config.data.mean and .std"),
      (dict(folder=""), "must name the image folder root")]:
    with pytest.raises(ValueError, match=message):
      data.validate_config(_config("/x", **overrides))
  data.validate_config(_config("/x", name="tiny_imagenet", mean=(0.5,) * 3, std=(0.2,) * 3))


def test_train_py_reports_a_missing_folder_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/imagenet_resnet34_sml.py",
       "--workdir", str(tmp_path / "run"), f"--config.data.folder={tmp_path / 'none'}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(error) == 1 and str(tmp_path / "none") in error[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr


def test_input_pipeline_benchmark_smoke_run(tmp_path):
  """benchmarks/input_pipeline.py --smoke: both pipelines deliver, files are ImageNet-sized."""
  out = tmp_path / "input_pipeline.json"
  result = subprocess.run([sys.executable, "benchmarks/input_pipeline.py", "--smoke", "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.loads(out.read_text())
  assert {(r["pipeline"], r["workers"]) for r in record["pipelines"]} == {
      ("snnjax", 0), ("torch", 0), ("snnjax", 1), ("torch", 1)}
  assert all(r["images_per_s"] > 0 for r in record["pipelines"])
  assert abs(record["mean_file_kb"] / record["imagenet_train_mean_kb"] - 1) < 0.2
  assert record["consumption"]["imagenet_resnet34_sml_gflop_per_image"] > \
      record["consumption"]["resnet19_benchmark_gflop_per_image"] > 0
  assert "workers (cores) keep one such GPU fed" in out.with_suffix(".md").read_text()
