"""The app's lifecycles, each owned by one plain ``QObject``; the main window only wires them.

* :class:`~.models.ModelController` — loading a model (after the engine), what the model
  panel says, and what changes when the classes change.
* :class:`~.images.ImageController` — the image list, companion masks, loading/saving masks.
* :class:`~.runs.RunController` — one run or one batch at a time: start, live drawing,
  pause, cancel, the phases after the last step, and the result.
* :class:`~.history.HistoryController` — finished runs: show, compare, save, export a report.

All background work goes through :class:`advexplorer.gui.worker.TaskRunner`.
"""
