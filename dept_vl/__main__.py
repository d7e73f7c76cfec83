"""``python -m dept_vl`` is the ``dept-vl`` command (used by ``accelerate launch -m dept_vl ...``)."""

import sys

from dept_vl.cli import main

sys.exit(main())
