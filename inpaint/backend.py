"""TensorFlow, imported once without its C++ start-up chatter.

TensorFlow's C++ side prints oneDNN, CUDA-probe and CPU-feature lines to the stderr file
descriptor while it loads, some before its own log level (TF_CPP_MIN_LOG_LEVEL) takes effect.
The command line and the package's API both import it through `import_tensorflow`, which hides
them unless TF_CPP_MIN_LOG_LEVEL=0, and shows them after all if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow():
    """Import TensorFlow (if not yet imported) with its C++ start-up lines hidden; returns the
    module. TF_CPP_MIN_LOG_LEVEL defaults to 3 (errors hidden too); set it to 0 to see them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf
