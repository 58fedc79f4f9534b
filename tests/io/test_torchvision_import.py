"""torchvision imported without torch._dynamo (the app's path to Run), and still whole."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (the import state of this one is already mixed)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_torchvision_without_dynamo_builds_models_and_dynamo_still_works_afterwards():
    out = run_fresh("""
        import sys
        from advexplorer.io.architectures import build_by_name
        model = build_by_name("torchvision.mobilenet_v3_small", {"width_mult": 0.5}, num_classes=2)
        import torch
        print("dynamo", "torch._dynamo" in sys.modules)
        print("shape", tuple(model.eval()(torch.rand(1, 3, 32, 32)).shape))
        from torchvision.ops import roi_align  # its forwarded is_compile_supported reaches the real one
        boxes = torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float)
        print("roi", tuple(roi_align(torch.rand(1, 1, 8, 8), boxes, output_size=2).shape))
        import torch._dynamo
        print("real", hasattr(torch._dynamo, "optimize"))
        from torch._dynamo.utils import is_compile_supported
        print("supported", is_compile_supported("cpu") in (True, False))
    """)
    assert "dynamo False" in out
    assert "shape (1, 2)" in out
    assert "roi (1, 1, 2, 2)" in out
    assert "real True" in out
    assert "supported True" in out


def test_version_without_importing_torchvision_and_the_ordinary_import_when_dynamo_is_loaded():
    out = run_fresh("""
        import sys
        from advexplorer.io.torchvision_import import import_torchvision, torchvision_version
        version = torchvision_version()
        print("imported", "torchvision" in sys.modules)
        import torch, torch._dynamo
        tv = import_torchvision()
        print("equal", version == tv.__version__)
    """)
    assert "imported False" in out
    assert "equal True" in out
