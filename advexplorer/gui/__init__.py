"""The desktop app (PySide6 + pyqtgraph).

Importing this package imports no torch: the window must appear before the engine is
loaded (:mod:`advexplorer.gui.engine` imports it in a background thread). Entry point:
:func:`advexplorer.gui.app.run_app`.
"""

import sys as _sys


def _import_pyqtgraph_without_cuda_probe() -> None:
    """Import pyqtgraph once, skipping its CUDA-OpenGL interop probe.

    ``pyqtgraph.widgets.RawImageWidget`` tries ``from cuda.bindings import runtime`` at import
    time (for GPU arrays drawn straight into OpenGL, which the app never does). With
    torch's CUDA wheels that package is installed and costs about 0.1 s — on the path to
    the first window. The probe is answered "not here" for that one import only: the name
    is released afterwards, so torch can still import it.
    """
    if "pyqtgraph" in _sys.modules or "cuda.bindings.runtime" in _sys.modules:
        return
    _sys.modules["cuda.bindings.runtime"] = None  # an ImportError for this name, for now
    try:
        import pyqtgraph  # noqa: F401
    except ImportError:
        pass  # no GUI extras: the first module that needs them says so (commands/gui.py)
    finally:
        if _sys.modules.get("cuda.bindings.runtime", 0) is None:
            del _sys.modules["cuda.bindings.runtime"]


_import_pyqtgraph_without_cuda_probe()
