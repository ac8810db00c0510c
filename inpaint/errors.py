"""Typed errors. The library raises these with a message a user can act on; the CLI prints
`Error: <message>` and exits with `exit_code`, never with a traceback (cli.InpaintGroup.invoke is
the one place that maps them).

Exit codes: 2 for UsageError, what the caller asked for is malformed whatever the files, data or
machine (an option value out of range, options that exclude each other, an argument of the wrong
kind), the code click gives its own usage errors, so a script can tell bad usage from a failure;
130 for Interrupted; 1 for everything else, files, data, models, runs and machines that cannot
serve (a config *file* with a bad value is data: exit 1; the same value given with `--set` is
usage: the CLI reports it as click's BadParameter, exit 2).
"""


class InpaintError(Exception):
    """Base class of every error a user can cause or fix."""

    exit_code = 1


class UsageError(InpaintError):
    """The caller asked for something malformed, whatever the data: an option value out of
    range, options that exclude each other, an argument of the wrong kind."""

    exit_code = 2


class ConfigError(InpaintError):
    """A config file or override is malformed, has an unknown key or a value of the wrong type."""


class DataError(InpaintError):
    """A dataset cannot be used (no images, fewer images than a batch, ...)."""


class ImageReadError(InpaintError):
    """One image file cannot be read (missing, corrupt, not an image, too large)."""


class MaskError(InpaintError):
    """A mask is malformed or does not match its image."""


class ModelError(InpaintError):
    """A model directory is missing, incomplete, tampered with or incompatible."""


class RunDirError(InpaintError):
    """A run directory cannot be used as asked (e.g. it holds a run with another config)."""


class NoFaceFound(InpaintError):
    """No face was detected in an image."""


class Interrupted(InpaintError):
    """The user pressed Ctrl-C; whatever could be saved was saved."""

    exit_code = 130


class AlignError(InpaintError):
    """Face alignment cannot run as asked: dlib or a model file is missing or unreadable, an output
    folder holds faces aligned with other settings, two inputs would share an output name."""


class WorkerLost(InpaintError):
    """A multi-worker training lost contact with another worker (it died, or the network did);
    the chief's last checkpoint is whole, and restarting every worker resumes from it."""


class Diverged(InpaintError):
    """A loss became NaN or infinite (training or latent search); nothing computed from it was
    saved."""


class DirInUse(InpaintError):
    """An output or run directory is locked by another running inpaint process."""


class ResourceError(InpaintError):
    """The work needs more memory (or other resources) than the machine has."""
