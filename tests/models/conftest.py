"""Make the repository's ``models/`` folder importable (it is not part of the package)."""

import sys

from advexplorer.paths import MODELS_DIR

if str(MODELS_DIR) not in sys.path:
    sys.path.insert(0, str(MODELS_DIR))
