"""Energy estimate: layer recording on tiny hand-written models, hand-computed energies, rates."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import energy, layers

T, B = 4, 2


class TwoLayer(nn.Module):
  """Analog Dense (direct encoding) -> LIF -> Dense on spikes -> time mean."""

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(4, use_bias=False)(layers.repeat_over_time(x, T))
    spikes = layers.LIF()(h)
    return layers.time_mean(nn.Dense(3)(spikes))


def _two_layer(first_kernel):
  model = TwoLayer()
  x = jnp.asarray([[1.0, 0.5]] * B)
  variables = model.init(jax.random.key(0), x)
  params = jax.tree.map(lambda a: a, variables["params"])
  params["Dense_0"]["kernel"] = jnp.asarray(first_kernel, jnp.float32)
  return model, {**variables, "params": params}, x


def test_two_layer_energy_matches_hand_computation():
  # Units 0, 1 receive 1.0 per step and fire every step (u = 0.5 u + 1 >= 1, hard reset);
  # units 2, 3 receive 0 and never fire: the second layer's input rate is exactly 0.5.
  model, variables, x = _two_layer([[1, 1, 0, 0], [0, 0, 0, 0]])
  report = energy.energy_report(model, variables, x, T=T)
  first, second = report.layers
  assert (first.call.name, second.call.name) == ("Dense_0", "Dense_1")
  assert (first.call.flops, second.call.flops) == (2 * 4, 4 * 3)
  assert not first.call.spiking and first.call.time_invariant
  assert second.call.spiking and second.call.input_rate == 0.5
  assert (first.macs, first.acs) == (8, 0)
  assert (second.macs, second.acs) == (0, 12 * 0.5 * T)
  # E_SNN = FLOPs_1 E_MAC + FLOPs_2 r T E_AC;  E_ANN = (FLOPs_1 + FLOPs_2) E_MAC.
  assert report.snn_energy_pj == pytest.approx(8 * 3.2 + 12 * 0.5 * T * 0.1, rel=1e-12)
  assert report.ann_energy_pj == pytest.approx(20 * 3.2, rel=1e-12)
  assert report.ratio == pytest.approx(64.0 / 28.0, rel=1e-12)


def test_silent_spiking_layer_reports_zero_accumulates():
  model, variables, x = _two_layer(np.zeros((2, 4)))
  report = energy.energy_report(model, variables, x, T=T)
  silent = report.layers[1]
  assert silent.call.spiking and silent.call.input_rate == 0.0
  assert silent.acs == 0.0 and silent.energy_pj == 0.0
  assert report.snn_energy_pj == pytest.approx(8 * 3.2)


class FoldedConv(nn.Module):
  """Time-varying analog frames [T, B, H, W, C] through a grouped strided conv on [T*B, ...]."""

  @nn.compact
  def __call__(self, frames):
    y = nn.Conv(6, (3, 3), strides=2, feature_group_count=2)(layers.fold_time(frames))
    y = layers.time_mean(layers.unfold_time(y, T))
    return nn.remat(nn.Dense)(5)(y.reshape(y.shape[0], -1))


@pytest.fixture(scope="module")
def folded_conv():
  frames = jax.random.normal(jax.random.key(1), (T, B, 6, 6, 4))
  model = FoldedConv()
  return model, model.init(jax.random.key(0), frames), frames


def test_conv_counts_on_folded_time_and_per_image_layers(folded_conv):
  model, variables, frames = folded_conv
  conv, dense = energy.record_layers(model, variables, frames, T=T, batch_size=B)
  assert conv.kind == "conv" and conv.kernel_shape == (3, 3, 2, 6)
  assert conv.output_shape == (T * B, 3, 3, 6) and conv.time_steps == T
  assert conv.flops == (3 * 3 * 6) * (3 * 3 * 4 // 2)
  assert not conv.spiking and not conv.time_invariant
  assert energy.layer_energy(conv).macs == conv.flops * T  # a new analog input every step
  assert dense.name == "CheckpointDense_0" and dense.time_steps == 1
  assert dense.flops == 54 * 5
  assert energy.layer_energy(dense).macs == dense.flops


def test_ambiguous_layout_without_batch_size_is_an_error(folded_conv):
  model, variables, frames = folded_conv
  with pytest.raises(ValueError, match="batch_size"):
    energy.record_layers(model, variables, frames, T=T)


def test_format_report_is_a_markdown_table():
  model, variables, x = _two_layer([[1, 1, 0, 0], [0, 0, 0, 0]])
  text = energy.format_report(energy.energy_report(model, variables, x, T=T), unit="pJ")
  lines = text.splitlines()
  assert lines[0].startswith("| layer |") and "E_SNN (pJ)" in lines[0]
  assert any(line.startswith("| Dense_1 | dense | LIF_0 spikes | 0.5000 |") for line in lines)
  assert "E_SNN = 28 pJ" in text and "E_ANN = 64 pJ" in text
  with pytest.raises(ValueError, match="unit"):
    energy.format_report(energy.EnergyReport(layers=()), unit="kWh")


class Nested(nn.Module):
  """A block whose neuron is called twice (two sown rates)."""

  @nn.compact
  def __call__(self, x):
    lif = layers.LIF()
    return lif(x) + lif(2 * x)


class Outer(nn.Module):

  @nn.compact
  def __call__(self, x):
    return layers.LIF()(Nested()(x))


def test_firing_rates_from_intermediates():
  x = jnp.asarray(np.tile([0.0, 0.6, 1.2, 2.0], (T, B, 1)), jnp.float32)
  variables = Outer().init(jax.random.key(0), x)
  _, state = Outer().apply(variables, x, mutable=["intermediates"])
  rates = energy.firing_rates(state)
  assert set(rates) == {"Nested_0/LIF_0", "LIF_0"}
  assert rates == energy.firing_rates(state["intermediates"])
  # u = u/2 + x: x = [0, .6, 1.2, 2] fires at rates [0, 1/4, 1, 1] (0.6 fires at t=2 only),
  # 2x = [0, 1.2, 2.4, 4] at [0, 1, 1, 1]; the block's two calls average to (0.5625 + 0.75) / 2.
  assert float(rates["Nested_0/LIF_0"]) == pytest.approx((0.5625 + 0.75) / 2)


# --- Which neuron each layer reads: the names evaluate's tables share -------------------------


class Residual(nn.Module):
  """stem -> sn_a -> (conv -> sn_b) and a 1x1 shortcut that reads sn_a after sn_b ran; pooled."""

  @nn.compact
  def __call__(self, x):
    a = layers.LIF(name="sn_a")(nn.Dense(6, name="stem")(layers.repeat_over_time(x, T)))
    b = layers.LIF(name="sn_b")(nn.Dense(6, name="conv")(a))
    shortcut = nn.Dense(6, name="shortcut")(a)              # reads sn_a, not the latest neuron
    merged = layers.LIF(name="sn_c")(nn.Dense(6, name="merge")(b) + shortcut)
    pooled = jnp.max(merged.reshape(T, B, 3, 2), axis=-1)   # spikes, but not sn_c's own
    return layers.time_mean(nn.Dense(3, name="head")(merged.reshape(T * B, 6))
                            .reshape(T, B, 3) + nn.Dense(3, name="pooled")(pooled))


def test_each_layer_names_the_neuron_whose_spikes_it_reads():
  x = jnp.asarray([[2.0, -1.0, 0.5, 3.0]] * B)
  model = Residual()
  variables = model.init(jax.random.key(0), x)
  calls = {c.name: c for c in energy.record_layers(model, variables, x, T=T)}
  assert calls["stem"].source is None and not calls["stem"].spiking
  assert (calls["conv"].source, calls["shortcut"].source) == ("sn_a", "sn_a")
  assert calls["merge"].source == "sn_b"
  assert calls["head"].source == "sn_c"           # reshaped to [T*B, ...]: still sn_c's spikes
  assert calls["pooled"].spiking and calls["pooled"].source is None
  assert energy.input_label(calls["shortcut"]) == "sn_a spikes"
  assert energy.input_label(calls["pooled"]) == "spikes"
  assert energy.input_label(calls["stem"]) == "analog"
  assert energy.neuron_feeds(list(calls.values())) == {
      "sn_a": ["conv", "shortcut"], "sn_b": ["merge"], "sn_c": ["head"]}


def test_at_rates_charges_layers_at_their_source_neurons_rates():
  model, variables, x = _two_layer([[1, 1, 0, 0], [0, 0, 0, 0]])
  calls = energy.record_layers(model, variables, x, T=T)
  assert calls[1].source == "LIF_0"
  first, second = energy.at_rates(calls, {"LIF_0": 0.25, "other": 0.9})
  assert first == calls[0] and second.input_rate == 0.25
  assert energy.layer_energy(second).acs == 12 * 0.25 * T
