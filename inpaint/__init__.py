"""inpaint: semantic face inpainting with a DCGAN (Yeh et al., CVPR 2017).

Importing the package is cheap: TensorFlow is imported only by the modules that need it
(models, train, complete, ...), so `inpaint --help` answers at once.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`inpaint.fill` is imported on first use, so `import inpaint` stays cheap."""
    if name == "fill":
        from inpaint.fill import fill

        return fill
    raise AttributeError(f"module 'inpaint' has no attribute {name!r}")
