"""``python -m advexplorer …`` (what ``torchrun … -m advexplorer screen …`` runs on every rank)."""

import sys

from advexplorer.cli import main

if __name__ == "__main__":
    sys.exit(main())
