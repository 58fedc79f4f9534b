"""AdvExplorer: probe image classifiers with masked adversarial attacks.

The package is split into rooms that only import towards the data (see README):
``core`` (torch + numpy maths), ``io`` (files in and out), ``session`` (the user's
working state), ``report`` (HTML/PDF/JSON), ``cli`` and ``gui`` (Qt only).
Importing this package is cheap: it does not import torch.
"""

__version__ = "0.1.0"
