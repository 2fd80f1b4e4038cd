"""pyquint: headless, scriptable ilastik-compatible segmentation for QUINT and steinbock.

The Python API is the product; the ``pyquint`` command line is a thin layer over it.
Modules, with data flowing one way::

    io, data -> features -> forest, pixel, export -> objects -> lut
      -> imagej, macros -> ilastik, steinbock, workflows -> cli
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
