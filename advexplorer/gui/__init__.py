"""The desktop app (PySide6 + pyqtgraph).

Importing this package imports no torch: the window must appear before the engine is
loaded (:mod:`advexplorer.gui.engine` imports it in a background thread). Entry point:
:func:`advexplorer.gui.app.run_app`.
"""
