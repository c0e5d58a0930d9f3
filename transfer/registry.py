"""The benchmark registry: every fact about a benchmark in one entry, in the order ``run_transfer.py all`` runs
them. The registry is data only; the command line maps each family to the module that runs it.

Adding a benchmark of an existing family = one entry here + ``eval_configs/<name>.py`` and
``eval_configs/<name>_smoke.py`` (+ a reader in ``transfer/datasets`` if its format is new)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .datasets import smoke

CONFIG_DIR = Path(__file__).resolve().parent.parent / 'eval_configs'
FAMILIES = ('classification', 'robustness', 'detection', 'segmentation')
SUBSETS = ('full', 'partial', 'smoke')  # only 'full' stands beside the paper's numbers


@dataclass(frozen=True)
class Benchmark:
    name: str
    family: str                # one of FAMILIES
    dataset: str
    metrics: tuple             # the first is the headline
    eval_size: int             # images in the published evaluation set (ImageNet-C: the 15 x 5 of mCE)
    paper_table: str           # where the paper reports it (shown by `run_transfer.py list`)
    smoke_data: Callable       # (cfg.dataset) -> the generated root in the benchmark's real format
    table_row: tuple = None    # (table stem, row) for the per-dataset tables: Table 6, robustness
    class_subset: str = None   # timm's index list, when a 1000-way model is scored on a 200-class subset
    requires: tuple = ()       # benchmarks whose trained model it evaluates (the CLI runs or finds them first)
    config_dir: Path = CONFIG_DIR

    @property
    def headline(self) -> str:
        return self.metrics[0]

    @property
    def config(self) -> Path:
        return self.config_dir / f'{self.name}.py'

    @property
    def smoke_config(self) -> Path:
        return self.config_dir / f'{self.name}_smoke.py'

    def subset(self, num_images: int, smoke: bool, incomplete: bool = False) -> str:
        """The one subset rule: 'smoke' on generated data; 'full' only on exactly the published evaluation
        set; 'partial' otherwise (fewer images, or folders missing)."""
        if smoke:
            return 'smoke'
        return 'full' if num_images == self.eval_size and not incomplete else 'partial'


def _classification(name, dataset, eval_size, table, table_row=None):
    return Benchmark(name, 'classification', dataset, ('top1', 'top5'), eval_size, table, smoke.for_dataset,
                     table_row=table_row)


def _robustness(name, dataset, metrics, eval_size, make, row, class_subset=None):
    return Benchmark(name, 'robustness', dataset, metrics, eval_size, 'robustness table', lambda spec: make(),
                     table_row=('robustness', row), class_subset=class_subset, requires=('in1k_finetune',))


BENCHMARKS = {b.name: b for b in [
    _classification('in1k_finetune', 'ImageNet-1K', 50000, 'Table 3; Table 1 ft; Fig. 5/7 ft; Table 7'),
    _classification('in1k_linprobe', 'ImageNet-1K', 50000, 'Table 1 lin; Fig. 5/7 lin'),
    _classification('in1k_partial_ft', 'ImageNet-1K', 50000, 'Fig. 9'),
    _classification('inat2017', 'iNaturalist 2017', 95986, 'Table 6', ('table6_classification', 'iNat 2017')),
    _classification('inat2018', 'iNaturalist 2018', 24426, 'Table 6', ('table6_classification', 'iNat 2018')),
    _classification('inat2019', 'iNaturalist 2019', 3030, 'Table 6', ('table6_classification', 'iNat 2019')),
    _classification('places205', 'Places205', 20500, 'Table 6', ('table6_classification', 'Places205')),
    _classification('places365', 'Places365-Standard', 36500, 'Table 6', ('table6_classification', 'Places365')),
    _robustness('imagenet_c', 'ImageNet-C', ('mCE', 'mean_error'), 50000 * 75, smoke.imagenet_c, 'IN-Corruption ↓'),
    _robustness('imagenet_a', 'ImageNet-A', ('top1',), 7500, lambda: smoke.robustness_folders('adversarial'),
                'IN-Adversarial', class_subset='imagenet_a'),
    _robustness('imagenet_r', 'ImageNet-R', ('top1',), 30000, lambda: smoke.robustness_folders('rendition'),
                'IN-Rendition', class_subset='imagenet_r'),
    _robustness('imagenet_sketch', 'ImageNet-Sketch', ('top1',), 50889, lambda: smoke.robustness_folders('sketch'),
                'IN-Sketch'),
    Benchmark('coco_maskrcnn', 'detection', 'COCO 2017', ('APbox', 'APmask'), 5000, 'Table 4; Table 7',
              lambda spec: smoke.coco()),
    Benchmark('ade20k_upernet', 'segmentation', 'ADE20K', ('mIoU', 'aAcc'), 2000, 'Table 5; Table 7',
              lambda spec: smoke.ade20k()),
]}
