"""vdrm: a virtual DRM device you can mount.

An emulated Arm Mali GPU driven by the Panfrost driver, served over FUSE as a fake
``/dev/dri`` plus a ``/proc``/``/sys``/debugfs-shaped tree whose fdinfo files are
byte-exact with the kernel's.

Layout, after the kernel's own map (imports only go downwards in this list):

``vdrm.errors``
    One exception per errno; converted once, at the edges.
``vdrm.kernel``
    What the rest of the kernel provides: the clock, the kernel log ring (dmesg), WARN
    blocks, and the machinery of the per-driver kernel release tables (``releases``).
``vdrm.mm``
    Emulated physical memory: the page allocator, the sparse page store (xarray), the
    scatterlist engine (``lib/scatterlist.c``).
``vdrm.drm``
    The DRM core: GEM objects and the shmem helper (dense and sparse), files and handles,
    master and authentication, the range allocator (``drm_mm``), mmap offsets, fdinfo
    memory stats and printing; the ioctl table and its one dispatch (``ioctl``), the binary
    uAPI's numbers and struct layouts (``uapi``), user memory (``uaccess``) and the
    argument grammar every text door uses (``grammar``).
``vdrm.panfrost``
    The driver: BO rules, GPU VA, MMU and faults, jobs and engines, ioctls, fdinfo lines,
    debugfs.
``vdrm.fs``
    The FUSE side: the virtual tree, the ``pyfuse3.Operations`` adapter, the request
    protocol, the daemon lifecycle. The only package that imports ``pyfuse3`` or ``trio``.

Everything below ``vdrm.fs`` is plain synchronous Python: each engine call is atomic
with respect to the daemon's trio tasks, so the engine has no locks.
"""
