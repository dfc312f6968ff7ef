"""The FUSE side of vdrm: the only package that imports ``pyfuse3`` and ``trio``."""

# first, before anything imports pyfuse3: the shim that names each request's sender must
# be bound in its place (see vdrm.fs.caller)
from vdrm.fs import caller as _caller  # noqa: F401
