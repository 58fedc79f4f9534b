"""Entry point of the packaged app: the same ``advexplorer`` command as the pip install.

With no arguments the bundle opens the desktop app (as ``advexplorer`` does); every CLI
subcommand works too (``advexplorer demo --screenshot shot.png``, ``advexplorer attack ...``).
"""

import multiprocessing
import sys

if __name__ == "__main__":
    # A frozen app re-executes itself for worker processes (DataLoader, Windows/macOS spawn).
    multiprocessing.freeze_support()
    from advexplorer.cli import main

    sys.exit(main())
