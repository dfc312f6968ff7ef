"""The process bridge: unmodified programs' open, stat and ioctl reach the engine.

Under ``mount.py --run`` the runner's COMMAND carries a seccomp user-notification filter
(:mod:`.seccomp`) and the daemon answers the calls it intercepts (:mod:`.supervisor`):
DRM ioctls on vdrm fds go to the binary dispatch with the caller's memory
(:mod:`.memory`), stats of the nodes say character device 226:<minor> (:mod:`.nodestat`),
and ``kcmp`` of scenario processes is answered from the scenario. ``open`` is never
intercepted: the namespace's ``/dev/dri`` is the mount's, so an open is a FUSE open.

Why seccomp rather than an ``LD_PRELOAD`` shim (Mesa's drm-shim): only seccomp reaches
statically linked programs and raw system calls, which issue 9 requires. Measured
(``python -m vdrm.bench.bridge``, 2-vCPU VM): an intercepted DRM ioctl costs about 85 µs
(the text protocol's request 74 µs), a stat handed back to the kernel 34 µs added;
ioctls of other types pass the filter at 0.1 µs.

This package is plain Python with ctypes: it imports no trio and reaches the engine only
through the host object the daemon gives the supervisor (:mod:`vdrm.fs.bridge`).
"""
