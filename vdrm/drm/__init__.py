"""The DRM core (``drivers/gpu/drm/drm_*.c``): GEM, shmem helper, files, drm_mm, fdinfo."""
