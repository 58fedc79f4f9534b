"""The defence vocabulary now lives in :mod:`advexplorer.config` (the one torch-free vocabulary).

``--defense``/``--adaptive``/``--precision`` names, labels, citations and parsers are defined
there beside the attack vocabulary; this module re-exports them so existing imports
(``from advexplorer.defence_options import parse_defence``) keep working.
"""

from advexplorer.config import (ADAPTIVE_LABELS, ADAPTIVE_MODES, DEFENCE_KINDS, PRECISIONS,  # noqa: F401
                                DefenceKind, DefenceSpec, parse_adaptive, parse_defence, parse_precision)

__all__ = ["ADAPTIVE_LABELS", "ADAPTIVE_MODES", "DEFENCE_KINDS", "PRECISIONS", "DefenceKind", "DefenceSpec",
           "parse_adaptive", "parse_defence", "parse_precision"]
