"""Semantic inpainting by latent search (Yeh et al., CVPR 2017): the algorithm on arrays.

For images y with masks M (1 = known), find z in [-1, 1]^d minimising, per image,
    L(z) = || W * (G(z) - y) ||_1  +  lam * L_p(z)
where W is the mask, or Yeh et al.'s weighting of known pixels by how many unknown pixels surround
them (masks.context_weights), and L_p is the discriminator's verdict on G(z): the paper's
log(1 - D(G(z))) or the non-saturating -log D(G(z)). Then G(z) fills the hole, optionally
Poisson-blended into the known pixels.

One door: `Completer(model_or_networks, options)` decides everything once (validates the options,
whether the search starts from the encoder, the iterations that will run, the networks in the
options' precision, the kind of search) and is then called per batch; `complete()` is the same
for one batch. The parts behind the door (LatentSearch, MultiCodeSearch, GeneratorFinetune) take
the finished options and the networks as they are. Only z changes: the networks run in inference
mode. The file layer over this is inpaint.batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from inpaint import masks as masklib
from inpaint.blend import poisson_blend
from inpaint.config import SearchOptions
from inpaint.errors import Diverged, UsageError
from inpaint.images import to_float, to_uint8
from inpaint.models import LoadedModel, cast_networks, load_model, precision_policy, propose
from inpaint.ops import translate

__all__ = ["CompletionResult", "Completer", "GeneratorFinetune", "LatentSearch",
           "MultiCodeSearch", "blend", "complete", "finished", "initial_z", "paste",
           "search_losses", "split_generator", "use_encoder"]


@dataclass
class CompletionResult:
    """Arrays for B images of size S. Losses are per image, recorded before every update and once
    after the last: shape (iters + 1, B)."""

    z: np.ndarray  # (B, z_dim) float32 in [-1, 1], the winning restart (multi-code: its packed
    #                codes and weights, see MultiCodeSearch)
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


def search_losses(generator, discriminator, opts: SearchOptions, z, shift, target, weights,
                  lowres: bool = False):
    """The search's objective: -> G(z) (translated by `shift` with opts.optimize_shift), total,
    contextual, perceptual, each loss (N,). z (N, d); shift (N, 2); target (N, S, S, 3) float32 in
    [-1, 1]; weights (N, S, S), the per-pixel weights of the contextual L1."""
    g = generator(z, training=False)
    if opts.optimize_shift:
        g = translate(g, shift, "bilinear")
    logits = tf.cast(discriminator(g, training=False), tf.float32)[:, 0]
    if lowres:
        k = masklib.LOWRES_BLOCK
        pool = lambda x: tf.nn.avg_pool2d(x, k, k, "VALID")  # noqa: E731
        contextual = tf.reduce_sum(tf.abs(pool(g) - pool(target)), axis=[1, 2, 3])
    else:
        contextual = tf.reduce_sum(tf.abs(weights[..., None] * (g - target)), axis=[1, 2, 3])
    if opts.perceptual == "paper":
        perceptual = -tf.nn.softplus(logits)  # log(1 - sigmoid(l))
    else:
        perceptual = tf.nn.softplus(-logits)  # -log sigmoid(l)
    return g, contextual + opts.lam * perceptual, contextual, perceptual


def adam_update(x, grad, m, v, t, lr, b1, b2):
    """One Adam step (Kingma & Ba 2015) with bias correction: -> new x, m, v. t counts from 1."""
    m = b1 * m + (1.0 - b1) * grad
    v = b2 * v + (1.0 - b2) * tf.square(grad)
    x = x - lr * (m / (1.0 - b1 ** t)) / (tf.sqrt(v / (1.0 - b2 ** t)) + 1e-8)
    return x, m, v


def finished(opts: SearchOptions) -> SearchOptions:
    """`opts` if they are finished options, as Completer hands them down (validated, `iters`
    decided); ValueError otherwise: the parts behind the door decide nothing themselves."""
    if opts.iters is None:
        raise ValueError("the search takes finished options (iters decided): build it with "
                         "search.Completer")
    return opts


class LatentSearch:
    """The graph-compiled search step for one pair of networks; reusable across batches.

    Each step evaluates the loss at the current z, updates z and clips it to [-1, 1]. With
    `optimize_shift`, G(z) is translated by a per-image sub-pixel shift (ops.translate, bilinear)
    before the loss, and the shift is searched too, with Adam, within +-max_shift pixels.
    `opts`: finished options (see `finished`); the networks compute as they are (Completer casts
    them to the options' precision)."""

    def __init__(self, generator, discriminator, opts: SearchOptions, lowres: bool = False):
        self.opts = finished(opts)
        self.generator, self.discriminator = generator, discriminator
        self.lowres = lowres
        self.z_dim = int(generator.input_shape[-1])
        self.step = tf.function(self._step_fn)
        self._loss = tf.function(self._losses)

    def _losses(self, z, shift, target, weights):
        """-> G(z) (translated by shift), total, contextual, perceptual; each loss (N,)."""
        return search_losses(self.generator, self.discriminator, self.opts, z, shift, target,
                             weights, self.lowres)

    def _adam(self, x, grad, m, v, t, lr):
        return adam_update(x, grad, m, v, t, lr, self.opts.momentum, self.opts.beta2)

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
        """Search from z0: (N, z_dim) for the options' `iters` updates. target: (N, S, S, 3)
        float32 in [-1, 1]; weights: (N, S, S). Calls callback(iteration, G(z) (N, S, S, 3),
        losses) before each update and after the last. Returns (z, G(z), losses dict of
        (iters + 1, N), shifts (N, 2))."""
        iters = self.opts.iters
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

        for i in range(iters):
            state, g, total, contextual, perceptual = self.step(state, target, weights)
            record(i, g, total, contextual, perceptual)
        g, total, contextual, perceptual = self._loss(state["z"], state["shift"], target, weights)
        record(iters, g, total, contextual, perceptual)
        return (state["z"].numpy(), g.numpy(), {k: np.stack(v) for k, v in history.items()},
                state["shift"].numpy())


def split_generator(generator, stage: int):
    """The generator as head and tail around the ReLU after its `stage`-th upsampling (0: the
    4x4 base): head: z -> features (B, h, w, C); tail: features -> images. UsageError when the
    generator has no such stage (the last stage's output is the image)."""
    import keras

    names = [layer.name for layer in generator.layers]
    cut = f"g_relu{stage}"
    if cut not in names:
        stages = sorted(int(n[6:]) for n in names if n.startswith("g_relu"))
        raise UsageError(f"code stage must be one of {stages} for this generator, got {stage}")
    head = keras.Model(generator.input, generator.get_layer(cut).output)
    x = inp = keras.Input(head.output.shape[1:])
    for layer in generator.layers[names.index(cut) + 1:]:
        x = layer(x)
    return head, keras.Model(inp, x)


class MultiCodeSearch(LatentSearch):
    """The multi-code GAN prior (Gu et al., CVPR 2020) on our generator: each search has
    `opts.codes` codes z_n and per-channel weights a_n; the image is
    tail(sum_n a_n * head(z_n)), the generator split after stage `opts.code_stage`. One search's
    parameters are packed in one row of `z`: the codes (codes * z_dim) then the weights
    (codes * C), all clipped to [-1, 1]; `pack` builds that row."""

    def __init__(self, generator, discriminator, opts: SearchOptions, lowres: bool = False):
        super().__init__(generator, discriminator, opts, lowres)
        self.head, self.tail = split_generator(self.generator, opts.code_stage)
        self.codes, self.code_dim = opts.codes, self.z_dim
        self.channels = int(self.head.output.shape[-1])
        self.z_dim = self.codes * (self.code_dim + self.channels)

    def pack(self, codes: np.ndarray) -> np.ndarray:
        """codes (N, codes, z_dim) -> rows (N, self.z_dim), each code weighted 1 / codes."""
        n = len(codes)
        weights = np.full((n, self.codes * self.channels), 1.0 / self.codes, np.float32)
        return np.concatenate([codes.reshape(n, -1), weights], axis=1).astype(np.float32)

    def compose(self, params, training=False):
        """Rows (N, self.z_dim) -> images (N, S, S, C)."""
        n, k, d = tf.shape(params)[0], self.codes, self.code_dim
        feats = self.head(tf.reshape(params[:, :k * d], (-1, d)), training=training)
        shape = tf.shape(feats)
        feats = tf.reshape(feats, tf.concat([[n, k], shape[1:]], 0))
        weights = tf.cast(tf.reshape(params[:, k * d:], (n, k, 1, 1, self.channels)),
                          feats.dtype)
        return self.tail(tf.reduce_sum(feats * weights, axis=1), training=training)

    def _losses(self, z, shift, target, weights):
        return search_losses(self.compose, self.discriminator, self.opts, z, shift, target,
                             weights, self.lowres)


class GeneratorFinetune:
    """After the z search, per image: a few Adam steps on the generator's weights minimising the
    same objective plus `finetune_hold` times the squared distance of the weights to the trained
    ones, so the known pixels fit closer while the generator stays a face model (the idea of
    deep generative prior, Pan et al. 2020, and pivotal tuning, Roich et al. 2022; our variant:
    z held at the search's result, every weight tuned, batch norm in inference mode).

    Each image starts again from the trained weights, so its result never depends on the other
    images of its batch. The caller's networks are not changed (the tuned one is a copy).
    `opts`: finished options (see `finished`)."""

    def __init__(self, generator, discriminator, opts: SearchOptions, lowres: bool = False):
        import keras

        self.opts, self.lowres, self.discriminator = finished(opts), lowres, discriminator
        self.generator = keras.models.clone_model(generator)
        self.generator.set_weights(generator.get_weights())
        self.variables = self.generator.trainable_variables
        self.trained = [tf.constant(v) for v in self.variables]
        self._m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self._v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.step = tf.function(self._step_fn)
        self._loss = tf.function(self._losses)

    def _losses(self, z, shift, target, weights):
        return search_losses(self.generator, self.discriminator, self.opts, z, shift, target,
                             weights, self.lowres)

    def _step_fn(self, z, shift, target, weights, t):
        o = self.opts
        with tf.GradientTape() as tape:
            g, total, contextual, perceptual = self._losses(z, shift, target, weights)
            hold = tf.add_n([tf.reduce_sum(tf.square(v - w)) for v, w in
                             zip(self.variables, self.trained)])
            objective = tf.reduce_sum(total) + o.finetune_hold * hold
        grads = tape.gradient(objective, self.variables)
        for var, grad, m, v in zip(self.variables, grads, self._m, self._v):
            new, m_new, v_new = adam_update(var, grad, m, v, t, o.finetune_lr, 0.9, 0.999)
            var.assign(new)
            m.assign(m_new)
            v.assign(v_new)
        return g, total, contextual, perceptual

    def run(self, z: np.ndarray, shift: np.ndarray, target: np.ndarray, weights: np.ndarray):
        """One image: z (1, d), shift (1, 2), target (1, S, S, 3), weights (1, S, S) -> (G'(z)
        (1, S, S, 3), losses {name: (steps + 1, 1)} recorded before each step and after the
        last). Diverged when a loss is not finite."""
        for var, w, m, v in zip(self.variables, self.trained, self._m, self._v):
            var.assign(w)
            m.assign(tf.zeros_like(m))
            v.assign(tf.zeros_like(v))
        args = [tf.constant(a, tf.float32) for a in (z, shift, target, weights)]
        history = {"total": [], "contextual": [], "perceptual": []}
        for i in range(self.opts.finetune_steps + 1):
            if i < self.opts.finetune_steps:
                g, *losses = self.step(*args, tf.constant(i + 1.0))
            else:
                g, *losses = self._loss(*args)
            for name, val in zip(history, losses):
                history[name].append(val.numpy())
            if not np.isfinite(history["total"][-1]).all():
                raise Diverged(f"fine-tuning the generator diverged at step {i} (try a lower "
                               f"finetune lr than {self.opts.finetune_lr:g}); nothing of this "
                               "batch was saved")
        return g.numpy(), {k: np.stack(v) for k, v in history.items()}


def initial_z(n_images: int, restarts: int, z_dim: int, seeds: Sequence | None = None,
              seed: int = 0) -> np.ndarray:
    """Starting points: (n_images * restarts, z_dim) uniform in [-1, 1], image-major. With
    `seeds` (one per image) each image's starts depend only on its own seed."""
    if seeds is None:
        seeds = [[seed, i] for i in range(n_images)]
    return np.concatenate([np.random.default_rng(s).uniform(-1.0, 1.0, (restarts, z_dim))
                           for s in seeds]).astype(np.float32)


class Completer:
    """The one door into the search: set up once for a model, options and mask kind, then called
    per batch. It decides everything once and hands it down finished: the options validated,
    whether the search starts from the encoder (`from_encoder`), the iterations that will run
    (`options.iters`), the networks in the options' precision, one compiled search of the kind
    options.search asks for (LatentSearch or MultiCodeSearch) and, for "finetune", one
    GeneratorFinetune.

    `model`: a models.LoadedModel (its encoder, if any, proposes z), or the networks as a tuple
    (generator, discriminator) or (generator, discriminator, encoder). `lowres`: the masks are
    lowres (8x8 block means are matched, nothing is pasted). `scattered`: the masks' missing
    pixels are spread over the face (masks.MaskSpec.scattered), which sets the default
    iterations from the encoder (config.DEFAULT_ITERS). UsageError for options that cannot be
    honoured (an encoder start without an encoder, ...)."""

    def __init__(self, model, options: SearchOptions | None = None, lowres: bool = False,
                 scattered: bool = False):
        options = SearchOptions.of(options).validate()
        if isinstance(model, (str, os.PathLike)):  # a model directory, as load_model takes it
            model = load_model(model)
        generator, discriminator, self.encoder = _networks_of(model)
        self.lowres = lowres
        self.from_encoder = use_encoder(options, self.encoder, lowres)
        # `options.iters` is what will run
        self.options = options.resolved(self.from_encoder, scattered)
        if isinstance(model, LoadedModel):  # cast once per model and precision
            self.generator, self.discriminator = model.networks(self.options.precision)
        else:
            self.generator, self.discriminator = cast_networks(
                generator, discriminator, precision_policy(self.options.precision))
        self.image_size = int(self.generator.output_shape[1])
        kind = MultiCodeSearch if self.options.search == "multi-code" else LatentSearch
        self.search = kind(self.generator, self.discriminator, self.options, lowres)
        self._finetune: GeneratorFinetune | None = None

    def __call__(self, images: np.ndarray, masks: np.ndarray, *, seeds: Sequence | None = None,
                 blend_result: bool = True, callback=None) -> CompletionResult:
        """Complete B images.

        images: (B, S, S, 3) uint8; masks: (B, S, S) with 1 = known. `seeds`: one per image for
        its starting z (default: derived from options.seed and the position). `callback(iteration,
        generated (B, S, S, 3) float32, completions (B, S, S, 3) uint8, losses {name: (B,)})` sees
        the current best restart of each image. With `from_encoder` the first restart of each
        image starts from the encoder's proposal; with options.search "finetune" the generator
        is then tuned per image. Returns a CompletionResult; `losses` are those of the winning
        restart of each image (and "finetune_<name>" (finetune_steps + 1, B) of the tuning)."""
        opts = self.options
        images, masks = self._checked(images, masks)
        b, k = len(images), opts.restarts
        weights = masklib.context_weights(masks) if opts.context_weighting == "yeh" else masks
        target = np.repeat(to_float(images), k, axis=0)
        weights_k = np.repeat(weights, k, axis=0)
        z0 = _starting_points(self.search, opts, b, seeds, images, masks,
                              self.encoder if self.from_encoder else None)
        paste_masks = np.zeros_like(masks) if self.lowres else masks

        def on_step(i, g, losses):
            idx = _best_of(losses["total"], b, k)
            gen = g.numpy()[idx]
            callback(i, gen, paste(images, gen, paste_masks),
                     {name: val[idx] for name, val in losses.items()})

        z, g, history, shifts = self.search.run(target, weights_k, z0,
                                                on_step if callback else None)
        idx = _best_of(history["total"][-1], b, k)
        losses = {name: val[:, idx] for name, val in history.items()}
        generated = g[idx]
        if opts.search == "finetune" and opts.finetune_steps > 0:
            generated, tuned = _finetune_each(self._finetuner(), z[idx], shifts[idx], target[idx],
                                              weights_k[idx])
            losses.update({f"finetune_{name}": val for name, val in tuned.items()})
        completed = paste(images, generated, paste_masks)
        blended = blend(images, generated, masks) if blend_result and not self.lowres else None
        return CompletionResult(z[idx], generated, completed, blended, losses, shifts[idx])

    def _checked(self, images, masks) -> tuple[np.ndarray, np.ndarray]:
        """The batch as the search takes it, checked at the door: images (B, S, S, 3) uint8 of the
        model's size S, masks (B, S, S) finite in [0, 1] -> float32. UsageError naming what was
        expected: a float image in [0, 1] read as uint8 would be a black target, and out-of-range
        masks weight the loss as nothing else does."""
        images, s = np.asarray(images), self.image_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise UsageError(f"images must be (B, {s}, {s}, 3) uint8 in [0, 255] (this model's "
                             f"size), got {images.shape} {images.dtype}")
        if not len(images):
            raise UsageError("no images to complete (a batch of 0)")
        try:
            masks = np.asarray(masks, np.float32)
        except (TypeError, ValueError):
            raise UsageError(f"masks must be numbers, got {type(masks).__name__}") from None
        if masks.shape != images.shape[:3]:
            raise UsageError(f"masks must be {images.shape[:3]} (one (S, S) mask per image), "
                             f"got {masks.shape}")
        if not np.isfinite(masks).all():
            raise UsageError("masks must be finite and in [0, 1] (1 = known), got NaN or "
                             "infinite values")
        if masks.size and (masks.min() < 0 or masks.max() > 1):
            raise UsageError("masks must be finite and in [0, 1] (1 = known), got values in "
                             f"[{masks.min():g}, {masks.max():g}]")
        return images, masks

    def _finetuner(self) -> GeneratorFinetune:
        """The GeneratorFinetune of these networks and options, built on first use."""
        if self._finetune is None:
            self._finetune = GeneratorFinetune(self.generator, self.discriminator, self.options,
                                               self.lowres)
        return self._finetune


def complete(generator, discriminator, images: np.ndarray, masks: np.ndarray, *,
             options: SearchOptions | None = None, lowres: bool = False, blend_result: bool = True,
             seeds: Sequence | None = None,
             callback: Callable[[int, np.ndarray, np.ndarray, dict], None] | None = None,
             encoder=None, scattered: bool = False) -> CompletionResult:
    """Complete one batch with these networks: `Completer((generator, discriminator, encoder),
    options, lowres, scattered)(images, masks, ...)` (see Completer). To complete several
    batches with one set-up (compiled once), make the Completer and call it per batch."""
    return Completer((generator, discriminator, encoder), options, lowres, scattered)(
        images, masks, seeds=seeds, blend_result=blend_result, callback=callback)


def _networks_of(model) -> tuple:
    """(generator, discriminator, encoder or None) of a LoadedModel or of a tuple of networks."""
    if isinstance(model, LoadedModel):
        return model.generator, model.discriminator, model.encoder
    if isinstance(model, tuple) and len(model) in (2, 3):
        return (*model, None)[:3]
    raise UsageError(f"Completer takes a LoadedModel, a model directory or (generator, "
                     f"discriminator[, encoder]), got {type(model).__name__}")


def _best_of(total: np.ndarray, b: int, k: int) -> np.ndarray:
    """total (B*K,) -> the index into B*K of each image's best restart."""
    return np.arange(b) * k + total.reshape(b, k).argmin(axis=1)


def _starting_points(search, opts: SearchOptions, b: int, seeds, images, masks,
                     encoder) -> np.ndarray:
    """z0 of the B * restarts searches (rows packed by MultiCodeSearch.pack for multi-code): seeded
    per image; with an `encoder`, the first restart's (first code's) z is its proposal."""
    k, multi = opts.restarts, isinstance(search, MultiCodeSearch)
    codes, dim = (search.codes, search.code_dim) if multi else (1, search.z_dim)
    z0 = initial_z(b, k * codes, dim, seeds, opts.seed).reshape(b * k, codes, dim)
    if encoder is not None:
        proposed = propose(encoder, images, masks)
        if opts.encoder_norm is not None:  # resolved (Completer): a number or None
            proposed = rescale_proposal(proposed, opts.encoder_norm)
        z0[::k, 0] = proposed  # the first restart of each image
    return search.pack(z0) if multi else z0[:, 0]


def rescale_proposal(z: np.ndarray, fraction: float) -> np.ndarray:
    """Proposals (B, D) each rescaled to `fraction` of a uniform z's typical length sqrt(D / 3),
    then clipped to the prior's cube [-1, 1] (so the longest come out a little shorter); a zero
    row stays zero."""
    target = fraction * np.sqrt(z.shape[-1] / 3.0)
    length = np.linalg.norm(z, axis=-1, keepdims=True)
    scale = np.divide(target, length, out=np.zeros_like(length), where=length > 0)
    return np.clip(z * scale, -1.0, 1.0).astype(np.float32)


def use_encoder(opts: SearchOptions, encoder, lowres: bool) -> bool:
    """Whether the search starts from the encoder's proposal (see SearchOptions.init).
    UsageError when init "encoder" or encoder_norm cannot be honoured."""
    from_encoder = _starts_from_encoder(opts, encoder, lowres)
    asked = opts.encoder_norm is not None and not isinstance(opts.encoder_norm, str)
    if asked and not from_encoder:  # a number given; "auto" then just does nothing
        raise UsageError("encoder norm rescales the encoder's proposal, but this search "
                         "starts from random z (init 'random', a model without an encoder, "
                         "or lowres masks): leave it out")
    return from_encoder


def _starts_from_encoder(opts: SearchOptions, encoder, lowres: bool) -> bool:
    if opts.init == "random":
        return False
    if opts.init == "encoder":
        if encoder is None:
            raise UsageError("init 'encoder' needs a model with an encoder (inpaint "
                             "train-encoder); this one has none: use init 'random'")
        if lowres:
            raise UsageError("init 'encoder' does not apply to lowres masks (the encoder "
                             "reads pixels); use init 'random'")
        return True
    return encoder is not None and not lowres


def _finetune_each(finetune: GeneratorFinetune, z, shifts, target, weights):
    """Tune the generator for each image alone -> (generated (B, S, S, 3), losses (steps + 1, B))."""
    outs, hist = [], []
    for i in range(len(z)):
        g, losses = finetune.run(z[i:i + 1], shifts[i:i + 1], target[i:i + 1], weights[i:i + 1])
        outs.append(g)
        hist.append(losses)
    return np.concatenate(outs), {name: np.concatenate([h[name] for h in hist], axis=1)
                                  for name in hist[0]}
