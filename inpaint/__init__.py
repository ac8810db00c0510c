"""inpaint: semantic face inpainting with a DCGAN (Yeh et al., CVPR 2017).

The few names a user needs are importable from the package:

    import inpaint
    model = inpaint.load_model()                      # the shipped model (or a run's folder)
    face = inpaint.read_image("face.png")             # (64, 64, 3) uint8, an aligned face
    mask = inpaint.build_mask("center", 64)           # (64, 64) float32, 1 = known
    search = inpaint.Completer(model)                 # the search set up once: encoder start
    result = search(face[None], mask[None])           # (B, S, S, 3) in, a CompletionResult out
    inpaint.write_image("filled.png", result.blended[0])

    photo = inpaint.fill(inpaint.read_image("me.jpg"), region="mouth")  # a whole photo

Importing the package is cheap: the names are loaded on first use, and TensorFlow (imported by
load_model and complete) comes in with its C++ start-up lines hidden, as in the command line
(TF_CPP_MIN_LOG_LEVEL=0 shows them).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# name -> module that defines it; loaded by __getattr__ on first use.
_EXPORTS = {
    "load_model": "inpaint.models",
    "LoadedModel": "inpaint.models",
    "complete": "inpaint.search",
    "Completer": "inpaint.search",
    "train_encoder": "inpaint.encoder",
    "complete_files": "inpaint.batch",
    "SearchOptions": "inpaint.config",
    "CompletionResult": "inpaint.search",
    "MaskSpec": "inpaint.masks",
    "build_mask": "inpaint.masks",
    "box_mask": "inpaint.masks",
    "read_mask": "inpaint.masks",
    "read_image": "inpaint.images",
    "write_image": "inpaint.images",
    "InpaintError": "inpaint.errors",
    "fill": "inpaint.fill",  # loads TensorFlow when called, not when imported
}
_NEED_TENSORFLOW = {"inpaint.models", "inpaint.search", "inpaint.batch", "inpaint.encoder"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inpaint' has no attribute {name!r}")
    if module in _NEED_TENSORFLOW:
        from inpaint.backend import import_tensorflow

        import_tensorflow()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """`inpaint.fill` is both a submodule (fill.py, whole photos) and the function users call.
    Importing the submodule would rebind the package attribute to the module; this keeps it the
    function (`from inpaint.fill import ...` still reaches the module). The search's file layer
    is inpaint.batch, so `inpaint.complete` names only the function."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
