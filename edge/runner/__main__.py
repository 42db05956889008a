"""``python3 -m edge.runner``: see ``edge.runner.cli``."""

import sys

from edge.runner.cli import main

sys.exit(main())
