"""Where the bundled models and resources live (no network, ever).

In a checkout (and an editable install) they are the repository's ``models/`` and
``resources/``. A regular wheel installs the same two folders under
``<prefix>/share/advexplorer/`` (see ``[tool.setuptools.data-files]``), keeping their
relative layout so the cards' sample paths still resolve.
"""

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_root() -> Path:
    checkout = PACKAGE_DIR.parent
    if (checkout / "models").is_dir():
        return checkout
    installed = Path(sys.prefix) / "share" / "advexplorer"
    return installed if (installed / "models").is_dir() else checkout


REPO_DIR = _data_root()
MODELS_DIR = REPO_DIR / "models"
RESOURCES_DIR = REPO_DIR / "resources"
SAMPLES_DIR = RESOURCES_DIR / "samples"

#: The model the app and the CLI open when given nothing.
DEFAULT_MODEL = MODELS_DIR / "histology_standard.pt"
