"""``advexplorer card MODEL``: make the model card instead of writing it by hand.

Infers what the file says (architecture from a state_dict's key names and shapes, classes
and preprocessing from a Hugging Face folder, the input shape of an ONNX graph, the
library's recipe for a timm/torchvision architecture), takes the user's choices for the
rest, runs the loader's dry run (which checks the number of outputs against the classes),
and writes ``MODEL.json`` beside the model atomically — printing each field and where it
came from. Nothing is written when any check fails.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from advexplorer.errors import UserError
from advexplorer.io.cards import parse_input_size, parse_normalization


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="state_dict (.pt/.pth/.bin), .safetensors, TorchScript, .pt2, .onnx, or a "
                             "Hugging Face folder (config.json + weights)")
    parser.add_argument("--architecture", metavar="NAME",
                        help="torchvision or timm architecture for state_dict weights, e.g. "
                             "torchvision.resnet18 or timm.convnext_tiny (default: inferred from the keys)")
    parser.add_argument("--architecture-kwargs", metavar="JSON",
                        help='arguments of the architecture, e.g. \'{"img_size": 384}\' (num_classes is read '
                             "from the weights)")
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--classes", metavar="a,b,c", help="class names in output order")
    classes.add_argument("--classes-file", metavar="F", help="a text file with one class name per line")
    classes.add_argument("--classes-from", metavar="IMAGEFOLDER",
                         help="the class folders of a training ImageFolder (sorted, as torchvision does)")
    parser.add_argument("--input-size", metavar="N|HxW", help="input size in pixels, e.g. 224 or 256x192")
    parser.add_argument("--normalization", metavar="imagenet|half|none|MEAN,STD|from-folder DIR",
                        help="the model's input normalisation (applied inside AdvExplorer's wrapper)")
    parser.add_argument("--resize", choices=("stretch", "center-crop"),
                        help="how an image of another size is brought to the input size")
    parser.add_argument("--device", default="cpu", help="device for the dry run (default cpu)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a fully pickled model (unpickling runs code from the file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing card")


def read_classes(args: argparse.Namespace) -> list[str] | None:
    """The class names the user gave, in output order, or None."""
    if args.classes:
        names = [name.strip() for name in args.classes.split(",")]
    elif args.classes_file:
        path = Path(args.classes_file)
        if not path.is_file():
            raise UserError(f"--classes-file {path} does not exist.")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif args.classes_from:
        folder = Path(args.classes_from)
        if not folder.is_dir():
            raise UserError(f"--classes-from {folder} is not a folder of class folders.")
        names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    else:
        return None
    if not names or any(not name for name in names):
        raise UserError("The class list is empty or has an empty name; give one name per model output.")
    return names


def run(args: argparse.Namespace) -> int:
    from advexplorer.io.card_inference import infer_card, make_card

    size = parse_input_size(args.input_size) if args.input_size else None
    normalization = parse_normalization(args.normalization) if args.normalization else None
    kwargs = None
    if args.architecture_kwargs:
        try:
            kwargs = json.loads(args.architecture_kwargs)
        except json.JSONDecodeError as exc:
            raise UserError(f"--architecture-kwargs is not JSON ({exc}); write e.g. '{{\"img_size\": 384}}'.") from None
        if not isinstance(kwargs, dict):
            raise UserError("--architecture-kwargs must be a JSON object, e.g. '{\"img_size\": 384}'.")
    inferred = infer_card(args.model, architecture=args.architecture, architecture_kwargs=kwargs,
                          classes=read_classes(args),
                          input_size=size, normalization=normalization, resize=args.resize,
                          trust_pickle=args.trust_pickle, device=args.device)
    destination, loaded = make_card(args.model, inferred, device=args.device,
                                    trust_pickle=args.trust_pickle, overwrite=args.overwrite)
    for line in describe(inferred, loaded):
        print(line)
    print(f"wrote {destination}")
    return 0


def describe(inferred, loaded) -> list[str]:
    """What the card says and where each field came from, one line each."""
    card, sources = inferred.card, inferred.sources
    shown = ", ".join(card.classes[:6]) + (f", … ({card.num_classes})" if card.num_classes > 6 else "")
    lines = [f"format:        {inferred.format}"]
    if card.architecture:
        lines.append(f"architecture:  {card.architecture} {card.architecture_kwargs or ''}".rstrip()
                     + f"  [{sources.get('architecture', '')}]")
    lines += [
        f"classes:       {shown}  [{sources['classes']}]",
        f"input size:    {card.input_size[0]}×{card.input_size[1]}, {card.channels} channels  [{sources['input_size']}]",
        f"normalization: mean {list(card.mean)}, std {list(card.std)}  [{sources['normalization']}]",
        f"resize:        {card.resize}  [{sources['resize']}]",
        f"dry run:       ok, {card.num_classes} outputs on noise, grey, black and white images",
    ]
    lines += [f"note:          {note}" for note in loaded.notes]
    return lines
