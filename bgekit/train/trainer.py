"""One Hugging Face ``Trainer`` subclass for grouped training (embedders and rerankers), with safe saving.

The Trainer brings fp16/bf16, gradient accumulation, activation (gradient) checkpointing, DeepSpeed and FSDP,
logging, checkpoints and resume. :class:`GroupTrainer` adds what grouped training needs:

- batches come from a :class:`~bgekit.train.sampler.GroupBatchSampler` (same-source batches, per-epoch draws);
- the model computes its own loss: ``model(**batch)`` returns ``{"loss": ...}``; a ``step`` argument, if the
  model's ``forward`` has one, receives the global optimizer step (resume-safe schedules);
- saving writes a folder the bgekit loaders read. The model provides ``save_to(folder, state_dict=None)``
  (weights, tokenizer, ``bgekit_spec.json``) and ``load_from(folder)`` (used to resume);
- nothing half-written ever appears under its final name. A model folder is written into a hidden staging
  folder, then its files are moved into place with ``bgekit_spec.json`` last (removed first): a folder holding
  ``bgekit_spec.json`` is complete. A checkpoint (model plus optimizer, scheduler, RNG and trainer state) is
  written whole under ``.bgekit-staging/`` and renamed to ``checkpoint-N`` at the end, so a run killed at
  any moment resumes from its last complete checkpoint.
"""
from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
from typing import Any, Callable

from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from bgekit.registry import SPEC_FILE

logger = logging.getLogger(__name__)

STAGING_DIR = ".bgekit-staging"
TMP_PREFIX = ".tmp-save-"


def replace_dir(src: str, dst: str) -> None:
    """Move folder ``src`` to ``dst`` (same filesystem), replacing an existing ``dst``."""
    old = None
    if os.path.exists(dst):
        old = os.path.join(os.path.dirname(dst), f"{TMP_PREFIX}old-{os.path.basename(dst)}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_folder(target: str, write: Callable[[str], Any], marker: str = SPEC_FILE) -> str:
    """Write a model folder through a staging folder; ``marker`` is removed first and moved in last.

    Args:
        target: the folder to fill (created if needed; other entries in it, e.g. checkpoints, are kept).
        write: called with the staging folder; writes every file of the model there.
        marker: the file whose presence means "complete".

    Returns:
        ``target``.
    """
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(target):
        if name.startswith(TMP_PREFIX):
            shutil.rmtree(os.path.join(target, name), ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target)
    try:
        write(staging)
        names = sorted(os.listdir(staging), key=lambda n: n == marker)
        if os.path.exists(os.path.join(target, marker)):
            os.remove(os.path.join(target, marker))
        mode = 0o666 & ~_umask()
        for name in names:
            src, dst = os.path.join(staging, name), os.path.join(target, name)
            if os.path.isdir(src):
                replace_dir(src, dst)
            else:
                os.chmod(src, mode)  # temporary files are private (0600); a model is as readable as any file
                os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class GroupTrainer(Trainer):
    """``transformers.Trainer`` for models that take grouped batches and return their own loss.

    Args:
        model: an ``nn.Module`` with ``forward(**batch) -> {"loss": ...}``, ``save_to`` and ``load_from``.
        args: ``TrainingArguments`` (or a subclass).
        train_dataset: a :class:`~bgekit.train.data.GroupDataset`.
        data_collator: turns a list of TrainGroups into the model's keyword arguments.
        batch_sampler: a :class:`~bgekit.train.sampler.GroupBatchSampler` over ``train_dataset``.
        processing_class: the tokenizer (kept by the Trainer; the model saves it).
        callbacks: extra ``TrainerCallback`` objects.
    """

    def __init__(self, model, args, train_dataset, data_collator, batch_sampler, processing_class=None, callbacks=None):
        super().__init__(model=model, args=args, train_dataset=train_dataset, data_collator=data_collator,
                         processing_class=processing_class, callbacks=callbacks)
        self.batch_sampler = batch_sampler
        self._staging_root: str | None = None
        self._pass_step = "step" in inspect.signature(model.forward).parameters

    # ------------------------------------------------------------------ data
    def get_train_dataloader(self):
        from torch.utils.data import DataLoader

        workers = self.args.dataloader_num_workers
        loader = DataLoader(self.train_dataset, batch_sampler=self.batch_sampler, collate_fn=self.data_collator,
                            num_workers=workers, pin_memory=self.args.dataloader_pin_memory,
                            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
                            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None)
        return self.accelerator.prepare(loader)

    def _run_epoch(self, model, epoch, *args, **kwargs):
        # The sampler's draws depend on the epoch; set it however Accelerate wrapped the sampler (resume included).
        self.batch_sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self._pass_step:
            inputs = {**inputs, "step": self.state.global_step}
        outputs = model(**inputs)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    # ------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model)
        logger.info("Saving model to %s", output_dir)

        def write(folder: str) -> None:
            from bgekit.io import atomic_write_text

            model.save_to(folder, state_dict=state_dict)
            atomic_write_text(os.path.join(folder, "training_args.json"), self.args.to_json_string() + "\n")

        publish_folder(output_dir, write)

    def _get_output_dir(self, trial) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_DIR)
        if self.args.should_save:
            shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging_root = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            replace_dir(os.path.join(staging, name), os.path.join(run_dir, name))
            if not os.listdir(staging):
                os.rmdir(staging)
            best = self.state.best_model_checkpoint
            if best and best.startswith(staging):
                self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if not os.path.isfile(os.path.join(resume_from_checkpoint, SPEC_FILE)):
            raise ValueError(f"{resume_from_checkpoint!r} is not a complete bgekit checkpoint (no {SPEC_FILE}); "
                             "resume from a checkpoint-N folder written by bgekit")
        logger.info("Loading model weights from %s", resume_from_checkpoint)
        self.accelerator.unwrap_model(model if model is not None else self.model).load_from(resume_from_checkpoint)
