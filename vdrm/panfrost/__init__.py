"""The Panfrost driver (``drivers/gpu/drm/panfrost/``) on top of the DRM core."""
