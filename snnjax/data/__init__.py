"""Data input: sources (local IDX, tfds, synthetic, events), augmentation, grain pipeline.

    config = snnjax.data.default_config()          # the config.data block, keys documented
    train = snnjax.data.create_dataset(config, "train", batch_size=128, seed=0,
                                       shard_index=jax.process_index(),
                                       shard_count=jax.process_count())
    batch = next(train)    # {"image": f32 [B, H, W, C] or [B, T, H, W, 2], "label": i32 [B],
                           #  "mask": bool [B]}
    state = train.get_state(); train.set_state(state)   # checkpointable position
"""

from snnjax.data import augment, events, idx, sources
from snnjax.data.config import default_config, validate_config
from snnjax.data.events import EventFolderSource, integrate_events
from snnjax.data.idx import load_fashion_mnist, read_idx
from snnjax.data.pipeline import (DataPipeline, build_pipeline, create_dataset, create_source,
                                  make_transform, open_dataset)
from snnjax.data.sources import SourceInfo, SyntheticSource

__all__ = [
    "augment", "events", "idx", "sources", "default_config", "validate_config",
    "EventFolderSource", "integrate_events", "load_fashion_mnist", "read_idx", "DataPipeline",
    "build_pipeline", "create_dataset", "create_source", "make_transform", "open_dataset",
    "SourceInfo", "SyntheticSource",
]
