"""``bgekit encode --visual-weights``: images (a folder, or jsonl with an ``image`` field and optional text) and
texts into Visualized-BGE vectors; and the Visualized-BGE parts of ``bgekit index`` and ``bgekit search --index-dir``.
The options live here; bgekit.cli.embed and bgekit.cli.index only hand over."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bgekit.errors import InputError, InputFileError, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# options of the text encoder that cannot apply to Visualized-BGE (-> their defaults)
TEXT_ONLY = {"--sparse": False, "--kind": "plain", "--task": None}


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images (Visualized-BGE; pip install 'bgekit[visual]')")
    g.add_argument("--visual-weights", default=None, metavar="PTH",
                   help="a Visualized-BGE checkpoint (Visualized_base_en_v1.5.pth with --model BAAI/bge-base-en-v1.5, "
                        "Visualized_m3.pth with --model BAAI/bge-m3): the input may then be a folder of images or "
                        "jsonl with an 'image' field (a path, relative to the jsonl's folder) and optional text")
    g.add_argument("--image-field", default="image", help="jsonl: the field holding the image path (default: image)")


def wanted(args: argparse.Namespace) -> bool:
    """True when --visual-weights was given; a folder input without it is an error naming the option."""
    if getattr(args, "visual_weights", None):
        return True
    if getattr(args, "image_field", "image") != "image":
        raise UsageError("--image-field applies with --visual-weights only")
    if os.path.isdir(args.input):
        raise InputFileError(f"input {args.input!r} is a folder; expected a file (a folder of images is encoded "
                             "with --visual-weights, a Visualized-BGE checkpoint, and --model, its text model)")
    return False


def read_rows(path: str, text_field: str | None, image_field: str) -> tuple[list, list]:
    """(texts, images) from a folder of images (sorted by name), a jsonl file, or a .txt file (texts only).

    Raises:
        InputFileError: no such path.
        InputError: a folder without images, a jsonl line without a text or an image, wrong field types (line named).
    """
    from bgekit.cli.embed import is_jsonl, read_texts
    from bgekit.io import iter_jsonl

    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise InputError(f"folder {path!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [None] * len(names), [os.path.join(path, n) for n in names]
    if not os.path.exists(path):
        raise InputFileError(f"input {path!r} does not exist")
    if not is_jsonl(path):
        texts = read_texts(path, text_field)
        return texts, [None] * len(texts)
    text_field = text_field or "text"
    base = os.path.dirname(os.path.abspath(path))
    texts, images = [], []
    for n, obj in iter_jsonl(path):
        text, image = obj.get(text_field), obj.get(image_field)
        if text is not None and not isinstance(text, str) or image is not None and not isinstance(image, str):
            raise InputError(f"{path}:{n}: {text_field!r} and {image_field!r} must be strings when present")
        if text is None and image is None:
            raise InputError(f"{path}:{n}: expected an object with an image path {image_field!r} and/or a text {text_field!r}")
        texts.append(text)
        images.append(None if image is None else os.path.join(base, image))
    return texts, images


def encode(args: argparse.Namespace) -> int:
    """``bgekit encode INPUT -o OUT.npy --visual-weights PTH --model TEXT_MODEL``."""
    from bgekit.cli.checks import check_devices, check_output, refuse
    from bgekit.distributed import cli as ray_cli
    from bgekit.io import atomic_save_npy
    from bgekit.visual.embedder import VisualEmbedder

    refuse(args, TEXT_ONLY, "with --visual-weights (Visualized-BGE applies no instructions and has no sparse head)")
    if ray_cli.check(args):  # also refuses --ray-* options without --ray
        raise UsageError("--ray cannot apply with --visual-weights")
    if args.device and len(args.device) > 1:
        raise UsageError(f"--visual-weights encodes on one device; got --device {' '.join(args.device)}")
    if args.model == "all-MiniLM-L6-v2":
        raise UsageError("--visual-weights needs --model, the checkpoint's text model (BAAI/bge-base-en-v1.5, "
                         "BAAI/bge-m3, or a folder with its config and tokenizer)")
    check_output(args.output, "--output", (".npy",))
    check_devices(args.device)
    texts, images = read_rows(args.input, args.field, args.image_field)
    for i, image in enumerate(images):  # every image readable before the model loads
        if image is not None:
            from bgekit.visual.images import check_image

            check_image(image, f"{args.input} item {i + 1}")
    model = VisualEmbedder(args.model, args.visual_weights, device=args.device[0] if args.device else None,
                           dtype=args.dtype, batch_size=args.batch_size, max_length=args.max_length)
    vecs = model.encode(texts=texts if any(t is not None for t in texts) else None,
                        images=images if any(i is not None for i in images) else None, show_progress=True)
    atomic_save_npy(args.output, vecs)
    n_images = sum(i is not None for i in images)
    print(f"encoded {len(texts)} items ({n_images} with an image) with {args.model} + {args.visual_weights} "
          f"-> {args.output}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- the persisted index

def check_index_build(args: argparse.Namespace) -> bool:
    """--visual-weights: a Visualized-BGE index (dense only; --model names its text model)."""
    if not args.visual_weights:
        return False
    for flag in ("--colbert", "--dense-only", "--ray"):
        if getattr(args, flag[2:].replace("-", "_"), False):
            raise UsageError(f"{flag} cannot apply with --visual-weights (a Visualized-BGE index holds dense "
                             "vectors only, encoded in this process)")
    if not args.model:
        raise UsageError("--visual-weights needs --model, the checkpoint's text model (BAAI/bge-base-en-v1.5, "
                         "BAAI/bge-m3, or a folder with its config and tokenizer)")
    from bgekit.cli.checks import check_input

    check_input(args.visual_weights, "--visual-weights")
    return True


def index_model(args: argparse.Namespace, info=None) -> Any:
    """A VisualEmbedder from --model and --visual-weights (each defaulting to what ``info`` records)."""
    from dataclasses import replace

    from bgekit.visual.index import load

    if getattr(args, "device", None) and len(args.device) > 1:
        raise UsageError(f"--visual-weights encodes on one device; got --device {' '.join(args.device)}")
    given = {"device": (getattr(args, "device", None) or [None])[0], "dtype": getattr(args, "dtype", None),
             "batch_size": getattr(args, "batch_size", None), "max_length": getattr(args, "max_length", None)}
    kwargs = {k: v for k, v in given.items() if v is not None}
    if info is None:
        from bgekit.visual.embedder import VisualEmbedder

        return VisualEmbedder(args.model, args.visual_weights, **kwargs)
    info = replace(info, name=args.model or info.name)
    return load(info, getattr(args, "visual_weights", None), **kwargs)


def check_image_queries(args: argparse.Namespace, store) -> list[str] | None:
    """``bgekit search --index-dir DIR --image PATH``: the index must be a Visualized-BGE one, every image readable,
    and query texts, if any, one per image. Returns the images (None without --image)."""
    from bgekit.visual.images import check_image

    images = getattr(args, "image", None)
    if not images:
        return None
    if store.model_info.visual is None:
        raise UsageError(f"--image needs an index built with a Visualized-BGE model (bgekit index build "
                         f"--visual-weights); {store.path!r} was built with the text model {store.model_info.name!r}")
    if args.query and len(args.query) != len(images):
        raise UsageError(f"--image pairs with one query text each: got {len(images)} --image and "
                         f"{len(args.query)} quer{'y' if len(args.query) == 1 else 'ies'}")
    for image in images:
        check_image(image, "--image")
    return images
