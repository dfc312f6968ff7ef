"""The Panthor driver (``drivers/gpu/drm/panthor/``): Mali CSF GPUs, on top of the DRM core."""
