"""Corpus encoding for evaluation, streamed: the documents are read and encoded a chunk at a time, and their
vectors are written to .npy files that the search then reads memory-mapped.

So neither the texts nor the vectors of a large corpus are ever all in memory: a chunk of ``EVAL_CHUNK``
documents is. The files are the index segment's (``dense.npy``; ``sparse_{indptr,indices,values}.npy`` and the
postings ``sparse_inv_*.npy``, see :mod:`bgekit.index.segment`), written with the same appenders. A chunk is large
(65,536 documents) so that the usual collections (SciFact, NFCorpus, FiQA...) are encoded in one call, exactly as
an in-memory encode batches them.

Example:
    >>> import tempfile
    >>> from bgekit.eval.data import load_folder
    >>> from bgekit.loading import load_embedder
    >>> data = load_folder("../shared/data/scifact").subset(2, 20)
    >>> folder = tempfile.mkdtemp()
    >>> files = encode_corpus_files(load_embedder("all-MiniLM-L6-v2"), data, ("dense",), folder, show_progress=False)
    >>> open_corpus_files(files).dense.shape
    (20, 384)
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

EVAL_CHUNK = 65536  # documents read and encoded per step


def encode_corpus_files(model: Any, data: Any, outputs: Sequence[str], folder: str, batch_size: int | None = None,
                        show_progress: bool = True) -> dict[str, str]:
    """Encode ``data``'s corpus as passages into files in ``folder``, a chunk at a time.

    Args:
        model: an embedder (BGE-M3 for the "sparse" output).
        data: a :class:`~bgekit.eval.data.RetrievalData` (its texts may stay in their file).
        outputs: "dense" and/or "sparse".
        folder: an existing, empty folder for the files.
        batch_size: encoding batch size (None: the model's).
        show_progress: a progress bar (the model's own for a one-chunk corpus, else one over all documents).

    Returns:
        ``{array name: path}`` for :func:`open_corpus_files` (and the embedding cache).
    """
    from tqdm.auto import tqdm

    from bgekit.eval.retrieval import encode
    from bgekit.index.dense import as_matrix
    from bgekit.index.arrays import NpyAppender
    from bgekit.index.sparse_files import SparseAppender

    total = len(data.doc_ids)
    one_chunk = total <= EVAL_CHUNK
    dense = None
    sparse = SparseAppender(folder) if "sparse" in outputs else None
    done = 0
    with tqdm(total=total, desc="Encoding corpus", unit="doc", disable=one_chunk or not show_progress) as bar:
        for docs in data.document_chunks(EVAL_CHUNK):
            enc = encode(model, docs, "passage", outputs, batch_size, show_progress if one_chunk else False)
            if "dense" in outputs:
                vectors = as_matrix(enc.dense, f"corpus embeddings (documents {done}..{done + len(docs) - 1})")
                if dense is None:
                    dense = NpyAppender(os.path.join(folder, "dense.npy"), np.float32, (vectors.shape[1],))
                dense.append(vectors)
            if sparse is not None:
                sparse.append(enc.sparse)
            done += len(docs)
            bar.update(len(docs))
    names = []
    if dense is not None:
        dense.close()
        names.append("dense.npy")
    if sparse is not None:
        names += sparse.close()
    return {name[:-len(".npy")]: os.path.join(folder, name) for name in names}


def open_corpus_files(files: Mapping[str, str]) -> Any:
    """The :class:`~bgekit.eval.retrieval.Encoded` corpus over ``{array name: path}`` files, memory-mapped: dense
    vectors as a read-only (N, D) memory map, sparse weights as a :class:`~bgekit.index.sparse.SparseIndex`."""
    from bgekit.eval.retrieval import Encoded
    from bgekit.index.sparse_files import open_sparse

    dense = np.load(files["dense"], mmap_mode="r") if "dense" in files else None
    sparse = None
    if "sparse_indptr" in files:
        rows = len(np.load(files["sparse_indptr"], mmap_mode="r")) - 1
        vocab = len(np.load(files["sparse_inv_indptr"], mmap_mode="r")) - 1
        sparse = open_sparse(lambda name: files[f"sparse_{name}"], rows, vocab, postings=True)
    return Encoded(dense, sparse)


def encode_corpus(model: Any, data: Any, outputs: Sequence[str], config: Any, scratch: str) -> tuple[Any, bool]:
    """The encoded corpus (:class:`~bgekit.eval.retrieval.Encoded`) of ``data`` with ``config`` (an
    :class:`~bgekit.eval.runner.EvalConfig`), memory-mapped from files: from the cache when ``config.cache_dir``
    holds it, else encoded a chunk at a time into the cache, or into ``scratch`` (a folder that lives as long as
    the search) without one. Returns (encoded, cache_hit)."""
    from bgekit.eval.retrieval import encoding_settings

    def encode_into(folder: str) -> dict[str, str]:
        return encode_corpus_files(model, data, outputs, folder, config.batch_size, config.show_progress)

    if config.cache_dir is None:
        return open_corpus_files(encode_into(scratch)), False
    from bgekit.eval.cache import EmbeddingCache, model_fingerprint

    path = getattr(model, "path", None)
    if not isinstance(path, str):
        raise ValueError(f"cannot cache embeddings of {type(model).__name__}: it has no model folder (.path)")
    cache = EmbeddingCache(config.cache_dir)
    settings = encoding_settings(model, "passage", outputs)
    key = cache.key(model_fingerprint(path), {**settings, "files": "streamed"}, data.corpus_fingerprint)
    arrays = cache.load(key, mmap=True)
    if arrays is not None:
        return open_corpus_files({name: cache.array_path(key, name) for name in arrays}), True
    try:  # encode next to the cache, so that the finished files are renamed into it
        os.makedirs(config.cache_dir, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".encoding-", dir=config.cache_dir)
    except OSError as e:
        logger.warning("could not write in the embedding cache %s (%s); the evaluation goes on without it",
                       config.cache_dir, e)
        return open_corpus_files(encode_into(scratch)), False
    try:
        files = encode_into(work)
        try:  # the cache is optional: a full disk or a read-only folder costs the cache, never the finished run
            cache.save(key, files, meta={"model": getattr(model, "model_name_or_path", None), "settings": settings,
                                         "corpus_fingerprint": data.corpus_fingerprint, "documents": len(data.doc_ids)})
            files = {name: cache.array_path(key, name) for name in files}
        except OSError as e:
            logger.warning("could not write the embedding cache in %s (%s); the evaluation goes on without it",
                           config.cache_dir, e)
            kept = os.path.join(scratch, "corpus")  # files not moved yet stay in use from the scratch folder
            files = {name: os.path.join(kept, os.path.basename(p)) if os.path.exists(p) else cache.array_path(key, name)
                     for name, p in files.items()}
            shutil.move(work, kept)
        return open_corpus_files(files), False
    finally:
        shutil.rmtree(work, ignore_errors=True)
