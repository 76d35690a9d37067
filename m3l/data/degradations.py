"""Degradations: callables ``(clean, rng) -> (degraded, side)``.

``clean`` is a ``(C, H, W)`` float tensor in [0, 1]; ``rng`` a ``numpy.random.RandomState`` so that
evaluation reproduces the published protocol (``np.random.seed(0)`` before each image). ``side`` is a
dict of tensors describing the degradation; the restoration module passes each entry to nets whose
``forward`` takes an argument of that name:

- ``sigma``: the noise level on the [0, 1] scale (``sigma / 255``), a scalar per image (FFDNet, DRUNet);
- ``quality``: the JPEG quality factor on the [0, 1] scale (``quality / 100``) (FBCNN);
- ``kernel``: the ``(k, k)`` blur kernel (non-blind deblurring).

Each degradation has a ``name`` (``sigma25``, ``jpeg10``, ``gblur2``, ``motion19``, ``jpeg10+sigma5``)
used in result tables. Their configs are the ``degradation`` group (``configs/degradation/``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Scale of each side-information entry: the config value (sigma 0-255, quality 1-100) over this.
SIDE_SCALE = {"sigma": 255.0, "quality": 100.0}


def _is_range(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _check_range(name: str, value) -> None:
    if _is_range(value) and len(value) != 2:
        raise ValueError(f"{name} must be a number or [low, high], got {value!r}")


def _fmt(value) -> str:
    return f"{value[0]:g}-{value[1]:g}" if _is_range(value) else f"{value:g}"


def side_from_config(values: Mapping | None) -> dict[str, torch.Tensor]:
    """Side information given by hand (``data.correct_side``: ``{sigma: 25}``, ``{quality: 10}``), in the
    units the degradation configs use, as the tensors the degradations produce (``sigma / 255``, ...)."""
    return {k: torch.tensor(float(v) / SIDE_SCALE.get(k, 1.0), dtype=torch.float32)
            for k, v in (values or {}).items() if v is not None}


def draws_levels(degradation) -> bool:
    """Whether ``degradation`` draws its level per image from a range (blind noise ``sigma: [0, 55]``, JPEG
    ``quality: [10, 95]``, a blur ``sigma`` range, one of several): a training distribution, not a test level."""
    if isinstance(degradation, (Compose, OneOf)):
        return isinstance(degradation, OneOf) or any(draws_levels(step) for step in degradation.steps)
    return bool(getattr(degradation, "blind", False)) or _is_range(getattr(degradation, "sigma", None))


def require_test_levels(degradation, test_degradations, key: str = "data.test_degradations") -> list:
    """The degradations to test with: ``test_degradations``, else the training ``degradation`` when it has fixed
    levels; a training degradation that draws its level per image stops with one line (a table of random levels
    is not a published protocol)."""
    if test_degradations:
        return list(test_degradations)
    if draws_levels(degradation):
        from m3l.errors import M3LError

        raise M3LError(f"{key} is null and the training degradation {degradation.name} draws its level per "
                       f"image: test at fixed levels, e.g. degradation@data.degradation=sigma25 or "
                       f"{key}=[{{_target_:m3l.data.degradations.GaussianNoise,sigma:25}}]")
    return [degradation]


class GaussianNoise:
    """Additive white Gaussian noise, ``sigma`` on the 0-255 scale: fixed, or ``[low, high]`` drawn per image.

    Float noise, no clipping of the noisy image (the DnCNN / FFDNet / DRUNet test protocol). Noise is
    drawn in ``(H, W, C)`` order, as the reference numpy scripts do, so gray and color test images get
    exactly the published noise.
    """

    def __init__(self, sigma: float | Sequence[float] = 25.0):
        _check_range("sigma", sigma)
        self.sigma = sigma
        self.blind = _is_range(sigma)

    @property
    def name(self) -> str:
        return f"sigma{_fmt(self.sigma)}"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        sigma = float(rng.uniform(*self.sigma)) if self.blind else float(self.sigma)
        c, h, w = clean.shape
        noise = rng.normal(0.0, sigma / 255.0, (h, w, c)).astype(np.float32).transpose(2, 0, 1)
        noisy = clean + torch.from_numpy(np.ascontiguousarray(noise))
        return noisy, {"sigma": torch.tensor(sigma / 255.0, dtype=torch.float32)}

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma!r})"


class JPEG:
    """JPEG compression through Pillow at ``quality`` (1-100): fixed, or ``[low, high]`` drawn per image.

    Gray images (1 channel) are encoded as gray JPEG, RGB ones as color JPEG (Pillow's default 4:2:0
    chroma subsampling). Pillow's encoder reproduces the published "JPEG input" PSNR of LIVE1 and
    Classic5. The image is rounded to 8 bits first. Side information: ``quality`` (``quality / 100``).
    """

    def __init__(self, quality: int | Sequence[int] = 10):
        _check_range("quality", quality)
        self.quality = quality
        self.blind = _is_range(quality)

    @property
    def name(self) -> str:
        return f"jpeg{_fmt(self.quality)}"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        quality = int(rng.randint(self.quality[0], self.quality[1] + 1)) if self.blind else int(self.quality)
        pixels = clean.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        image = Image.fromarray(pixels[..., 0] if clean.shape[0] == 1 else pixels)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        decoded = decoded[..., None] if decoded.ndim == 2 else decoded
        degraded = torch.from_numpy(decoded.transpose(2, 0, 1).astype(np.float32) / 255.0)
        return degraded, {"quality": torch.tensor(quality / 100.0, dtype=torch.float32)}

    def __repr__(self) -> str:
        return f"JPEG(quality={self.quality!r})"


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, angle: float = 0.0) -> np.ndarray:
    """A ``size x size`` Gaussian kernel (sum 1), anisotropic when ``sigma_y`` differs, rotated by ``angle`` (rad)."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    r = (size - 1) / 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(size: int, rng: np.random.RandomState, steps: int = 64, inertia: float = 0.7) -> np.ndarray:
    """A random camera-shake kernel: a random walk with momentum, scaled to fit ``size``, splatted bilinearly."""
    velocity = rng.normal(size=2)
    velocity /= np.linalg.norm(velocity) + 1e-12
    points = [np.zeros(2)]
    for _ in range(steps - 1):
        turn = rng.normal(size=2)
        velocity = inertia * velocity + (1 - inertia) * turn / (np.linalg.norm(turn) + 1e-12)
        velocity /= np.linalg.norm(velocity) + 1e-12
        points.append(points[-1] + velocity)
    points = np.array(points)
    points -= (points.max(0) + points.min(0)) / 2  # centred
    extent = np.abs(points).max()
    points *= ((size - 1) / 2 - 1) / max(extent, 1e-12)
    points += (size - 1) / 2
    kernel = np.zeros((size, size), np.float64)
    for y, x in points[:, ::-1]:
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        dy, dx = y - y0, x - x0
        for yy, xx, wgt in ((y0, x0, (1 - dy) * (1 - dx)), (y0 + 1, x0, dy * (1 - dx)),
                            (y0, x0 + 1, (1 - dy) * dx), (y0 + 1, x0 + 1, dy * dx)):
            if 0 <= yy < size and 0 <= xx < size:
                kernel[yy, xx] += wgt
    return (kernel / kernel.sum()).astype(np.float32)


def convolve(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``(C, H, W)`` image convolved with a 2-D kernel, each channel alike, edges replicated (same size)."""
    k = torch.from_numpy(np.ascontiguousarray(kernel[::-1, ::-1])).to(image.dtype)  # convolution, not correlation
    pad = kernel.shape[0] // 2
    padded = F.pad(image[:, None], (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(padded, k[None, None])[:, 0]


class GaussianBlur:
    """Gaussian blur, ``sigma`` in pixels, fixed or ``[low, high]`` per image; ``anisotropic``: the two
    axes' sigmas drawn independently in that range and the kernel rotated by a random angle.
    Side information: ``kernel``."""

    def __init__(self, sigma: float | Sequence[float] = 1.6, size: int = 25, anisotropic: bool = False):
        _check_range("sigma", sigma)
        if size % 2 == 0:
            raise ValueError(f"blur kernel size must be odd, got {size}")
        if anisotropic and not _is_range(sigma):
            raise ValueError("anisotropic Gaussian blur needs sigma: [low, high]")
        self.sigma, self.size, self.anisotropic = sigma, size, anisotropic

    @property
    def name(self) -> str:
        return f"{'aniso' if self.anisotropic else ''}gblur{_fmt(self.sigma)}"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        if self.anisotropic:
            sx, sy = rng.uniform(*self.sigma, size=2)
            kernel = gaussian_kernel(self.size, sx, sy, rng.uniform(0, math.pi))
        else:
            sigma = rng.uniform(*self.sigma) if _is_range(self.sigma) else self.sigma
            kernel = gaussian_kernel(self.size, sigma)
        return convolve(clean, kernel), {"kernel": torch.from_numpy(kernel)}

    def __repr__(self) -> str:
        return f"GaussianBlur(sigma={self.sigma!r}, size={self.size}, anisotropic={self.anisotropic})"


class MotionBlur:
    """Random camera-shake blur: a new random trajectory kernel of ``size x size`` per image.
    Side information: ``kernel``."""

    def __init__(self, size: int = 19):
        if size % 2 == 0 or size < 3:
            raise ValueError(f"motion kernel size must be odd and at least 3, got {size}")
        self.size = size

    @property
    def name(self) -> str:
        return f"motion{self.size}"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        kernel = motion_kernel(self.size, rng)
        return convolve(clean, kernel), {"kernel": torch.from_numpy(kernel)}

    def __repr__(self) -> str:
        return f"MotionBlur(size={self.size})"


class Compose:
    """Degradations applied in order with the same generator (e.g. blur then noise); sides are merged."""

    def __init__(self, steps: Sequence):
        if not steps:
            raise ValueError("Compose needs at least one degradation in steps")
        self.steps = list(steps)

    @property
    def name(self) -> str:
        return "+".join(step.name for step in self.steps)

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        image, side = clean, {}
        for step in self.steps:
            image, more = step(image, rng)
            side.update(more)
        return image, side

    def __repr__(self) -> str:
        return f"Compose({self.steps!r})"


class Clean:
    """No degradation (the input is the target): for checks and for paired data that is degraded already."""

    name = "clean"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        return clean.clone(), {}

    def __repr__(self) -> str:
        return "Clean()"


class OneOf:
    """Per image, one of ``steps`` drawn uniformly (e.g. noise or JPEG, DnCNN-3). The side information is
    dropped, since the steps give different entries: for blind models."""

    def __init__(self, steps: Sequence):
        if not steps:
            raise ValueError("OneOf needs at least one degradation in steps")
        self.steps = list(steps)

    @property
    def name(self) -> str:
        return "oneof(" + ",".join(step.name for step in self.steps) + ")"

    def __call__(self, clean: torch.Tensor, rng: np.random.RandomState):
        step = self.steps[int(rng.randint(len(self.steps)))]
        return step(clean, rng)[0], {}

    def __repr__(self) -> str:
        return f"OneOf({self.steps!r})"
