"""The input contract of a compiled model: what its input must look like, carried in the
bundle's public spec so that a client can check and prepare its inputs before sending them.

    shape        the per-example shape the plan was compiled for, e.g. (1, 28, 28)
    dtype        the dtype the model was traced with (inputs are real numbers; they are
                 encoded to fixed point, so any real dtype is accepted)
    mean, std    per-channel normalization of pixel intensities in [0, 1]: the model takes
                 (pixel - mean) / std. None: the bundle cannot interpret images
    classes      class names, one per output (None: outputs are reported by index)
    range        (min, max) of the calibration inputs. Calibration sized the comparison gates
                 and the ring for activations like the ones these inputs produce, with a 64x
                 margin; far beyond them a gate's sign test wraps and the output is garbage.
                 Inputs are held to `limits()`: magnitudes up to HEADROOM (8x) the largest
                 calibrated one, which leaves another 8x for activations larger than the
                 calibration data's. Beyond it they are refused, or clipped with a warning
                 (out_of_range="clip"). None: no calibration, the full ring is used.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Local imports: torch and matplotlib are imported where used: the client side (`pi infer`) checks inputs
# without torch.

OUT_OF_RANGE = ("clip", "refuse")
HEADROOM = 8.0      # of the 64x (2^6) activation margin pi.compile leaves above calibration
IMAGE_SUFFIXES = (".png",)


class InputError(ValueError):
    """An input does not fit the model's contract; the message names the mismatch and the fix."""


class InputRangeWarning(UserWarning):
    """An input was outside the calibrated range and was clipped to it."""


@dataclass(frozen=True)
class InputContract:
    shape: tuple[int, ...]
    dtype: str = "float32"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise InputError("normalization needs both mean and std")
        if self.mean is not None:
            channels = self.shape[0] if len(self.shape) == 3 else 1
            for name, v in (("mean", self.mean), ("std", self.std)):
                if len(v) not in (1, channels):
                    raise InputError(f"normalization {name} has {len(v)} values; the model's input has "
                                     f"{channels} channel(s): give 1 or {channels}")
            if min(self.std) <= 0:
                raise InputError(f"normalization std must be positive, got {list(self.std)}")

    # -- (de)serialization: plain data inside plan.meta["input"] --------------------------
    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> InputContract:
        def tup(v, kind=float):
            return None if v is None else tuple(kind(x) for x in v)
        return cls(tuple(int(s) for s in d["shape"]), str(d.get("dtype", "float32")), tup(d.get("mean")),
                   tup(d.get("std")), tup(d.get("classes"), str), tup(d.get("range")))

    @classmethod
    def of_plan(cls, plan) -> InputContract:
        """The contract a plan carries (plans compiled before contracts existed: the shape only)."""
        d = plan.meta.get("input")
        return cls.from_dict(d) if d else cls(tuple(plan.input_shape))

    def limits(self) -> tuple[float, float] | None:
        """The input values run() accepts: ±HEADROOM x the largest calibrated magnitude."""
        if self.range is None:
            return None
        m = HEADROOM * max(abs(self.range[0]), abs(self.range[1]))
        return -m, m

    def class_name(self, label: int) -> str:
        if self.classes and 0 <= label < len(self.classes):
            return self.classes[label]
        return f"class {label}"

    # -- checking ----------------------------------------------------------------------------
    def check(self, x, out_of_range: str = "refuse") -> np.ndarray:
        """x (one example or a batch) as a float64 batch (B, *shape); refuses a wrong shape or
        dtype, and values beyond limits() (or clips them, with an InputRangeWarning)."""
        if out_of_range not in OUT_OF_RANGE:
            raise InputError(f"out_of_range must be one of {', '.join(OUT_OF_RANGE)}, got {out_of_range!r}")
        if hasattr(x, "detach"):          # a torch tensor, without importing torch here
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise InputError(f"input has dtype {x.dtype}; the model takes real numbers ({self.dtype})")
        if x.shape == self.shape:
            x = x[None]
        if x.ndim != len(self.shape) + 1 or x.shape[1:] != self.shape or x.shape[0] < 1:
            raise InputError(f"input has shape {tuple(x.shape)}; the model takes {self.shape} "
                             f"or a batch (B, {', '.join(map(str, self.shape))})")
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise InputError("input contains NaN or infinite values")
        if self.range is not None:
            lo, hi = self.limits()
            below, above = int((x < lo).sum()), int((x > hi).sum())
            if below or above:
                what = (f"{below + above} of {x.size} input values lie outside [{lo:.4g}, {hi:.4g}], "
                        f"{HEADROOM:g}x the calibrated range [{self.range[0]:.4g}, {self.range[1]:.4g}] "
                        f"(largest magnitude {float(np.abs(x).max()):.4g})")
                if out_of_range == "refuse":
                    raise InputError(f"{what}; the secure gates were sized for the calibrated range. Normalize "
                                     "the input as the model expects, recompile with calibration data that covers "
                                     "it, or clip it (out_of_range='clip', `pi infer --out-of-range clip`)")
                warnings.warn(f"{what}; clipped to it (the output is the model's on the clipped input)",
                              InputRangeWarning, stacklevel=3)
                x = np.clip(x, lo, hi)
        return x

    # -- images ---------------------------------------------------------------------------------
    def from_image(self, path: str | Path, resize: bool = False) -> np.ndarray:
        """A PNG file as one normalized example: grayscale or RGB as the model takes it, the
        model's size (or refused, unless resize=True), then (pixel - mean) / std."""
        path = Path(path)
        if self.mean is None:
            raise InputError(f"{path}: this bundle carries no normalization, so an image cannot be interpreted; "
                             "pass a .npy array of normalized inputs, or compile with --normalize MEAN,STD "
                             "(pi compile) / normalization=(mean, std) (pi.compile)")
        if len(self.shape) != 3:
            raise InputError(f"{path}: the model takes inputs of shape {self.shape}, not images (C, H, W)")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{path}: images must be PNG files")
        import matplotlib.image as mpimg
        try:
            img = np.asarray(mpimg.imread(path), dtype=np.float64)   # PNG: floats in [0, 1]
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{path}: not a readable PNG image ({exc})") from None
        if img.ndim == 3 and img.shape[2] in (2, 4):       # drop the alpha channel
            img = img[..., :-1]
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        c, h, w = self.shape
        if img.ndim == 2:
            img = np.repeat(img[None], c, 0)               # grayscale → the model's channels
        elif img.ndim == 3 and img.shape[2] == 3:
            img = img.transpose(2, 0, 1)
            if c == 1:                                     # ITU-R 601 luma, as PIL's convert("L")
                img = np.tensordot(np.array([0.299, 0.587, 0.114]), img, axes=1)[None]
            elif c != 3:
                raise InputError(f"{path}: an RGB image cannot feed a model with {c} input channels")
        else:
            raise InputError(f"{path}: cannot interpret an image array of shape {img.shape}")
        if img.shape[1:] != (h, w):
            if not resize:
                raise InputError(f"{path}: the image is {img.shape[2]}x{img.shape[1]} pixels; the model takes "
                                 f"{w}x{h}. Resize it, or pass --resize (pi infer) to scale it (aspect ratio not kept)")
            img = _resize(img, h, w)
        mean = np.asarray(self.mean).reshape(-1, 1, 1)
        std = np.asarray(self.std).reshape(-1, 1, 1)
        return ((img - mean) / std)[None]


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area-averaged (antialiased) bilinear resize of a (C, H, W) image."""
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(img))[None]
    return F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0].numpy()


def input_file(path: str | Path) -> Path:
    """path as an input file, or an InputError that says what it is instead."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"input {p} is a directory; give the .npy or PNG files in it (e.g. {p}/*.png)")
    if not p.is_file():
        raise InputError(f"input {p} does not exist")
    return p


def load_input(path: str | Path, contract: InputContract, resize: bool = False,
               out_of_range: str = "refuse") -> np.ndarray:
    """A .npy array (already normalized) or a PNG image as a checked batch the model takes;
    errors and warnings name the file."""
    p = input_file(path)
    if p.suffix.lower() == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:     # EOFError: an empty or truncated file
            raise InputError(f"{p}: not a readable .npy array ({exc})") from None
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        x = contract.from_image(p, resize=resize)
    else:
        raise InputError(f"{p}: inputs must be .npy arrays (normalized) or PNG images")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputRangeWarning)
            x = contract.check(x, out_of_range)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    for w in caught:
        warnings.warn(f"{p}: {w.message}", w.category, stacklevel=2)
    return x
