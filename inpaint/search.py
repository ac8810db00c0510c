"""Semantic inpainting by latent search (Yeh et al., CVPR 2017): the algorithm on arrays.

For images y with masks M (1 = known), find z in [-1, 1]^d minimising, per image,
    L(z) = || W * (G(z) - y) ||_1  +  lam * L_p(z)
where W is the mask, or Yeh et al.'s weighting of known pixels by how many unknown pixels surround
them (masks.context_weights), and L_p is the discriminator's verdict on G(z): the paper's
log(1 - D(G(z))) or the non-saturating -log D(G(z)). Then G(z) fills the hole, optionally
Poisson-blended into the known pixels.

`complete()` searches for a batch of images; `LatentSearch` is its compiled step, reusable across
batches. Only z changes: the networks run in inference mode, in the precision the options ask
for. The file layer over this is inpaint.complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from inpaint import masks as masklib
from inpaint.blend import poisson_blend
from inpaint.config import DEFAULT_LR, OPTIMIZERS, PERCEPTUAL, SearchOptions
from inpaint.errors import Diverged
from inpaint.images import to_float, to_uint8
from inpaint.models import cast_networks, precision_policy
from inpaint.ops import translate

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "PERCEPTUAL", "CompletionResult", "LatentSearch",
           "SearchOptions", "blend", "complete", "initial_z", "paste"]


@dataclass
class CompletionResult:
    """Arrays for B images of size S. Losses are per image, recorded before every update and once
    after the last: shape (iters + 1, B)."""

    z: np.ndarray  # (B, z_dim) float32 in [-1, 1], the winning restart
    generated: np.ndarray  # (B, S, S, 3) float32 in [-1, 1], G(z)
    completed: np.ndarray  # (B, S, S, 3) uint8: known pixels of the input, the hole from G(z)
    blended: np.ndarray | None  # (B, S, S, 3) uint8, Poisson-blended; None if not asked
    losses: dict[str, np.ndarray] = field(default_factory=dict)  # total/contextual/perceptual
    shifts: np.ndarray | None = None  # (B, 2) (dy, dx) pixels of G(z), with optimize_shift


def paste(images: np.ndarray, generated: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Known pixels of `images` (uint8, copied bit-exactly), the rest from `generated` ([-1, 1]).
    images: (B, S, S, 3) uint8; generated: (B, S, S, 3); masks: (B, S, S). -> uint8."""
    return np.where(masks[..., None] > 0.5, images, to_uint8(generated))


def blend(images: np.ndarray, generated: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Poisson-blend G(z) into each hole: (B, S, S, 3) uint8 with known pixels unchanged."""
    out = np.empty_like(images)
    for i in range(len(images)):
        gen255 = (np.asarray(generated[i], np.float64) + 1.0) * 127.5
        solved = poisson_blend(images[i].astype(np.float64), gen255, masks[i])
        filled = np.clip(np.round(solved), 0, 255).astype(np.uint8)
        out[i] = np.where(masks[i][..., None] > 0.5, images[i], filled)
    return out


class LatentSearch:
    """The graph-compiled search step for one pair of networks; reusable across batches.

    Each step evaluates the loss at the current z, updates z and clips it to [-1, 1]. With
    `optimize_shift`, G(z) is translated by a per-image sub-pixel shift (ops.translate, bilinear)
    before the loss, and the shift is searched too, with Adam, within +-max_shift pixels."""

    def __init__(self, generator, discriminator, opts: SearchOptions, lowres: bool = False):
        self.opts = opts.validate()
        # the options' precision decides what the networks compute in (a no-op when they
        # already do, e.g. LoadedModel.networks(precision))
        self.generator, self.discriminator = cast_networks(
            generator, discriminator, precision_policy(self.opts.precision))
        self.lowres = lowres
        self.z_dim = int(generator.input_shape[-1])
        self.step = tf.function(self._step_fn)
        self._loss = tf.function(self._losses)

    def _losses(self, z, shift, target, weights):
        """-> G(z) (translated by shift), total, contextual, perceptual; each loss (N,)."""
        g = self.generator(z, training=False)
        if self.opts.optimize_shift:
            g = translate(g, shift, "bilinear")
        logits = tf.cast(self.discriminator(g, training=False), tf.float32)[:, 0]
        if self.lowres:
            k = masklib.LOWRES_BLOCK
            pool = lambda x: tf.nn.avg_pool2d(x, k, k, "VALID")  # noqa: E731
            contextual = tf.reduce_sum(tf.abs(pool(g) - pool(target)), axis=[1, 2, 3])
        else:
            contextual = tf.reduce_sum(tf.abs(weights[..., None] * (g - target)), axis=[1, 2, 3])
        if self.opts.perceptual == "paper":
            perceptual = -tf.nn.softplus(logits)  # log(1 - sigmoid(l))
        else:
            perceptual = tf.nn.softplus(-logits)  # -log sigmoid(l)
        total = contextual + self.opts.lam * perceptual
        return g, total, contextual, perceptual

    def _adam(self, x, grad, m, v, t, lr):
        b1, b2 = self.opts.momentum, self.opts.beta2
        m = b1 * m + (1.0 - b1) * grad
        v = b2 * v + (1.0 - b2) * tf.square(grad)
        x = x - lr * (m / (1.0 - b1 ** t)) / (tf.sqrt(v / (1.0 - b2 ** t)) + 1e-8)
        return x, m, v

    def _step_fn(self, state, target, weights):
        """One update (compiled as `step`): state (initial_state's dict), target (N, S, S, 3)
        float32, weights (N, S, S) -> (new state, G(z), total, contextual, perceptual) of the
        state before the update."""
        o = self.opts
        z, shift = state["z"], state["shift"]
        with tf.GradientTape() as tape:
            tape.watch([z, shift])
            g, total, contextual, perceptual = self._losses(z, shift, target, weights)
            objective = tf.reduce_sum(total)  # images are independent: per-image gradients
        gz, gs = tape.gradient(objective, [z, shift])
        t = state["t"] + 1.0
        lr = o.learning_rate
        new = dict(state, t=t)
        if o.optimizer == "momentum":
            # Nesterov momentum in the reference's form: v' = mu v - lr g; z += -mu v + (1+mu) v'
            v = o.momentum * state["v"] - lr * gz
            new["z"] = z - o.momentum * state["v"] + (1.0 + o.momentum) * v
            new["v"] = v
        else:
            new["z"], new["v"], new["s"] = self._adam(z, gz, state["v"], state["s"], t, lr)
        new["z"] = tf.clip_by_value(new["z"], -1.0, 1.0)
        if o.optimize_shift:
            shift, new["shift_m"], new["shift_v"] = self._adam(
                shift, gs, state["shift_m"], state["shift_v"], t, o.shift_lr)
            new["shift"] = tf.clip_by_value(shift, -o.max_shift, o.max_shift)
        return new, g, total, contextual, perceptual

    def initial_state(self, z0: np.ndarray) -> dict:
        z = tf.constant(z0, tf.float32)
        zeros2 = tf.zeros((len(z0), 2))
        return {"z": z, "v": tf.zeros_like(z), "s": tf.zeros_like(z), "t": tf.constant(0.0),
                "shift": zeros2, "shift_m": zeros2, "shift_v": zeros2}

    def run(self, target: np.ndarray, weights: np.ndarray, z0: np.ndarray,
            callback: Callable[[int, np.ndarray, dict], None] | None = None):
        """Search from z0: (N, z_dim). target: (N, S, S, 3) float32 in [-1, 1]; weights:
        (N, S, S). Calls callback(iteration, G(z) (N, S, S, 3), losses) before each update and
        after the last. Returns (z, G(z), losses dict of (iters + 1, N), shifts (N, 2))."""
        state = self.initial_state(z0)
        target = tf.constant(target, tf.float32)
        weights = tf.constant(weights, tf.float32)
        history = {"total": [], "contextual": [], "perceptual": []}

        def record(i, g, total, contextual, perceptual):
            losses = {"total": total.numpy(), "contextual": contextual.numpy(),
                      "perceptual": perceptual.numpy()}
            bad = ~np.isfinite(losses["total"])
            if bad.any():
                raise Diverged(f"the latent search diverged at iteration {i}: the loss of "
                               f"{int(bad.sum())} of {bad.size} searches is NaN or infinite "
                               f"(try a lower --lr than {self.opts.learning_rate:g}); nothing "
                               "of this batch was saved")
            for k, val in losses.items():
                history[k].append(val)
            if callback is not None:
                callback(i, g, losses)

        for i in range(self.opts.iters):
            state, g, total, contextual, perceptual = self.step(state, target, weights)
            record(i, g, total, contextual, perceptual)
        g, total, contextual, perceptual = self._loss(state["z"], state["shift"], target, weights)
        record(self.opts.iters, g, total, contextual, perceptual)
        return (state["z"].numpy(), g.numpy(), {k: np.stack(v) for k, v in history.items()},
                state["shift"].numpy())


def initial_z(n_images: int, restarts: int, z_dim: int, seeds: Sequence | None = None,
              seed: int = 0) -> np.ndarray:
    """Starting points: (n_images * restarts, z_dim) uniform in [-1, 1], image-major. With
    `seeds` (one per image) each image's starts depend only on its own seed."""
    if seeds is None:
        seeds = [[seed, i] for i in range(n_images)]
    return np.concatenate([np.random.default_rng(s).uniform(-1.0, 1.0, (restarts, z_dim))
                           for s in seeds]).astype(np.float32)


def complete(generator, discriminator, images: np.ndarray, masks: np.ndarray, *,
             options: SearchOptions | None = None, lowres: bool = False, blend_result: bool = True,
             seeds: Sequence | None = None,
             callback: Callable[[int, np.ndarray, np.ndarray, dict], None] | None = None,
             search: LatentSearch | None = None) -> CompletionResult:
    """Complete B images.

    images: (B, S, S, 3) uint8; masks: (B, S, S) with 1 = known. With `lowres`, the search matches
    8x8 block means of the images instead of pixels (and nothing is pasted). `seeds`: one per image
    for its starting z (default: derived from options.seed and the position). `callback(iteration,
    generated (B, S, S, 3) float32, completions (B, S, S, 3) uint8, losses {name: (B,)})` sees the
    current best restart of each image.
    Returns a CompletionResult; `losses` are those of the winning restart of each image."""
    opts = (options or SearchOptions()).validate()
    images = np.asarray(images)
    masks = np.asarray(masks, np.float32)
    b, k = len(images), opts.restarts
    search = search or LatentSearch(generator, discriminator, opts, lowres=lowres)
    z_dim = search.z_dim
    if opts.context_weighting == "yeh":
        weights = masklib.context_weights(masks)
    else:
        weights = masks.copy()
    target = np.repeat(to_float(images), k, axis=0)
    weights_k = np.repeat(weights, k, axis=0)
    z0 = initial_z(b, k, z_dim, seeds, opts.seed)

    def best_of(total):  # (B*K,) -> index into B*K of each image's best restart
        return np.arange(b) * k + total.reshape(b, k).argmin(axis=1)

    paste_masks = np.zeros_like(masks) if lowres else masks

    def on_step(i, g, losses):
        idx = best_of(losses["total"])
        gen = g.numpy()[idx]
        callback(i, gen, paste(images, gen, paste_masks),
                 {name: val[idx] for name, val in losses.items()})

    z, g, history, shifts = search.run(target, weights_k, z0, on_step if callback else None)
    idx = best_of(history["total"][-1])
    losses = {name: val[:, idx] for name, val in history.items()}
    generated = g[idx]
    completed = paste(images, generated, paste_masks)
    blended = blend(images, generated, masks) if blend_result and not lowres else None
    return CompletionResult(z[idx], generated, completed, blended, losses, shifts[idx])
