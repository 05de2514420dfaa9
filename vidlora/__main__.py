"""``python -m vidlora``: the command line (same as the ``vidlora`` script)."""

import sys

from vidlora.app.cli import main

sys.exit(main())
