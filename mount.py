#!/usr/bin/env python3
"""Mount vdrm, the virtual DRM device: ``python mount.py MOUNTPOINT [options]`` (see --help)."""

import sys

from vdrm.fs.daemon import main

if __name__ == "__main__":
    sys.exit(main())
