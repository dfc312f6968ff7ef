"""``python -m vdrm.bench``: the whole benchmark (see :mod:`vdrm.bench.suite`)."""

import sys

from vdrm.bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
