"""vdrm: a virtual DRM device you can mount.

Emulated Arm Mali GPUs -- a Mali-G52 under Panfrost, a Mali-G610 under Panthor, alone or
both in one machine -- served over FUSE as a fake ``/dev/dri`` plus a
``/proc``/``/sys``/debugfs-shaped tree whose fdinfo files are byte-exact with the kernel's.

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
    argument grammar every text door uses (``grammar``); the driver-neutral device
    interface (``gpu``: ``GpuDevice``, ``Machine``) and the machine's timeline
    (``timeline``); the core's debugfs files (``debugfs``).
``vdrm.panfrost``, ``vdrm.panthor``
    The drivers, side by side and never importing each other: BO rules, GPU VA, MMU and
    faults or VMs and tiler heaps, jobs and engines, ioctls, fdinfo lines, debugfs, the
    release table, each behind ``GpuDevice``.
``vdrm.drivers``
    The registry of drivers by name, and the machines built from them (``--gpus``).
``vdrm.scenario``
    Reproducible machines of processes, clients, BOs and job timelines, on any driver.
``vdrm.bridge``
    The process side: real programs' open/fstat/ioctl reaching the engine.
``vdrm.fs``
    The FUSE side: the virtual tree, the ``pyfuse3.Operations`` adapter, the request
    protocol, the daemon lifecycle. The only package that imports ``pyfuse3`` or ``trio``.

Everything below ``vdrm.fs`` is plain synchronous Python: each engine call is atomic
with respect to the daemon's trio tasks, so the engine has no locks.

Above the FUSE side, the tools for parser authors: ``vdrm.cli`` (the ``vdrm`` command),
``vdrm.truth`` (the whole device's ground truth), ``vdrm.check`` (a parser's report
against it), ``vdrm.record`` and ``vdrm.replay`` (any GPU's fdinfo, recorded and played
back), ``vdrm.pytest_plugin`` (a ``vdrm`` fixture for a parser's own test suite). Beside
them, ``vdrm.bench`` (benchmarks that print figures) and ``vdrm.fuzz`` (the soak of a real
mount and the scenario fuzz).
"""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)
