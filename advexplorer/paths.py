"""Where the bundled models and resources live (no network, ever)."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
MODELS_DIR = REPO_DIR / "models"
RESOURCES_DIR = REPO_DIR / "resources"
SAMPLES_DIR = RESOURCES_DIR / "samples"

#: The model the app and the CLI open when given nothing.
DEFAULT_MODEL = MODELS_DIR / "histology_standard.pt"
