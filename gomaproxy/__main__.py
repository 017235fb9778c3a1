"""``python -m gomaproxy`` runs the command line."""

import sys

from gomaproxy.cli import main

sys.exit(main())
