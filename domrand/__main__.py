"""``python -m domrand`` runs the command-line interface."""

import sys

from domrand.cli import main

sys.exit(main())
