"""``python -m vdrm``: the ``vdrm`` command (:mod:`vdrm.cli`)."""

import sys

from vdrm.cli import main

sys.exit(main())
