"""Screen the bundled histology models on their held-out tiles, protect mask on.

Writes the held-out tiles of ``models/demo_data.py`` (the bottom-right quadrant of the
scikit-image IHC slide, 169 tiles of 64×64 on a 16-pixel grid) as PNG files in the
ImageFolder layout (``DAB-negative/``, ``DAB-positive/``: the folder is the true label),
with a parallel folder of protect masks (the stained cells: DAB membranes and hematoxylin
nuclei, exactly the samples' protect masks), then runs ``advexplorer screen`` on each model
given and prints flip rate (background-only attack) and robust accuracy vs ε with Wilson
95 % intervals side by side.

Usage::

    python benchmarks/histology_cohort.py --out /tmp/histology-screen \\
        models/histology_standard.pt models/histology_robust.pt \\
        [--screen-args "--verify-monotone 16 --min-eps"]

A model whose screen folder already holds a ``summary.json`` is not screened again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def export_tiles(folder: Path) -> tuple[Path, Path]:
    """Write the held-out tiles and their protect masks; return (images dir, protect dir)."""
    sys.path.insert(0, str(REPO / "models"))
    import demo_data

    held = demo_data.histology_held_out()
    images, protect = folder / "tiles", folder / "protect"
    for index in range(len(held)):
        label = demo_data.HISTOLOGY_CLASSES[int(held.labels[index])]
        y, x = (int(v) for v in held.corners[index])
        name = f"tile_y{y:03d}_x{x:03d}.png"
        tile = (held.images[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        (images / label).mkdir(parents=True, exist_ok=True)
        (protect / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile).save(images / label / name)
        mask = demo_data.stained_cells_mask((y, x)).astype(np.uint8) * 255
        Image.fromarray(mask).save(protect / label / name)
    return images, protect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model files to screen (cards beside them)")
    parser.add_argument("--out", required=True, help="folder for the tiles and one screen per model")
    parser.add_argument("--eps", default="0,1/255,2/255,4/255,8/255")
    parser.add_argument("--steps", default="10")
    parser.add_argument("--screen-args", default="", help="more options for advexplorer screen, quoted")
    args = parser.parse_args(argv)
    extra = shlex.split(args.screen_args)
    from advexplorer.cli import main as cli

    out = Path(args.out)
    images, protect = (out / "tiles", out / "protect") if (out / "tiles").is_dir() else export_tiles(out)
    summaries = {}
    for model in args.models:
        name = Path(model).stem
        if (out / f"screen_{name}" / "summary.json").is_file():
            summaries[name] = json.loads((out / f"screen_{name}" / "summary.json").read_text())
            continue
        code = cli(["screen", "--model", model, "--images", str(images), "--protect-dir", str(protect),
                    "--eps", args.eps, "--steps", args.steps, "--noise-baseline", "--out",
                    str(out / f"screen_{name}"), *extra])
        if code != 0:
            return code
        summaries[name] = json.loads((out / f"screen_{name}" / "summary.json").read_text())
    print("\nflip rate of a background-only PGD (protect mask on the stained cells), Wilson 95 % CI")
    header = f"{'ε':>8}" + "".join(f"  {name:>40}" for name in summaries)
    print(header)
    first = next(iter(summaries.values()))
    for j, entry in enumerate(first["per_eps"]):
        line = f"{entry['eps_label']:>8}"
        for summary in summaries.values():
            e = summary["per_eps"][j]
            text = (f"{e['flipped']:>3}/{e['n']} {100 * e['flip_rate']:5.1f} % "
                    f"[{100 * e['flip_rate_ci95'][0]:4.1f}, {100 * e['flip_rate_ci95'][1]:5.1f}] "
                    f"noise {100 * e['noise_flip_rate']:4.1f} %")
            line += f"  {text:>40}"
        print(line)
    print("\nrobust accuracy (correct when clean and not flipped), Wilson 95 % CI")
    print(header)
    for j, entry in enumerate(first["per_eps"]):
        line = f"{entry['eps_label']:>8}"
        for summary in summaries.values():
            e = summary["per_eps"][j]
            text = (f"{e['robust']:>3}/{e['n_labelled']} {100 * e['robust_accuracy']:5.1f} % "
                    f"[{100 * e['robust_accuracy_ci95'][0]:4.1f}, {100 * e['robust_accuracy_ci95'][1]:5.1f}]")
            line += f"  {text:>40}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
