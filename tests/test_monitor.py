"""Monitors (snnjax.monitor) and the inspect command's pictures."""

import jax
import numpy as np
import pytest
from PIL import Image

from snnjax import inspect as inspect_command
from snnjax import models, monitor, neurons
from test_analysis_commands import table_rows, workdir  # noqa: F401 (the trained-run fixture)


def _resnet(remat="none"):
  model = models.create("resnet19", num_classes=10, T=3, width=0.0625, remat=remat)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  return model, model.init(jax.random.key(0), x, train=False), x


@pytest.mark.parametrize("remat", ["none", "block", "neuron"])
def test_recordings_are_what_the_neuron_computes(remat):
  model, variables, x = _resnet(remat)
  names = monitor.layer_names(model, variables, x)
  assert names[:3] == ["stem_sn", "layer1_0/sn1", "layer1_0/sn2"] and len(names) == 18
  recording = jax.jit(lambda v, x: monitor.record(model, v, x, ["stem_sn", "layer3_0/sn2"]))(
      variables, x)
  assert set(recording) == {"stem_sn", "layer3_0/sn2"}
  for record in recording.values():
    assert set(record) == set(monitor.MONITORED)
    spikes, membrane, charge = neurons.lif(record["input"], tau=2.0, trace=True,
                                           return_charge=True)
    np.testing.assert_array_equal(record["spikes"], spikes)
    np.testing.assert_allclose(record["membrane"], membrane, atol=1e-6)
    np.testing.assert_allclose(record["membrane_before_reset"], charge, atol=1e-6)
    assert record["spikes"].shape[0] == 3


def _scan_outputs(jaxpr):
  counts = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      counts.append(len(eqn.outvars))
    for param in eqn.params.values():
      if hasattr(param, "jaxpr"):
        counts += _scan_outputs(param.jaxpr if hasattr(param.jaxpr, "eqns") else param.jaxpr.jaxpr)
  return counts


def test_monitoring_off_computes_no_trace():
  model, variables, x = _resnet()
  assert "monitor" not in variables   # init records nothing either
  plain = _scan_outputs(jax.make_jaxpr(lambda v: model.apply(v, x))(variables).jaxpr)
  recorded = _scan_outputs(jax.make_jaxpr(lambda v: monitor.record(model, v, x))(variables).jaxpr)
  assert len(plain) == len(recorded) == 18
  assert set(plain) == {2} and set(recorded) == {4}   # (v, spikes) vs (v, spikes, v[t], h[t])


def test_an_unknown_layer_is_named_with_the_ones_there_are():
  model, variables, x = _resnet()
  with pytest.raises(ValueError, match=r"no neuron layer \['sn9'\].*'stem_sn', 'layer1_0/sn1'"):
    monitor.record(model, variables, x, ["sn9"])


def test_inspect_writes_the_pictures_and_the_table(workdir, tmp_path, capsys):
  out = tmp_path / "pictures"
  assert inspect_command.main(["--workdir", str(workdir), "--out", str(out), "--neurons", "8"]) == 0
  printed = capsys.readouterr().out
  rows = table_rows((out / "summary.md").read_text(), "| layer")
  assert [r[0] for r in rows] == ["sn1", "sn2", "sn3"]
  assert all(0 <= float(r[2]) <= 1 for r in rows) and len(rows[0]) == 5 + 2    # T=2 columns
  assert "| sn1 |" in printed and f"wrote 6 files into {out}" in printed
  for path in [*sorted((out / "layers").glob("*.png")), out / "firing_rates.png",
               out / "firing_rate_over_time.png"]:
    with Image.open(path) as image:
      pixels = np.asarray(image.convert("L"), np.float32)
    assert image.size[0] > 300 and pixels.std() > 5, path       # a drawn picture, not blank
  assert len(list((out / "layers").glob("*.png"))) == 3


def test_inspect_rejects_an_unknown_layer_in_one_line(workdir, tmp_path, capsys):
  status = inspect_command.main(["--workdir", str(workdir), "--out", str(tmp_path / "o"),
                                 "--layers", "sn1,sn9"])
  err = capsys.readouterr().err
  assert status == 2 and len(err.splitlines()) == 1 and "'sn9'" in err and "'sn3'" in err, err
  assert not (tmp_path / "o").exists()
