"""Per-example image transforms in NumPy, with explicit random generators.

Images are channels-last ``[..., H, W, C]``: a single image [H, W, C] or a stack
of event frames [T, H, W, 2]; spatial transforms act on the axes -3 (H) and -2
(W) and apply the same geometry to every leading slice. Pixel values are uint8
0..255 unless stated; :func:`normalize` turns them into float32. Every random
transform takes a ``np.random.Generator`` (grain hands one per example, seeded
from the pipeline seed and the example's position), so a pipeline is
reproducible.

Train recipes built from these (see :mod:`snnjax.data.pipeline`):

    CIFAR / Fashion-MNIST:  pad_and_random_crop -> random_flip -> [random_roll] ->
                            [autoaugment_cifar10 | randaugment] -> normalize -> [cutout]
    Event frames:           [resize] -> pad_and_random_crop -> random_flip -> [random_roll]
                            -> [cutout]  (CIFAR10-DVS as the SML code: resize 48, flip, roll 5)
    ImageNet:               random_resized_crop -> random_flip -> normalize
    ImageNet eval:          resize_and_center_crop -> normalize
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------
# Geometry and normalisation.


def pad_and_random_crop(image: np.ndarray, rng: np.random.Generator, padding: int) -> np.ndarray:
  """Zero-pads H and W by ``padding`` pixels on each side, then crops H x W back.

  The crop's top-left corner is uniform in {0, ..., 2 * padding}^2, so the image
  shifts by up to ``padding`` pixels in each direction with zeros filling in.
  Shape and dtype are kept.
  """
  if padding <= 0:
    return image
  h, w = image.shape[-3:-1]
  pad = [(0, 0)] * (image.ndim - 3) + [(padding, padding), (padding, padding), (0, 0)]
  padded = np.pad(image, pad)
  top, left = rng.integers(0, 2 * padding + 1, size=2)
  return padded[..., top:top + h, left:left + w, :]


def random_flip(image: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
  """Mirrors the W axis (left-right) with probability ``p``."""
  if rng.random() < p:
    return np.ascontiguousarray(image[..., ::-1, :])
  return image


def random_roll(image: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
  """Circular shift of H and W by (dy, dx), each uniform in {-shift, ..., shift}.

  Pixels pushed out of one side come back on the other (``np.roll`` /
  ``torch.roll``), the same shift for every leading slice (all T frames).
  The CIFAR10-DVS augmentation of the Surrogate Module Learning code uses
  shift 5 after a random flip. Shape and dtype are kept.
  """
  if shift <= 0:
    return image
  dy, dx = rng.integers(-shift, shift + 1, size=2)
  return np.roll(image, (int(dy), int(dx)), axis=(-3, -2))


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """Per-channel standardisation: float32 (image / 255 - mean[c]) / std[c].

  ``mean`` and ``std`` are on the 0..1 scale, one value per channel (or one
  value for all channels).
  """
  mean = np.asarray(mean, np.float32)
  inv_std = 1 / np.asarray(std, np.float32)
  return (image.astype(np.float32) * np.float32(1 / 255) - mean) * inv_std


def cutout(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
  """Cutout (DeVries & Taylor 2017): zeroes one ``size`` x ``size`` square.

  The square's centre is uniform over all H x W pixels and the square is clipped
  at the border, so less than size^2 pixels may be zeroed. Apply it after
  :func:`normalize`, where 0 is the channel mean. Returns a copy.
  """
  if size <= 0:
    return image
  h, w = image.shape[-3:-1]
  cy, cx = rng.integers(0, h), rng.integers(0, w)
  y0, y1 = max(cy - size // 2, 0), min(cy - size // 2 + size, h)
  x0, x1 = max(cx - size // 2, 0), min(cx - size // 2 + size, w)
  out = image.copy()
  out[..., y0:y1, x0:x1, :] = 0
  return out


def _resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Source indices and weights [out_size, K] of an antialiased linear (triangle) resampling.

  Output pixel o has its centre at source coordinate c_o = (o + 0.5) * in/out - 0.5;
  source pixel i gets weight max(0, 1 - |i - c_o| / k) with k = max(in/out, 1) (the
  kernel widens when shrinking, which averages instead of aliasing). Only the
  K = ceil(2 k) + 1 pixels around c_o can be non-zero; weights of pixels outside
  the image are dropped and each row is renormalised to sum to 1.
  """
  scale = in_size / out_size
  k = max(scale, 1.0)
  centres = (np.arange(out_size) + 0.5) * scale - 0.5
  index = np.floor(centres - k).astype(np.int64)[:, None] + 1 + np.arange(int(np.ceil(2 * k)) + 1)
  weights = np.maximum(0.0, 1 - np.abs(index - centres[:, None]) / k)
  weights *= (index >= 0) & (index < in_size)
  weights /= weights.sum(1, keepdims=True)
  return np.clip(index, 0, in_size - 1), weights.astype(np.float32)


def _resample(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
  """Resamples float32 ``x`` along ``axis`` (negative) with :func:`_resize_taps`."""
  index, weights = _resize_taps(x.shape[axis], out_size)
  trailing = (1,) * (-axis - 1)
  return sum(np.take(x, index[:, k], axis=axis) * weights[:, k].reshape(-1, *trailing)
             for k in range(index.shape[1]))


def _pillow_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  return np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR)).reshape(*size, channels)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Antialiased bilinear resize of [..., H, W, C] to [..., h, w, C].

  Separable: rows, then columns, each resampled as in :func:`_resize_taps`. uint8
  input is rounded and clipped back to uint8; other dtypes come back as float32.
  A single uint8 image [H, W, 1 or 3] goes through Pillow's BILINEAR resize, the
  same filter in fixed point (within 1 of the float result; 5x faster at 224).
  """
  h, w = image.shape[-3:-1]
  if (h, w) == tuple(size):
    return image
  if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] in (1, 3):
    return _pillow_resize(image, tuple(int(v) for v in size))
  out = _resample(_resample(image.astype(np.float32), -3, size[0]), -2, size[1])
  if image.dtype == np.uint8:
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
  return out


def _crop_and_resize(image, top, left, height, width, size):
  return resize(image[..., top:top + height, left:left + width, :], (size, size))


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
  """Inception-style crop (Szegedy et al. 2015), resized to [size, size].

  Up to 10 tries draw an area fraction a ~ U(scale) and an aspect ratio r with
  log r ~ U(log ratio); the crop is w = round(sqrt(a H W r)), h = round(sqrt(a H W / r))
  at a uniform position if it fits. If no try fits: the largest central crop
  whose aspect ratio is clamped to ``ratio``.
  """
  h, w = image.shape[-3:-1]
  area = h * w
  log_ratio = np.log(ratio)
  for _ in range(10):
    target = area * rng.uniform(*scale)
    r = math.exp(rng.uniform(*log_ratio))
    cw, ch = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return _crop_and_resize(image, top, left, ch, cw, size)
  in_ratio = w / h
  if in_ratio < ratio[0]:
    cw, ch = w, int(round(w / ratio[0]))
  elif in_ratio > ratio[1]:
    ch, cw = h, int(round(h * ratio[1]))
  else:
    cw, ch = w, h
  return _crop_and_resize(image, (h - ch) // 2, (w - cw) // 2, ch, cw, size)


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Central [..., size[0], size[1], C] window (top-left offset rounded down)."""
  h, w = image.shape[-3:-1]
  top, left = (h - size[0]) // 2, (w - size[1]) // 2
  return image[..., top:top + size[0], left:left + size[1], :]


def resize_and_center_crop(image: np.ndarray, size: int,
                           crop_fraction: float = 0.875) -> np.ndarray:
  """Eval transform: shorter side -> round(size / crop_fraction), then central size x size.

  With size 224 and the usual crop_fraction 0.875 the shorter side becomes 256.
  """
  h, w = image.shape[-3:-1]
  short = int(round(size / crop_fraction))
  if h <= w:
    new = (short, max(size, int(round(w * short / h))))
  else:
    new = (max(size, int(round(h * short / w))), short)
  return center_crop(resize(image, new), (size, size))


# ---------------------------------------------------------------------------
# Photometric and affine operations of AutoAugment / RandAugment, on uint8
# [H, W, C] with C = 1 or 3, following PIL's ImageOps / ImageEnhance semantics.

_FILL = 128  # grey fill for pixels an affine op moves in from outside


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
  """clip(degenerate + factor * (image - degenerate)) as uint8 (PIL's ImageEnhance)."""
  out = degenerate.astype(np.float32) + factor * (image.astype(np.float32) - degenerate)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey(image: np.ndarray) -> np.ndarray:
  """ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B as [H, W, 1] float32 (C = 1: itself)."""
  if image.shape[-1] == 1:
    return image.astype(np.float32)
  return image.astype(np.float32) @ np.array([[0.299], [0.587], [0.114]], np.float32)


def identity(image, level):
  del level
  return image


def auto_contrast(image, level):
  """Per channel, linearly stretches [min, max] to [0, 255] (constant channels kept)."""
  del level
  lo = image.min(axis=(0, 1), keepdims=True).astype(np.float32)
  hi = image.max(axis=(0, 1), keepdims=True).astype(np.float32)
  scale = np.where(hi > lo, 255 / np.maximum(hi - lo, 1), 1)
  offset = np.where(hi > lo, lo, 0)
  return np.clip(np.rint((image - offset) * scale), 0, 255).astype(np.uint8)


def equalize(image, level):
  """Per channel histogram equalisation with PIL's lookup table.

  With histogram h and the last non-zero bin's count h_last, step = (sum h - h_last) // 255;
  lut[i] = (step // 2 + sum_{j<i} h[j]) // step (identity when step is 0).
  """
  del level
  out = np.empty_like(image)
  for c in range(image.shape[-1]):
    channel = image[..., c]
    hist = np.bincount(channel.ravel(), minlength=256)
    step = (hist.sum() - hist[np.flatnonzero(hist)[-1]]) // 255
    if step == 0:
      out[..., c] = channel
      continue
    lut = (step // 2 + np.concatenate([[0], np.cumsum(hist)[:-1]])) // step
    out[..., c] = np.clip(lut, 0, 255).astype(np.uint8)[channel]
  return out


def invert(image, level):
  del level
  return 255 - image


def posterize(image, level):
  """Keeps the top bits = 8 - round(4 level) bits of every pixel (8 .. 4 bits)."""
  bits = 8 - int(round(4 * level))
  return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


def solarize(image, level):
  """Inverts pixels >= threshold = 256 (1 - level)."""
  threshold = 256 * (1 - level)
  return np.where(image >= threshold, 255 - image, image).astype(np.uint8)


def _factor(level, rng):
  """Enhancement factor 1 +- 0.9 level, sign random: in [0.1, 1.9]."""
  return 1 + 0.9 * level * (1 if rng.random() < 0.5 else -1)


def color(image, level, rng):
  """Saturation: blend with the grey image by factor 1 +- 0.9 level."""
  return _blend(np.broadcast_to(_grey(image), image.shape), image, _factor(level, rng))


def contrast(image, level, rng):
  """Blend with the mean grey level by factor 1 +- 0.9 level."""
  mean = np.floor(_grey(image).mean() + 0.5)
  return _blend(np.full(image.shape, mean, np.float32), image, _factor(level, rng))


def brightness(image, level, rng):
  """Blend with black: image * (1 +- 0.9 level)."""
  return _blend(np.zeros(image.shape, np.float32), image, _factor(level, rng))


def sharpness(image, level, rng):
  """Blend with PIL's SMOOTH-filtered image ([[1,1,1],[1,5,1],[1,1,1]] / 13, border kept)."""
  x = image.astype(np.float32)
  smooth = x.copy()
  acc = sum(x[1 + dy:x.shape[0] - 1 + dy, 1 + dx:x.shape[1] - 1 + dx]
            for dy in (-1, 0, 1) for dx in (-1, 0, 1)) + 4 * x[1:-1, 1:-1]
  smooth[1:-1, 1:-1] = np.rint(acc / 13)
  return _blend(smooth, image, _factor(level, rng))


def _affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """Nearest-neighbour warp: output pixel (x, y) reads source matrix @ (x, y, 1).

  Coordinates are pixel centres relative to the image centre; sources outside
  the image read the grey fill 128.
  """
  h, w = image.shape[:2]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  cx, cy = (w - 1) / 2, (h - 1) / 2
  sx = matrix[0, 0] * (xs - cx) + matrix[0, 1] * (ys - cy) + matrix[0, 2] + cx
  sy = matrix[1, 0] * (xs - cx) + matrix[1, 1] * (ys - cy) + matrix[1, 2] + cy
  sx, sy = np.rint(sx).astype(np.int64), np.rint(sy).astype(np.int64)
  inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
  out = image[np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)]
  out[~inside] = _FILL
  return out


def _sign(rng):
  return 1 if rng.random() < 0.5 else -1


def rotate(image, level, rng):
  """Rotation by +-30 level degrees about the centre."""
  theta = math.radians(30 * level * _sign(rng))
  c, s = math.cos(theta), math.sin(theta)
  return _affine(image, np.array([[c, -s, 0], [s, c, 0]], np.float32))


def shear_x(image, level, rng):
  """Horizontal shear: source x = x + s y, s = +-0.3 level."""
  return _affine(image, np.array([[1, 0.3 * level * _sign(rng), 0], [0, 1, 0]], np.float32))


def shear_y(image, level, rng):
  """Vertical shear: source y = y + s x, s = +-0.3 level."""
  return _affine(image, np.array([[1, 0, 0], [0.3 * level * _sign(rng), 1, 0]], np.float32))


def translate_x(image, level, rng):
  """Horizontal shift by +-0.45 level of the width (150/331 of it at level 1)."""
  dx = 0.45 * level * image.shape[1] * _sign(rng)
  return _affine(image, np.array([[1, 0, dx], [0, 1, 0]], np.float32))


def translate_y(image, level, rng):
  """Vertical shift by +-0.45 level of the height."""
  dy = 0.45 * level * image.shape[0] * _sign(rng)
  return _affine(image, np.array([[1, 0, 0], [0, 1, dy]], np.float32))


#: Operations by name; each maps (uint8 [H, W, C], level in [0, 1], rng) -> uint8 [H, W, C].
OPS = {
    "identity": identity, "auto_contrast": auto_contrast, "equalize": equalize,
    "invert": invert, "posterize": posterize, "solarize": solarize, "color": color,
    "contrast": contrast, "brightness": brightness, "sharpness": sharpness,
    "rotate": rotate, "shear_x": shear_x, "shear_y": shear_y,
    "translate_x": translate_x, "translate_y": translate_y,
}
_DETERMINISTIC = {"identity", "auto_contrast", "equalize", "invert", "posterize", "solarize"}


def apply_op(name: str, image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
  """Applies ``OPS[name]`` at ``level`` in [0, 1] (signed ops draw their sign from ``rng``)."""
  if name in _DETERMINISTIC:
    return OPS[name](image, level)
  return OPS[name](image, level, rng)


#: AutoAugment's CIFAR-10 policy (Cubuk et al. 2019, appendix table): 25 sub-policies of
#: two (op, probability, magnitude 0..9) steps.
CIFAR10_POLICY = (
    (("invert", 0.1, 7), ("contrast", 0.2, 6)),
    (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
    (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
    (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
    (("auto_contrast", 0.5, 8), ("equalize", 0.9, 2)),
    (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
    (("color", 0.4, 3), ("brightness", 0.6, 7)),
    (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
    (("equalize", 0.6, 5), ("equalize", 0.5, 1)),
    (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
    (("color", 0.7, 7), ("translate_x", 0.5, 8)),
    (("equalize", 0.3, 7), ("auto_contrast", 0.4, 8)),
    (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
    (("brightness", 0.9, 6), ("color", 0.2, 8)),
    (("solarize", 0.5, 2), ("invert", 0.0, 3)),
    (("equalize", 0.2, 0), ("auto_contrast", 0.6, 0)),
    (("equalize", 0.2, 8), ("equalize", 0.6, 4)),
    (("color", 0.9, 9), ("equalize", 0.6, 6)),
    (("auto_contrast", 0.8, 4), ("solarize", 0.2, 8)),
    (("brightness", 0.1, 3), ("color", 0.7, 0)),
    (("solarize", 0.4, 5), ("auto_contrast", 0.9, 3)),
    (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
    (("auto_contrast", 0.9, 2), ("solarize", 0.8, 3)),
    (("equalize", 0.8, 8), ("invert", 0.1, 3)),
    (("translate_y", 0.7, 9), ("auto_contrast", 0.9, 1)),
)


def autoaugment_cifar10(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """AutoAugment, CIFAR-10 policy: one uniformly drawn sub-policy of :data:`CIFAR10_POLICY`.

  Each of its two steps runs with its probability at level = magnitude / 9.
  uint8 [H, W, C] -> uint8 [H, W, C].
  """
  for name, prob, magnitude in CIFAR10_POLICY[rng.integers(len(CIFAR10_POLICY))]:
    if rng.random() < prob:
      image = apply_op(name, image, magnitude / 9, rng)
  return image


#: RandAugment's operation list (Cubuk et al. 2020), all from :data:`OPS`.
RANDAUGMENT_OPS = ("identity", "auto_contrast", "equalize", "rotate", "solarize", "color",
                   "posterize", "contrast", "brightness", "sharpness", "shear_x", "shear_y",
                   "translate_x", "translate_y")


def randaugment(image: np.ndarray, rng: np.random.Generator, num_ops: int = 2,
                magnitude: float = 9.0) -> np.ndarray:
  """RandAugment: ``num_ops`` ops drawn uniformly (with replacement), each at level magnitude / 10.

  ``magnitude`` is on the paper's 0..10 scale. uint8 [H, W, C] -> uint8 [H, W, C].
  """
  level = min(max(magnitude / 10, 0.0), 1.0)
  for i in rng.integers(len(RANDAUGMENT_OPS), size=num_ops):
    image = apply_op(RANDAUGMENT_OPS[i], image, level, rng)
  return image
