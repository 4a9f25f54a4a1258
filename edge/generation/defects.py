"""What each defect type looks like: one small function per type.

Every function gets the crop around the mask as float32 [h, w, C] in [0, 1]
and returns the edited crop (same shape). Appearance is *texture-aware*: the
amplitude follows the local texture level and brightness of the surface, and
except for holes (where material is gone) the surface texture is kept under
the defect, so an edit reads as "something happened to this surface" rather
than a pasted sticker. Each type also changes the whole mask a little
(discoloration, haze, a shallow dip) so the mask is really where the defect is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Context:
    """Shared geometry and surface statistics of one mask crop."""

    image: np.ndarray  # float32 [h, w, C] in [0, 1]
    mask: np.ndarray  # bool [h, w]
    rng: np.random.Generator
    intensity: float
    color: bool
    depth: np.ndarray  # float32 [h, w], 0 at the mask edge .. 1 at its deepest point
    along: np.ndarray  # coordinate along the mask's main axis (px)
    across: np.ndarray  # coordinate across it (px)
    across_range: tuple[float, float]
    along_range: tuple[float, float]
    size: float  # rough defect size in px (mask thickness)
    texture: np.ndarray  # float32 [h, w] high-pass luminance
    level: float  # local texture level (std of the high-pass) over the mask
    brightness: float  # mean luminance over the mask
    center: tuple[float, float]  # (x, y) centroid of the mask in crop pixels
    axis: tuple[float, float]  # unit vector of the mask's main axis (x, y)

    @property
    def amplitude(self) -> float:
        """Defect contrast that stays visible on busy texture and never saturates flat parts."""
        return float(np.clip(0.22 + 1.5 * self.level, 0.22, 0.45) * self.intensity)

    @property
    def sign(self) -> float:
        """Dark marks on bright surfaces, bright marks on dark ones."""
        return -1.0 if self.brightness > 0.35 else 1.0


def build_context(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, intensity: float) -> Context:
    """Measure the mask's geometry (main axis, depth) and the surface under it."""
    lum = image.mean(axis=2)
    base = cv2.GaussianBlur(lum, (0, 0), 2.0)
    texture = lum - base
    inside = mask
    level = float(texture[inside].std()) if inside.sum() > 1 else 0.0
    brightness = float(lum[inside].mean())
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    depth = (dist / max(float(dist.max()), 1e-6)).astype(np.float32)
    ys, xs = np.nonzero(mask)
    cy, cx = float(ys.mean()), float(xs.mean())
    if len(xs) > 2:
        cov = np.cov(np.stack([xs - cx, ys - cy]))
        evals, evecs = np.linalg.eigh(cov)
        u = evecs[:, int(np.argmax(evals))]
    else:
        u = np.array([1.0, 0.0])
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float32)
    along = (xx - cx) * u[0] + (yy - cy) * u[1]
    across = -(xx - cx) * u[1] + (yy - cy) * u[0]
    return Context(
        image=image,
        mask=mask,
        rng=rng,
        intensity=intensity,
        color=image.shape[2] == 3,
        depth=depth,
        along=along,
        across=across,
        across_range=(float(across[mask].min()), float(across[mask].max())),
        along_range=(float(along[mask].min()), float(along[mask].max())),
        size=max(2.0 * float(dist.max()), 1.0),
        texture=texture,
        level=level,
        brightness=brightness,
        center=(cx, cy),
        axis=(float(u[0]), float(u[1])),
    )


def _lum(delta: np.ndarray) -> np.ndarray:
    return delta[..., None]


def _shade(height: np.ndarray) -> np.ndarray:
    """Lambert-like shading of a height field lit from the top-left, in -1..1."""
    gy, gx = np.gradient(height)
    s = -(gx + gy) / np.sqrt(2.0)
    peak = float(np.abs(s).max())
    return (s / peak).astype(np.float32) if peak > 0 else s.astype(np.float32)


def dent(ctx: Context) -> np.ndarray:
    """A shallow depression: shaded walls (light from the top-left) and a slightly darker floor."""
    h = cv2.GaussianBlur(ctx.depth, (0, 0), max(1.0, ctx.size * 0.15))
    h = h * h * (3 - 2 * h)
    shade = _shade(-h)
    a = ctx.amplitude
    delta = a * 0.9 * shade - 0.15 * a * h - 0.06 * ctx.intensity
    return ctx.image + _lum(delta)


def scratch(ctx: Context) -> np.ndarray:
    """Fine parallel grooves along the mask's main axis, with a brushed sheen over the mask."""
    lo, hi = ctx.across_range
    width = max(0.6, 0.12 * (hi - lo))
    k = int(ctx.rng.integers(1, 4))
    offsets = ctx.rng.uniform(lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo), k) if hi > lo else np.zeros(k)
    groove = np.zeros_like(ctx.depth)
    for off in offsets:
        groove += np.exp(-(((ctx.across - off) / width) ** 2))
    groove = np.clip(groove, 0, 1)
    # brushed sheen: noise that varies only across the scratch direction
    bins = np.arange(int(np.floor(lo)) - 2, int(np.ceil(hi)) + 3, dtype=np.float32)
    sheen = np.interp(ctx.across, bins, ctx.rng.uniform(-1, 1, len(bins))).astype(np.float32)
    a = ctx.amplitude
    delta = ctx.sign * (1.1 * a * groove + 0.08 * ctx.intensity + 0.06 * a * sheen)
    return ctx.image + _lum(delta)


def crack(ctx: Context) -> np.ndarray:
    """A jagged dark fracture line (with a branch) running along the mask, with stress discoloration."""
    a0, a1 = ctx.along_range
    lo, hi = ctx.across_range
    steps = max(4, int((a1 - a0) / 2))
    t = np.linspace(a0, a1, steps)
    walk = np.cumsum(ctx.rng.normal(0, max(0.4, 0.08 * (hi - lo) + 0.3), steps))
    walk = np.clip(walk - walk.mean() + 0.5 * (lo + hi), lo, hi)
    canvas = np.zeros(ctx.depth.shape, np.float32)
    cx, cy = ctx.center
    u = np.array(ctx.axis, np.float64)
    pts = np.stack([cx + t * u[0] - walk * u[1], cy + t * u[1] + walk * u[0]], 1)
    poly = np.round(pts * 16).astype(np.int32)
    thick = 1 if ctx.size < 6 else 2
    cv2.polylines(canvas, [poly], False, 1.0, thick, cv2.LINE_AA, shift=4)
    b = int(ctx.rng.integers(steps // 4, max(steps // 4 + 1, 3 * steps // 4)))
    blen = max(2, steps // 3)
    ang = ctx.rng.choice([-1.0, 1.0]) * ctx.rng.uniform(0.4, 0.9)
    bdir = np.array([u[0] * np.cos(ang) - u[1] * np.sin(ang), u[0] * np.sin(ang) + u[1] * np.cos(ang)])
    bpts = pts[b] + np.outer(np.arange(blen) * 2.0, bdir) + ctx.rng.normal(0, 0.5, (blen, 2))
    cv2.polylines(canvas, [np.round(bpts * 16).astype(np.int32)], False, 0.7, 1, cv2.LINE_AA, shift=4)
    canvas *= cv2.GaussianBlur(ctx.mask.astype(np.float32), (0, 0), 0.7) > 0.2
    a = ctx.amplitude
    delta = -(0.55 + a) * canvas - 0.07 * ctx.intensity - 0.05 * a * ctx.depth
    out = ctx.image + _lum(delta)
    if ctx.color:
        out[..., 0] -= 0.03 * ctx.intensity * ctx.mask  # slight warm (rust) cast in BGR
    return out


def _blob_noise(ctx: Context, sigma: float) -> np.ndarray:
    n = ctx.rng.standard_normal(ctx.depth.shape).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma)
    n -= n.min()
    return n / max(float(n.max()), 1e-6)


def stain(ctx: Context) -> np.ndarray:
    """A tinted, irregular deposit (oil, water mark): multiplicative, so the texture shows through."""
    f = 0.55 + 0.45 * _blob_noise(ctx, max(1.5, ctx.size / 4))
    f *= ctx.intensity
    rim = np.clip(1.0 - ctx.depth * 4, 0, 1) * 0.25  # drying ring at the edge
    f = np.clip(f + rim, 0, 1)[..., None]
    if ctx.color:
        tint = np.array(ctx.rng.choice([[0.18, 0.35, 0.5], [0.2, 0.45, 0.55], [0.35, 0.3, 0.25]]), np.float32)
    else:
        tint = np.array([0.25], np.float32)
    tint = tint * max(ctx.brightness, 0.2)
    return ctx.image * (1.0 - 0.5 * f) + tint * 0.5 * f


def contamination(ctx: Context) -> np.ndarray:
    """Particles and a fibre on the surface, over a faint haze."""
    out = ctx.image + _lum(np.full(ctx.depth.shape, ctx.sign * 0.07 * ctx.intensity, np.float32))
    cover = np.zeros(ctx.depth.shape, np.float32)
    ys, xs = np.nonzero(ctx.mask)
    n = int(np.clip(len(xs) / 30, 3, 40))
    idx = ctx.rng.integers(0, len(xs), n)
    rmax = max(1.0, ctx.size * 0.15)
    for x, y in zip(xs[idx], ys[idx]):
        axes = (int(max(1, ctx.rng.uniform(0.5, 1) * rmax)), int(max(1, ctx.rng.uniform(0.3, 1) * rmax)))
        cv2.ellipse(cover, (int(x), int(y)), axes, float(ctx.rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    i0, i1 = ctx.rng.integers(0, len(xs), 2)
    mid = np.array([(xs[i0] + xs[i1]) / 2, (ys[i0] + ys[i1]) / 2]) + ctx.rng.normal(0, 2, 2)
    curve = np.array([[xs[i0], ys[i0]], mid, [xs[i1], ys[i1]]], np.float64)
    cv2.polylines(cover, [np.round(curve * 16).astype(np.int32)], False, 0.8, 1, cv2.LINE_AA, shift=4)
    cover = np.clip(cover, 0, 1) * ctx.mask
    dark = 0.08 if ctx.brightness > 0.35 else 0.85
    if ctx.color:
        particle = np.array([dark, dark * 0.9 + 0.02, dark * 0.8 + 0.05], np.float32)
    else:
        particle = np.array([dark], np.float32)
    p = cover[..., None] * min(1.0, ctx.intensity)
    return out * (1 - p) + particle * p


def hole(ctx: Context) -> np.ndarray:
    """Missing material: a dark cavity whose far wall catches the light; surface texture is gone."""
    h = cv2.GaussianBlur(ctx.depth, (0, 0), max(0.8, ctx.size * 0.08))
    wall = np.clip(_shade(h), 0, 1) * (1 - h)
    floor = 0.05 + 0.18 * wall + 0.15 * ctx.texture + 0.06 * _blob_noise(ctx, max(1.0, ctx.size / 6))  # debris
    floor = floor * max(0.5, ctx.brightness)
    cavity = np.repeat(floor[..., None], ctx.image.shape[2], axis=2)
    k = min(1.0, 0.85 * ctx.intensity + 0.15)
    return ctx.image * (1 - k) + cavity * k


DEFECT_LAYERS: dict[str, Callable[[Context], np.ndarray]] = {
    "scratch": scratch,
    "crack": crack,
    "dent": dent,
    "stain": stain,
    "contamination": contamination,
    "hole": hole,
}
