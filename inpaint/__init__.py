"""inpaint: semantic face inpainting with a DCGAN (Yeh et al., CVPR 2017).

Importing the package is cheap: TensorFlow is imported only by the modules that need it
(models, train, complete, ...), so `inpaint --help` answers at once.
"""

__version__ = "0.1.0"
