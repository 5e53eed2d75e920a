"""Input-noise robustness: noise statistics, clipping, the normalisation round trip, the sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import robustness

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)


def test_gaussian_noise_has_the_right_std_and_is_clipped():
  images = jnp.full((4, 32, 32, 3), 0.5)
  noisy = np.asarray(robustness.gaussian_noise(images, 0.1, jax.random.key(0)))
  delta = noisy - 0.5  # |noise| > 0.5 (5 sigma) is never clipped in practice
  assert abs(delta.std() - 0.1) < 0.003 and abs(delta.mean()) < 0.003
  dark = np.asarray(robustness.gaussian_noise(jnp.zeros((4, 32, 32, 3)), 0.5, jax.random.key(1)))
  assert dark.min() == 0.0 and dark.max() <= 1.0
  assert abs((dark == 0).mean() - 0.5) < 0.02  # the negative half is clipped to 0
  assert np.array_equal(np.asarray(robustness.gaussian_noise(images, 0.0, jax.random.key(2))),
                        np.asarray(images))


def test_salt_and_pepper_flips_about_amount_of_pixels_to_0_or_1():
  images = jnp.full((4, 64, 64, 3), 0.5)
  noisy = np.asarray(robustness.salt_and_pepper(images, 0.1, jax.random.key(0)))
  changed = noisy != 0.5
  assert np.all(changed == changed[..., :1])  # a pixel's channels change together
  pixels = changed[..., 0]
  assert abs(pixels.mean() - 0.1) < 0.01
  values = noisy[..., 0][pixels]
  assert set(np.unique(values)) == {0.0, 1.0}
  assert abs((values == 1.0).mean() - 0.5) < 0.05  # salt and pepper equally likely
  untouched = np.asarray(robustness.salt_and_pepper(images, 0.0, jax.random.key(1)))
  assert np.array_equal(untouched, np.asarray(images))


def test_noise_on_normalised_images_round_trips_through_the_pipeline_statistics():
  raw = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
  mean, std = jnp.asarray(MEAN), jnp.asarray(STD)
  z = (raw - mean) / std
  clean = robustness.noisy_normalized(z, 0.0, jax.random.key(1), mean, std, kind="gaussian")
  assert np.array_equal(np.asarray(clean), np.asarray(z))  # strength 0: unchanged
  noisy = robustness.noisy_normalized(z, 0.3, jax.random.key(1), mean, std, kind="gaussian")
  back = np.asarray(noisy * std + mean)
  assert back.min() >= -1e-6 and back.max() <= 1 + 1e-6 and (np.abs(back - raw) > 0.01).any()
  salted = robustness.noisy_normalized(z, 0.5, jax.random.key(2), mean, std, kind="salt_pepper")
  back = np.asarray(salted * std + mean)
  replaced = np.abs(back - np.asarray(raw)).max(-1) > 1e-5
  assert set(np.round(back[replaced], 5).ravel()) <= {0.0, 1.0}


def _batches():
  """Batches of normalised bright (label 1) and dark (label 0) images."""
  labels = np.asarray([0, 1] * 16, np.int32)
  raw = np.where(labels[:, None, None, None] == 1, 0.8, 0.2) * np.ones((1, 8, 8, 3))
  images = ((raw - np.asarray(MEAN)) / np.asarray(STD)).astype(np.float32)
  return [{"image": images[i:i + 8], "label": labels[i:i + 8], "mask": np.ones(8, bool)}
          for i in range(0, 32, 8)]


def _evaluate(batches):
  """Classifies by mean raw brightness > 0.5: perfect on clean data, chance on pure noise."""
  correct = count = 0
  for batch in batches:
    raw = np.asarray(batch["image"]) * np.asarray(STD) + np.asarray(MEAN)
    correct += np.sum((raw.mean(axis=(1, 2, 3)) > 0.5) == batch["label"])
    count += len(batch["label"])
  return {"test_accuracy": correct / count}


def test_accuracy_under_noise_sweeps_every_strength_and_the_clean_data_once():
  clean, passes = _batches(), []

  def counted(batches, what):
    passes.append(what)
    assert (batches is clean) == (what == "clean")
    return _evaluate(batches)

  results = robustness.accuracy_under_noise(
      counted, clean, {"gaussian": [0.0, 0.05], "salt_pepper": [0.0, 1.0]},
      jax.random.key(0), MEAN, STD)
  assert passes == ["clean", "gaussian 0.05", "salt_pepper 1"]
  assert list(results) == ["gaussian", "salt_pepper"]
  assert results["gaussian"] == {0.0: 1.0, 0.05: 1.0}
  assert results["salt_pepper"][0.0] == 1.0
  assert 0.2 < results["salt_pepper"][1.0] < 0.8  # every pixel random: about chance


def test_bad_noise_settings_are_named():
  with pytest.raises(ValueError, match=r"salt_pepper strengths \[1.5\] out of range"):
    robustness.check_noise("salt_pepper", [0.0, 1.5])
  with pytest.raises(ValueError, match=r"gaussian strengths \[-0.1\]"):
    robustness.check_noise("gaussian", [-0.1])
  with pytest.raises(ValueError, match="unknown noise 'speckle'"):
    robustness.check_noise("speckle", [0.1])


def test_table_and_plot(tmp_path):
  results = {"gaussian": {0.0: 0.91, 0.1: 0.5}, "salt_pepper": {0.0: 0.91, 0.05: 0.7}}
  table = robustness.format_table(results, "noise")
  assert "| gaussian | 0.1 | 50.00 |" in table and "| salt_pepper | 0.05 | 70.00 |" in table
  robustness.plot(results, tmp_path / "r.png")
  assert (tmp_path / "r.png").stat().st_size > 1000


@pytest.mark.parametrize("module", ["probe", "robustness"])
def test_report_on_a_missing_workdir_exits_2_naming_it(module, tmp_path, capsys):
  import importlib
  main = importlib.import_module(f"snnjax.{module}").main
  missing = tmp_path / "no_such_run"
  assert main(["--workdir", str(missing)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "no_such_run" in err
