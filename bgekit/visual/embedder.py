"""Visualized-BGE's native API: texts, images and image + text pairs into one vector space, in batches."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bgekit import backends
from bgekit.batching import check_batch_size, run_sorted
from bgekit.errors import InputError, UsageError
from bgekit.visual import images as imgs

logger = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")  # what the reference's sentence_embedding implements


class VisualEmbedder:
    """Encode texts, images and composed image + text queries with a Visualized-BGE checkpoint.

    Args:
        model_name_or_path: the text model: ``BAAI/bge-base-en-v1.5`` or ``BAAI/bge-m3`` (hub names or folders)
            for the published checkpoints, or a folder with its config.json and tokenizer (its weights are
            not used: they come from ``model_weight``).
        model_weight: the reference's ``.pth`` (``Visualized_base_en_v1.5.pth`` or ``Visualized_m3.pth``).
        vision_config: the EVA tower: a published name (``EVA02-CLIP-B-16``, ``EVA02-CLIP-L-14``), an EVA-CLIP
            JSON path, or None to pick it from the text model's name or the JSON beside ``model_weight``.
        pooling: "cls" (published models) or "mean".
        normalize: L2-normalise the vectors.
        device: one device ("cpu", "cuda:0"); None picks the first GPU, else the CPU.
        dtype: "fp32", "fp16" or "bf16" (or use_fp16 / use_bf16; fp16 on CPU runs fp32). Outputs are float32.
        batch_size: default for encode.
        max_length: tokens per text (longer texts are truncated); None: the model's position limit. For a BERT
            text tower that is 512 for a text alone and 512 - patches next to an image (316 with
            EVA02-CLIP-B-16's 196 patches, 496 with the tiny test tower's 16); bge-m3 takes 8192 and 7938.
        convert_to_numpy: return numpy arrays (else torch tensors).
        cache_dir: hub cache for a text model given by name.

    Example:
        >>> emb = VisualEmbedder("../shared/golden/models/visual-bge/bge-tiny",
        ...                      "../shared/golden/models/visual-bge/Visualized_bge-tiny.pth")
        >>> emb.encode(images=["../shared/golden/images/rgb_64x64.png"], texts=["at night"]).shape
        (1, 32)
    """

    visual = True  # what bgekit.index recognises a Visualized-BGE model by

    def __init__(self, model_name_or_path: str, model_weight: str, *, vision_config: Any = None,
                 pooling: str = "cls", normalize: bool = True, device: Any = None, dtype: str | None = None,
                 use_fp16: bool = False, use_bf16: bool = False, batch_size: int = 64,
                 max_length: int | None = None, convert_to_numpy: bool = True, cache_dir: str | None = None):
        from bgekit.pooling import get_pooling
        from bgekit.visual import config, model

        if pooling not in POOLINGS:
            raise UsageError(f"unknown pooling {pooling!r} for Visualized-BGE; valid: {', '.join(POOLINGS)}")
        devices = backends.resolve_devices(device)
        if len(devices) > 1 and device is not None:
            raise UsageError(f"VisualEmbedder runs on one device; got {devices}")
        self.device = devices[0]
        self.batch_size = check_batch_size(batch_size)
        self.dtype = backends.resolve_dtype(self.device, use_fp16, use_bf16, dtype)
        model.check_weights_file(model_weight)
        self.path = backends.locate(model_name_or_path, cache_dir)
        self.vision = config.resolve(model_name_or_path, model_weight, vision_config)
        self.model = model.load_model(self.path, model_weight, self.vision, self.dtype).to(self.device)
        self.tokenizer = backends.load_tokenizer(self.path)
        self.model_name_or_path, self.model_weight = model_name_or_path, model_weight
        self.pooling_method, self._pool = pooling, get_pooling(pooling)
        self.normalize_embeddings = bool(normalize)
        self.max_length = None if max_length is None else self._check_max_length(max_length)
        self.convert_to_numpy = convert_to_numpy

    @property
    def dim(self) -> int:
        return self.model.text_config.hidden_size

    @property
    def image_size(self) -> int:
        return self.vision.image_size

    @property
    def passage_max_length(self) -> int:
        """Tokens per text alone (what a server counts texts against)."""
        return self.max_length or self.model.text_limit

    query_max_length = passage_max_length

    def encode_queries(self, queries: Any, **kwargs: Any):
        """Texts as queries: Visualized-BGE adds no instruction, so the same as ``encode(texts=queries)``."""
        return self.encode(texts=queries, **kwargs)

    def encode_corpus(self, corpus: Any, **kwargs: Any):
        """Texts as passages: the same as ``encode(texts=corpus)``."""
        return self.encode(texts=corpus, **kwargs)

    def _check_max_length(self, value: Any) -> int:
        return backends.check_length(value, "max_length", self.model.text_limit)

    def encode(self, texts: Any = None, images: Any = None, batch_size: int | None = None,
               max_length: int | None = None, convert_to_numpy: bool | None = None,
               show_progress: bool | None = None):
        """Encode texts, images, or image + text pairs (composed queries) into one space.

        Args:
            texts: a string or a list of strings (None entries are allowed next to an image).
            images: one image or a list: file paths, PIL images or uint8 arrays (H, W[, C]); None entries
                are allowed next to a text. With both lists, row i is ``images[i]`` with ``texts[i]``.
            batch_size: defaults to the constructor's.
            max_length: tokens per text; defaults to the constructor's (or the model's limit).
            convert_to_numpy: numpy (True) or torch tensor.
            show_progress: progress bar; None shows one for 256 inputs or more.

        Returns:
            (N, dim) float32, or (dim,) when a single text and/or a single image was given.

        Raises:
            TypeError: neither texts nor images, or an item of the wrong type (its index named).
            InputError / InputFileError: lists of different lengths, an empty row, an unreadable image (named).
        """
        rows, single = _rows(texts, images)
        batch_size = check_batch_size(self.batch_size if batch_size is None else batch_size)
        max_length = self.max_length if max_length is None else self._check_max_length(max_length)
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        text_rows = [i for i, (_, image) in enumerate(rows) if image is None]
        image_rows = [i for i, (_, image) in enumerate(rows) if image is not None]
        if text_rows:
            out[text_rows] = self._encode_texts([rows[i][0] for i in text_rows], batch_size, max_length, show_progress)
        if image_rows:
            out[image_rows] = self._encode_images([rows[i] for i in image_rows], image_rows, batch_size, max_length,
                                                  show_progress)
        to_numpy = self.convert_to_numpy if convert_to_numpy is None else convert_to_numpy
        result = out if to_numpy else __import__("torch").from_numpy(out)
        return result[0] if single else result

    # ------------------------------------------------------------------ internals
    def _encode_texts(self, texts: list[str], batch_size: int, max_length: int | None, show_progress) -> np.ndarray:
        import torch

        limit = min(max_length or self.model.text_limit, self.model.text_limit)
        ids = self.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]

        @torch.inference_mode()
        def forward(batch: list[list[int]]):
            input_ids, mask = self._pad(batch)
            return self._finish(self.model.text_states(input_ids, mask), mask)

        rows = run_sorted(ids, [len(x) for x in ids], forward, batch_size, self.device, desc="Encoding texts",
                          show_progress=show_progress)
        return torch.stack(rows).cpu().numpy()

    def _encode_images(self, rows: list[tuple], index: list[int], batch_size: int, max_length: int | None,
                       show_progress) -> np.ndarray:
        import torch

        limit = min(max_length or self.model.composed_limit, self.model.composed_limit)
        ids = self.tokenizer([text or "" for text, _ in rows], truncation=True, max_length=limit)["input_ids"]
        items = [(image, ids[k], f"images[{index[k]}]") for k, (_, image) in enumerate(rows)]

        @torch.inference_mode()
        def forward(batch: list[tuple]):
            pixels = torch.from_numpy(np.stack([imgs.load_pixels(im, self.image_size, where) for im, _, where in batch]))
            input_ids, mask = self._pad([t for _, t, _ in batch])
            hidden, full_mask = self.model.composed_states(pixels.to(self.device), input_ids, mask)
            return self._finish(hidden, full_mask)

        rows_out = run_sorted(items, [len(t) for _, t, _ in items], forward, batch_size, self.device,
                              desc="Encoding images", show_progress=show_progress)
        return torch.stack(rows_out).cpu().numpy()

    def _pad(self, batch: list[list[int]]):
        enc = self.tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def _finish(self, hidden, mask):
        """Pool, then normalise in fp32. (B, T, H) -> (B, H)."""
        import torch

        pooled = self._pool(hidden, mask).float()
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize_embeddings else pooled

    def __repr__(self) -> str:
        return (f"VisualEmbedder({self.model_name_or_path!r}, {self.model_weight!r}, vision={self.vision.name!r}, "
                f"pooling={self.pooling_method!r}, dtype={str(self.dtype).replace('torch.', '')})")


def _as_list(value: Any, name: str, is_item) -> tuple[list | None, bool]:
    if value is None:
        return None, False
    if is_item(value):
        return [value], True
    if isinstance(value, np.ndarray) and name == "images":
        raise TypeError(f"images: a {value.ndim}-D array is not one image (H, W[, C]); pass a list of images")
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be one item or a list, got {type(value).__name__}")
    return list(value), False


def _rows(texts: Any, images: Any) -> tuple[list[tuple], bool]:
    """Pair the inputs row by row and check every item before any work. Returns (rows, single)."""
    if texts is None and images is None:
        raise TypeError("encode needs texts, images or both")
    text_list, text_single = _as_list(texts, "texts", lambda v: isinstance(v, str))
    image_list, image_single = _as_list(images, "images", lambda v: isinstance(v, np.ndarray) and v.ndim in (2, 3)
                                        or (imgs.is_image(v) and not isinstance(v, np.ndarray)))
    if text_list is not None and image_list is not None and len(text_list) != len(image_list):
        raise InputError(f"texts has {len(text_list)} items and images {len(image_list)}; composed inputs pair "
                         "images[i] with texts[i], so give lists of the same length")
    n = len(text_list if text_list is not None else image_list)
    text_list = text_list if text_list is not None else [None] * n
    image_list = image_list if image_list is not None else [None] * n
    for i, (text, image) in enumerate(zip(text_list, image_list)):
        if text is not None and not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string or None, got {type(text).__name__}: {text!r:.60}")
        if image is None and text is None:
            raise InputError(f"row {i} has neither a text nor an image")
        if image is not None:
            imgs.check_image(image, f"images[{i}]")
    single = (text_single or texts is None) and (image_single or images is None)
    return list(zip(text_list, image_list)), single
