"""The FUSE side of vdrm: the only package that imports ``pyfuse3`` and ``trio``."""
