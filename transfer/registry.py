"""The benchmark registry: one plain dict of small dataclasses, in the order ``run_transfer.py all`` runs them.

Adding a benchmark = one entry here + ``eval_configs/<name>.py`` and ``eval_configs/<name>_smoke.py``
(+ a reader in ``transfer/datasets`` if its format is new)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import classification, detection, robustness, segmentation
from .datasets import smoke

CONFIG_DIR = Path(__file__).resolve().parent.parent / 'eval_configs'


@dataclass(frozen=True)
class Benchmark:
    name: str
    family: str
    dataset: str
    metrics: tuple
    paper_table: str
    run: Callable            # (bench, cfg, ctx) -> engine.Outcome
    smoke_data: Callable     # (cfg.dataset) -> generated root in the real format

    @property
    def headline(self) -> str:
        return self.metrics[0]

    @property
    def config(self) -> Path:
        return CONFIG_DIR / f'{self.name}.py'

    @property
    def smoke_config(self) -> Path:
        return CONFIG_DIR / f'{self.name}_smoke.py'


def _classification(name, dataset, table):
    return Benchmark(name, 'classification', dataset, ('top1', 'top5'), table, classification.run,
                     smoke.for_dataset)


def _robustness(name, dataset, metrics, make):
    return Benchmark(name, 'robustness', dataset, metrics, 'robustness table', robustness.run, lambda spec: make())


BENCHMARKS = {b.name: b for b in [
    _classification('in1k_finetune', 'ImageNet-1K', 'Table 3; Table 1 ft; Fig. 5/7 ft; Table 7'),
    _classification('in1k_linprobe', 'ImageNet-1K', 'Table 1 lin; Fig. 5/7 lin'),
    _classification('in1k_partial_ft', 'ImageNet-1K', 'Fig. 9'),
    _classification('inat2017', 'iNaturalist 2017', 'Table 6'),
    _classification('inat2018', 'iNaturalist 2018', 'Table 6'),
    _classification('inat2019', 'iNaturalist 2019', 'Table 6'),
    _classification('places205', 'Places205', 'Table 6'),
    _classification('places365', 'Places365-Standard', 'Table 6'),
    # after in1k_finetune: they evaluate the model it saved for the same pre-trained checkpoint
    _robustness('imagenet_c', 'ImageNet-C', ('mCE', 'mean_error'), smoke.imagenet_c),
    _robustness('imagenet_a', 'ImageNet-A', ('top1',), lambda: smoke.robustness_folders('adversarial')),
    _robustness('imagenet_r', 'ImageNet-R', ('top1',), lambda: smoke.robustness_folders('rendition')),
    _robustness('imagenet_sketch', 'ImageNet-Sketch', ('top1',), lambda: smoke.robustness_folders('sketch')),
    Benchmark('coco_maskrcnn', 'detection', 'COCO 2017', ('APbox', 'APmask'), 'Table 4; Table 7', detection.run,
              lambda spec: smoke.coco()),
    Benchmark('ade20k_upernet', 'segmentation', 'ADE20K', ('mIoU', 'aAcc'), 'Table 5; Table 7', segmentation.run,
              lambda spec: smoke.ade20k()),
]}
