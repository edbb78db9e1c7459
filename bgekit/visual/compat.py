"""FlagEmbedding's research ``Visualized_BGE`` (``research/visual_bge``): its constructor, its methods, its outputs.

The module is the reference's layout (``bge_embeddings``, ``bge_encoder``, ``model_visual``, ``visual_proj``),
so ``state_dict()`` keys are the reference's. Differences on purpose (docs/compat.md, "Visualized-BGE"):

- where the reference crashes, ``encode`` truncates a text to the position limit (512 tokens alone, 512 minus
  the image tokens next to an image) with a warning, and refuses several texts with one image with a clear error;
- ``encode``'s image may also be a PIL image or a uint8 array; ``encode`` runs without autograd;
- the tower comes from the text model's name as in the reference, or from an EVA-CLIP JSON beside the
  checkpoint (the reference knows only the two published names); no ``'bge' in model_name_bge`` assertion;
- training (``forward`` in train mode, ``negatives_cross_device``) is not implemented: a clear error.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch

from bgekit.errors import InputError, UsageError
from bgekit.visual import config as _config
from bgekit.visual import images as _images
from bgekit.visual.model import (
    VisualBGEModel,
    check_weights_file,
    load_weights,
    read_state_dict,
)

logger = logging.getLogger(__name__)


class Visualized_BGE(VisualBGEModel):  # the reference's class name, underscore included
    """Visualized-BGE with the reference's signature.

    Args:
        model_name_bge: the text model (``BAAI/bge-base-en-v1.5``, ``BAAI/bge-m3``, or a folder with its
            config.json and tokenizer); it also selects the vision tower.
        model_weight: the ``.pth`` checkpoint.
        normlized: L2-normalise outputs (the reference's spelling).
        sentence_pooling_method: "cls" or "mean".
        negatives_cross_device, temperature: training options; only the defaults apply here.
        from_pretrained: a local folder to read the text config and tokenizer from instead.

    Example:
        >>> model = Visualized_BGE(model_name_bge="../shared/golden/models/visual-bge/bge-tiny",
        ...                        model_weight="../shared/golden/models/visual-bge/Visualized_bge-tiny.pth").eval()
        >>> model.encode(image="../shared/golden/images/rgb_64x64.png", text="at night").shape
        torch.Size([1, 32])
    """

    def __init__(self, model_name_bge: str | None = None, model_weight=None, normlized: bool = True,
                 sentence_pooling_method: str = "cls", negatives_cross_device: bool = False,
                 temperature: float = 0.02, from_pretrained=None):
        from transformers import AutoConfig

        from bgekit import backends

        if not isinstance(model_name_bge, (str, os.PathLike)):
            raise TypeError(f"model_name_bge must be the text model's name or folder, got {model_name_bge!r}")
        if model_weight is None:
            raise TypeError("model_weight is required: the Visualized-BGE .pth checkpoint")
        check_weights_file(model_weight)
        if sentence_pooling_method not in ("cls", "mean"):
            raise UsageError(f"unknown sentence_pooling_method {sentence_pooling_method!r}; valid: cls, mean")
        if negatives_cross_device:
            raise UsageError("negatives_cross_device=True is a training option; bgekit's Visualized_BGE runs "
                             "inference only")
        path = backends.locate(os.fspath(from_pretrained or model_name_bge))
        vision = _config.resolve(os.fspath(model_name_bge), os.fspath(model_weight))
        state = read_state_dict(os.fspath(model_weight))
        super().__init__(AutoConfig.from_pretrained(path), vision)
        self._extras = load_weights(self, state, os.fspath(model_weight))
        self.model_name_bge = model_name_bge
        self.hidden_dim = self.text_config.hidden_size
        self.depth = self.text_config.num_hidden_layers
        self.normlized = normlized
        self.sentence_pooling_method = sentence_pooling_method
        self.temperature = temperature if normlized else 1.0
        self.negatives_cross_device = False
        self.tokenizer = backends.load_tokenizer(path)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.to(self.device)
        self.dtype = self.visual_proj.weight.dtype

    # ------------------------------------------------------------------ the reference's methods
    def preprocess_val(self, image) -> torch.Tensor:
        """A PIL image -> float32 pixels (3, S, S), as the reference's evaluation transform."""
        return torch.from_numpy(_images.preprocess(image, self.vision.image_size))

    def encode(self, image=None, text=None):
        """One image (path, file object, PIL image or array) and/or text (a string or list) -> tensor (B, D).

        Returns None when both are None, as the reference.
        """
        if image is None and text is None:
            return None
        with torch.no_grad():
            if image is None:
                return self.encode_text(self._tokenize(text, self.text_limit))
            pixels = self.preprocess_val(_open(image)).unsqueeze(0).to(self.device)
            if text is None:
                return self.encode_image(pixels)
            texts = [text] if isinstance(text, str) else text
            if not isinstance(texts, (list, tuple)) or len(texts) != 1:
                n = len(texts) if isinstance(texts, (list, tuple)) else type(texts).__name__
                raise InputError(f"encode(image=..., text=...) pairs one image with one text, got {n} texts; for "
                                 "batches use bgekit.VisualEmbedder.encode(images=[...], texts=[...]) or "
                                 "encode_mm(pixel batch, tokenized texts)")
            return self.encode_mm(pixels, self._tokenize(texts, self.composed_limit))

    def encode_text(self, texts) -> torch.Tensor:
        """Tokenized texts (``input_ids``, ``attention_mask``) -> (B, D)."""
        mask = texts["attention_mask"]
        return self._reps(self.text_states(texts["input_ids"], mask), mask)

    def encode_mm(self, images: torch.Tensor, texts) -> torch.Tensor:
        """Pixel batch (B, 3, S, S) and tokenized texts (B rows) -> composed vectors (B, D)."""
        hidden, mask = self.composed_states(images, texts["input_ids"], texts["attention_mask"])
        return self._reps(hidden, mask)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor | None:
        """Pixel batch (B, 3, S, S) -> image vectors (B, D): composed with an empty text."""
        if images is None:
            return None
        prompts = self.tokenizer([""] * images.shape[0], return_tensors="pt", padding=True).to(images.device)
        return self.encode_mm(images, prompts)

    def img_token_embedding(self, images: torch.Tensor) -> torch.Tensor | None:
        """Raw EVA tokens (B, 1 + P, W) of the last block."""
        return None if images is None else self.image_tokens(images)

    def sentence_embedding(self, hidden_state: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.sentence_pooling_method == "mean":
            return (hidden_state * mask.unsqueeze(-1).float()).sum(dim=1) / mask.sum(dim=1, keepdim=True).float()
        return hidden_state[:, 0]

    def compute_similarity(self, q_reps: torch.Tensor, p_reps: torch.Tensor) -> torch.Tensor:
        return q_reps @ (p_reps.transpose(0, 1) if p_reps.dim() == 2 else p_reps.transpose(-2, -1))

    def forward(self, mm_it_query=None, image_candidate=None, text_candidate=None, text_query=None,
                mm_it_candidate=None, task_type=None):
        """Scores of the reference's two stage-2 tasks, in eval mode (training is not implemented)."""
        if self.training:
            raise NotImplementedError("bgekit's Visualized_BGE does not train; call .eval() before scoring")
        if task_type == "edit_image":
            q, c = self.encode_mm(mm_it_query[0], mm_it_query[1]), self.encode_image(image_candidate)
        elif task_type == "t2it":
            q, c = self.encode_text(text_query), self.encode_mm(mm_it_candidate[0], mm_it_candidate[1])
        else:
            raise UsageError(f"unknown task_type {task_type!r}; valid: edit_image, t2it")
        return {"loss": None, "scores": self.compute_similarity(q, c), "q_reps": q, "c_reps": c}

    def save(self, output_dir: str) -> None:
        """Write ``Visualized_BGE.pth`` in the reference's full layout (loadable by the reference)."""
        torch.save({**self.state_dict(), **self._extras}, os.path.join(output_dir, "Visualized_BGE.pth"))

    # ------------------------------------------------------------------ internals
    def _reps(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        reps = self.sentence_embedding(hidden, mask)
        return torch.nn.functional.normalize(reps, dim=-1) if self.normlized else reps.contiguous()

    def _tokenize(self, text: Any, limit: int):
        if not isinstance(text, str) and not (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)):
            raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")
        text = text if isinstance(text, str) else list(text)
        longest = max(len(ids) for ids in self.tokenizer(text if isinstance(text, list) else [text])["input_ids"]) \
            if text else 0
        if longest > limit:
            logger.warning("a text of %d tokens is truncated to %d, the model's position limit (the reference "
                           "raises an error here)", longest, limit)
        return self.tokenizer(text, return_tensors="pt", padding=True, truncation=True,
                              max_length=limit).to(self.device)


def _open(image: Any):
    """A path, an open file, a PIL image or an array -> a PIL image."""
    if hasattr(image, "read"):
        from PIL import Image

        return Image.open(image)
    return _images.open_image(image, "image")
