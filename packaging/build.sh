#!/usr/bin/env bash
# Build the self-contained AdvExplorer folder app with PyInstaller.
#
#     bash packaging/build.sh            # → dist/advexplorer/advexplorer  (Linux, Windows: .exe)
#                                        #   dist/AdvExplorer.app          (macOS)
#
# Uses the Python in $PYTHON (default: .venv's), installs the `packaging` extra (PyInstaller)
# into it if missing, renders the icons, runs the spec and prints the bundle's size and the
# build time. Works the same in Git Bash on Windows and in Terminal on macOS.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python
  elif [[ -x .venv/Scripts/python.exe ]]; then PYTHON=.venv/Scripts/python.exe
  else PYTHON=python3
  fi
fi
started=$(date +%s)

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
  echo "Installing PyInstaller (the 'packaging' extra) into $PYTHON's environment"
  "$PYTHON" -m pip install -q -e ".[gui,packaging]"
fi
"$PYTHON" -c "import torch, PySide6, pyqtgraph, superqt, captum" || {
  echo "build.sh: install the app first: $PYTHON -m pip install -e '.[gui,packaging]'" >&2; exit 2; }

QT_QPA_PLATFORM=offscreen "$PYTHON" packaging/make_icons.py --bundle-icons build/icons
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/advexplorer.spec

finished=$(date +%s)
bundle=dist/advexplorer
[[ -d dist/AdvExplorer.app ]] && bundle=dist/AdvExplorer.app
echo "Built $bundle in $(( (finished - started) / 60 )) min $(( (finished - started) % 60 )) s"
echo "Size: $(du -sh "$bundle" | cut -f1) ($(find "$bundle" -type f | wc -l) files)"
