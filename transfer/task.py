"""The task protocol between the command line and the benchmark families.

The CLI checks every input, reads the checkpoint once into an :class:`~mae_core.checkpoint.EncoderHandle`,
resolves the config and the benchmarks a run needs first, and calls the family's ``run(bench, cfg, ctx)`` with
a :class:`RunContext`. The family returns an :class:`Outcome`; the CLI adds the subset (the registry's rule) and
writes the run record. A family that trains describes its run as a :class:`TrainPlan` (model, loaders, evaluator,
optimiser, schedule, what to save) and :func:`execute` runs it on the shared engine."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mae_core import engine
from mae_core.checkpoint import EncoderHandle, save_ours
from mae_core.errors import CheckpointError

from .optim import adamw_encoder_and_head


@dataclass
class RunContext:
    encoder: EncoderHandle          # the user's checkpoint, read once
    smoke: bool
    work_dir: str
    resume: bool
    eval_only: bool
    launcher: str
    classifier: EncoderHandle = None  # a benchmark that ``requires`` a trained model: that model, read once


@dataclass
class Outcome:
    """What a family hands back; the CLI turns it into a run record."""
    metrics: dict
    settings: dict                  # what changes a number's meaning
    data: dict                      # dataset, split, num_images, root (the CLI adds the subset)
    model: dict = field(default_factory=dict)  # extra model fields, e.g. the fine-tuned checkpoint
    incomplete: bool = False        # a published folder was missing (ImageNet-C with partial=True)
    samples: dict = None            # what each evaluated image contributed (rank 0; :mod:`transfer.intervals`)


def image_samples(kind: str, paths, root=None, **arrays) -> dict:
    """The samples of ``kind`` for images ``paths`` (one per sample, in order; ids relative to ``root``). An image
    may recur (ImageNet-C has each in every corruption and severity): it is named once in ``names`` and
    ``image`` indexes the names."""
    ids = [str(Path(p).relative_to(root)) if root and Path(p).is_relative_to(root) else str(p) for p in paths]
    names = sorted(set(ids))
    index = {n: i for i, n in enumerate(names)}
    return dict(kind=np.array(kind), names=np.array(names), image=np.array([index[i] for i in ids], dtype=np.int32),
                **arrays)


@dataclass
class TrainPlan:
    """One family's run for the engine. Under ``--eval-only`` only ``val_loader`` and ``evaluator`` are used."""
    model: object                   # an mmengine BaseModel
    val_loader: object
    evaluator: object
    train_loader: object = None
    train_args: dict = field(default_factory=dict)   # train_cfg, optim_wrapper, param_scheduler
    train_hooks: list = field(default_factory=list)  # e.g. the lr schedule of fb/mae's recipes
    by_epoch: bool = True
    checkpoint_interval: int = 1
    save_as: str = None             # file name in the work dir for the trained model (None: not saved)
    save_module: object = None      # whose state dict is saved
    save_meta: dict = field(default_factory=dict)


def execute(name: str, cfg, ctx: RunContext, plan: TrainPlan):
    """Train (unless ``--eval-only``) and evaluate -> (metrics, extra model fields). Rank 0 saves the trained
    model in our format, with the encoder's arch and pre-training settings in its meta."""
    kwargs = engine.runner_kwargs(ctx.work_dir, ctx.launcher, cfg.seed, ctx.resume, name=name, by_epoch=plan.by_epoch,
                                  checkpoint_interval=plan.checkpoint_interval, log_interval=cfg.get('log_interval', 10),
                                  keep_checkpoints=cfg.get('keep_checkpoints', 1))
    train_loader = None if ctx.eval_only else plan.train_loader
    metrics = engine.run(plan.model, kwargs, train_loader, plan.val_loader, plan.evaluator,
                         hooks=[] if ctx.eval_only else plan.train_hooks, **({} if ctx.eval_only else plan.train_args))
    extra = dict(work_dir=ctx.work_dir)
    if train_loader is not None and plan.save_as and engine.is_main_process():
        meta = dict(arch=ctx.encoder.arch, **plan.save_meta, pretrain=ctx.encoder.meta)
        path = save_ours(Path(ctx.work_dir) / plan.save_as, plan.save_module.state_dict(), meta)
        extra['finetuned_checkpoint'] = str(path)
    return metrics, extra


def iteration_train_args(model, encoder, cfg, schedule) -> dict:
    """Detection and segmentation: ``cfg.max_iters`` iterations, AdamW with layer decay on the encoder, the
    family's lr ``schedule``, one validation at the end."""
    return dict(train_cfg=dict(by_epoch=False, max_iters=cfg.max_iters, val_interval=cfg.max_iters),
                optim_wrapper=adamw_encoder_and_head(model, encoder, cfg.optim), param_scheduler=schedule or None)


def load_task_weights(model, ctx: RunContext):
    """``--eval-only`` of a detector or segmenter this suite trained: its whole state dict, loaded strictly."""
    if ctx.encoder.task_state_dict is None:
        raise CheckpointError(f'{ctx.encoder.path}: --eval-only needs a detector or segmenter saved by this suite '
                              '(its meta names encoder_prefix)')
    model.load_state_dict(ctx.encoder.task_state_dict, strict=True)
