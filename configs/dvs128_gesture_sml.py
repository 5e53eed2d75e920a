"""DVS128 Gesture (11 classes), spiking ResNet-18, T=16 frames at 64x64, Surrogate Module
Learning.

Neither the SML paper nor the SGS paper reports DVS128 Gesture, so only the method is
theirs: the recipe snnjax.train.recipes.sml_dvs (the SML paper's CIFAR10-DVS setting as
its released code trains it: ResNet-18 with the 2-channel conv3x3 stem, heads after
blocks 3 and 6 with k=256, lambda=1/3, alpha=1, T_dis=3, AdamW lr 0.01 with weight decay
0.02 on every parameter, cosine per epoch, random roll of +-5 pixels, no normalisation).
snnjax's choices for this dataset: T=16 frames split by event count, the 128x128 sensor
sum-pooled to 64x64, no left-right flip (it would swap the left-hand and right-hand
gesture classes), batch 32, 200 epochs.

The data: packed event splits with the dataset's own train/test split (the
trials_to_train.txt / trials_to_test.txt lists), which one command writes from the
original files (DvsGesture/: user*_*.aedat, *_labels.csv, trials_to_*.txt):
    python -m snnjax.data.prepare dvs128_gesture --raw DvsGesture/ \
        --out ~/data/dvs128_gesture_events
    python train.py --config configs/dvs128_gesture_sml.py --workdir W
(--config.data.folder=OUT for another place; the folder holds the packed train/ and
test/ splits of snnjax.data.events, 11 classes).
"""

from snnjax.train import recipes

FOLDER = "~/data/dvs128_gesture_events"


def get_config():
  c = recipes.sml_dvs(T=16)
  c.data.name = "dvs128_gesture"
  c.data.folder = FOLDER  # the event source expands ~
  c.data.num_classes = 11
  c.data.image_size = 64
  c.data.events.update(dict(num_frames=16, split_by="number", sensor_size=(128, 128)))
  c.data.augment.flip = False
  c.batch_size = 32
  c.num_epochs = 200.0
  return c
