"""NIR export and import: exact round trips, refusals, and snnTorch's importer as a cross-check."""

import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

from snnjax import evaluate, models
from snnjax import nir as snn_nir
from snnjax.train import steps
from test_train import tiny_config

ARRAYS = ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset")


def _net(name="depth_net", size=16, **kwargs):
  """A zoo model with BatchNorm statistics that are not the identity."""
  model = models.create(name, num_classes=10, T=4, width=0.0625, **kwargs)
  x = 3 * jax.random.uniform(jax.random.key(1), (3, size, size, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  rng = np.random.default_rng(0)
  stats = jax.tree.map(lambda a: a + rng.uniform(0.1, 0.5, a.shape).astype(np.float32),
                       variables["batch_stats"])
  return model, {**variables, "batch_stats": stats}, x


def _same_graphs(a, b):
  assert list(a.nodes) == list(b.nodes) and a.edges == b.edges
  for name, node in a.nodes.items():
    assert type(node) is type(b.nodes[name])
    for field in ARRAYS:
      if getattr(node, field, None) is not None:
        np.testing.assert_array_equal(getattr(node, field), getattr(b.nodes[name], field))


@pytest.mark.parametrize("name, kwargs", [
    ("depth_net", {"depth": 1}), ("depth_net", {"depth": 1, "neuron": "if"}),
    ("depth_net", {"depth": 0, "neuron": "plif"}),
    ("depth_net", {"depth": 0, "neuron_kwargs": {"tau": 3.0, "decay_input": True,
                                                 "v_threshold": 0.5}}),
    ("vggsnn", {}),                       # average pooling of spikes
])
def test_export_load_gives_the_same_network_and_export_again_the_same_graph(name, kwargs,
                                                                             tmp_path):
  model, variables, x = _net(name, **kwargs)
  graph = snn_nir.export(model, variables, input_shape=(16, 16, 1))
  nir.write(tmp_path / "net.nir", graph)
  loaded, loaded_variables = snn_nir.load(nir.read(tmp_path / "net.nir"), T=4)
  ours, theirs = model.apply(variables, x, train=False), loaded.apply(loaded_variables, x)
  # BatchNorm folded into the convs: the same network to float32 rounding.
  np.testing.assert_allclose(theirs.logits_seq, ours.logits_seq, atol=1e-5)
  np.testing.assert_allclose(theirs.logits, ours.logits, atol=1e-5)
  _same_graphs(graph, snn_nir.export(loaded, loaded_variables, input_shape=(16, 16, 1)))


def test_the_lif_map_states_dt():
  model, variables, _ = _net(depth=0, neuron_kwargs={"tau": 2.0})
  graph = snn_nir.export(model, variables, input_shape=(16, 16, 1), dt=1e-3)
  lif = graph.nodes["sn1"]
  assert isinstance(lif, nir.LIF) and lif.tau.shape == (4, 16, 16)
  np.testing.assert_allclose(lif.tau, 2e-3)          # tau_NIR = tau dt
  np.testing.assert_array_equal(lif.r, 2.0)          # decay_input=False: R = tau
  np.testing.assert_array_equal(lif.v_leak, 0.0)
  assert graph.metadata["dt"] == 1e-3
  assert list(graph.nodes) == ["input", "conv1", "sn1", "conv2", "sn2", "conv3", "sn3",
                               "readout_pool", "flatten", "fc", "output"]


@pytest.mark.parametrize("name, kwargs, size, message", [
    ("resnet19", {}, 16, "ResNet to NIR: its residual sums"),
    ("vgg_small", {}, 32, "max pooling"),
    ("depth_net", {"depth": 0, "neuron_kwargs": {"reset": "soft"}}, 16, "reset='soft'"),
    ("depth_net", {"depth": 0, "ann": True}, 16, "ANN"),
    ("depth_net", {"depth": 0, "bn_per_step": True}, 16, "bn_per_step=True"),
    ("depth_net", {"depth": 0}, 12, "adaptive pooling of a 3x3 map"),
])
def test_what_nir_cannot_express_is_refused_with_the_reason(name, kwargs, size, message):
  model = models.create(name, num_classes=10, T=2, width=0.0625, **kwargs)
  channels = 3 if name != "depth_net" else 1
  x = jnp.ones((2, size, size, channels))
  variables = model.init(jax.random.key(0), x, train=False)
  with pytest.raises(ValueError, match=message):
    snn_nir.export(model, variables, input_shape=(size, size, channels))


def test_load_refuses_graphs_it_cannot_run():
  weight = np.ones((2, 2), np.float32)
  cuba = nir.NIRGraph.from_list(nir.Affine(weight, np.zeros(2, np.float32)),
                                nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2),
                                            v_leak=np.zeros(2), v_threshold=np.ones(2)))
  with pytest.raises(ValueError, match="is a CubaLIF, which snnjax.nir.load does not run"):
    snn_nir.load(cuba)
  leaky = nir.NIRGraph.from_list(nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.ones(2),
                                         v_threshold=np.ones(2), v_reset=np.zeros(2)))
  with pytest.raises(ValueError, match="v_leak differs from v_reset"):
    snn_nir.load(leaky)


def _snntorch_run(graph, images, T):
  """snnTorch's own NIR importer, stepped T times per example; (fc currents, spikes by layer)."""
  torch = pytest.importorskip("torch")
  snntorch = pytest.importorskip("snntorch")
  from snntorch import utils
  from snntorch.import_nir import import_from_nir
  net = import_from_nir(graph)
  leaky = {name: module for name, module in net.named_modules()
           if isinstance(module, snntorch.Leaky)}
  spikes = {name: [] for name in leaky}
  hooks = [module.register_forward_hook(lambda m, i, out, name=name: spikes[name].append(
      out.detach().numpy().copy())) for name, module in leaky.items()]
  currents = []
  with torch.no_grad():
    for image in images:               # snnTorch's Flatten node flattens the batch axis too
      utils.reset(net)
      chw = torch.tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
      outputs = [net(chw) for _ in range(T)]
      currents.append(np.stack([(o[0] if isinstance(o, tuple) else o).numpy() for o in outputs]))
  for hook in hooks:
    hook.remove()
  return np.stack(currents, 1), {k: np.stack(v) for k, v in spikes.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """depth_net (depth 1) at 1/16 width, T=3, threshold 0.5, trained 16 steps on 8x8 images."""
  from snnjax.train import loop
  path = tmp_path_factory.mktemp("nir") / "run"
  config = tiny_config(max_steps=16, **{"sml.enabled": False, "model.name": "depth_net",
                                        "model.T": 3, "model.v_threshold": 0.5})
  config.model.options = {"depth": 1}
  loop.train_and_evaluate(config, path)
  return path


def test_snntorch_runs_an_exported_trained_model_to_the_same_spikes_and_logits(trained):
  """Someone else's implementation reads our graph: snnTorch 1.0's import_from_nir.

  Spikes must agree exactly and fc currents to 1e-5: both sides compute in float32 from
  the same folded weights; convolutions sum in a different order (oneDNN vs XLA), which
  moves membranes by ~1e-7, so a spike could flip only at a membrane that close to the
  threshold (none on this batch).
  """
  config, experiment, state, _ = evaluate.restore_run(trained, "best")
  variables = jax.device_get(steps.model_variables(state))
  images = np.asarray(next(iter(experiment.test_data.dataset))["image"][:6])
  graph = snn_nir.export(experiment.model, variables, input_shape=images.shape[1:])
  T = config.model.T
  currents, torch_spikes = _snntorch_run(graph, images, T)
  ours = experiment.model.apply(variables, images, train=False)
  np.testing.assert_allclose(currents, ours.logits_seq, atol=1e-5)
  from snnjax import monitor
  recording = monitor.record(experiment.model, variables, images)
  assert len(torch_spikes) == len(recording) == 4
  for (layer, record), theirs in zip(recording.items(), torch_spikes.values()):
    # theirs: [examples * T, C, H, W] in call order; ours: [T, B, H, W, C]
    theirs = theirs.reshape(len(images), T, *theirs.shape[1:]).transpose(1, 0, 3, 4, 2)
    np.testing.assert_array_equal(theirs, record["spikes"], err_msg=layer)
    assert 0 < record["spikes"].mean() < 1, layer     # the comparison sees real activity
