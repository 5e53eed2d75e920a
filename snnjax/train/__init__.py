"""Training system: state, optimiser, sharded steps, checkpoints, metrics, loop."""
