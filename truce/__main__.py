import sys

from truce.cli import main

sys.exit(main())
