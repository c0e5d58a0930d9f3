"""One reader per published classification format: ImageNet-style wnid folders (also ImageNet-A/R/Sketch and
each ImageNet-C corruption/severity), iNaturalist 2017-2019 COCO-style JSON, Places365-Standard and Places205
split lists."""
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mae_core.data import IMAGE_SUFFIXES, imagenet_class_index
from mae_core.errors import DataError, MissingFile

# ImageNet-C: the 15 corruptions of mCE in the release's order, the 4 extra ones (never in mCE), severities
IMAGENET_C_CORRUPTIONS = ('gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur',
                          'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast',
                          'elastic_transform', 'pixelate', 'jpeg_compression')
IMAGENET_C_EXTRAS = ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
SEVERITIES = (1, 2, 3, 4, 5)


@dataclass
class Split:
    samples: list       # [(Path, int)]
    num_classes: int
    root: Path

    def check_labels(self, where):
        bad = next(((p, y) for p, y in self.samples if not 0 <= y < self.num_classes), None)
        if bad:
            raise DataError(f'{where}: label {bad[1]} of {bad[0]} is outside 0..{self.num_classes - 1}')
        return self


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingFile(f'{path}: not found (expected {what})')
    return path


def read_wnid_folders(folder) -> Split:
    """``folder/<wnid>/*``: labels from the standard 1000-class index (never the order of folders present)."""
    folder = _need(Path(folder), 'class folders named by ImageNet wnid, e.g. n01440764/')
    index = imagenet_class_index()
    samples = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        if d.name not in index:
            raise DataError(f'{d}: folder name {d.name!r} is not an ImageNet-1K wnid')
        samples += [(f, index[d.name]) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not samples:
        raise MissingFile(f'{folder}: no images in wnid sub-folders')
    return Split(samples, 1000, folder)


def read_imagenet(root, split, **_) -> Split:
    """ImageNet-1K: ``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*.JPEG``."""
    return read_wnid_folders(_need(Path(root) / split, f'the ImageNet {split}/ folder of wnid folders'))


def read_inat(root, split, year, **_) -> Split:
    """iNaturalist 2017/2018/2019: ``root/{train,val}<year>.json`` (COCO style) with file names relative to
    ``root``; the official val split, labels = category ids in sorted order."""
    path = _need(Path(root) / f'{split}{year}.json', f'the iNaturalist {year} {split} annotation file')
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
        files = {im['id']: im['file_name'] for im in data['images']}
        cats = sorted(c['id'] for c in data['categories'])
        label_of = {c: i for i, c in enumerate(cats)}
        samples = []
        for a in data['annotations']:
            if a['category_id'] not in label_of:
                raise DataError(f'{path}: annotation of image {a["image_id"]} has category_id {a["category_id"]}, '
                                 'which is not in categories')
            samples.append((Path(root) / files[a['image_id']], label_of[a['category_id']]))
    except (KeyError, TypeError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise DataError(f'{path}: not an iNaturalist COCO-style file (missing or bad {e})') from None
    return Split(samples, len(cats), Path(root))


def _read_list(list_file: Path, image_dir: Path, num_classes: int) -> Split:
    samples = []
    try:
        text = _need(list_file, 'a split list of "path label" lines').read_text(encoding='utf-8')
    except UnicodeDecodeError as e:
        line = _need(list_file, '').read_bytes()[:e.start].count(b'\n') + 1
        raise DataError(f'{list_file}:{line}: not UTF-8 text ({e.reason})') from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rel, label = line.rsplit(maxsplit=1)
            samples.append((image_dir / rel.lstrip('/'), int(label)))
        except ValueError:
            raise DataError(f'{list_file}:{n}: expected "path label", got {line!r}') from None
    return Split(samples, num_classes, image_dir).check_labels(list_file)


def read_places365(root, split, **_) -> Split:
    """Places365-Standard: ``places365_train_standard.txt`` over ``data_256/`` and ``places365_val.txt``
    over ``val_256/`` (the small-image release; the large one has the same lists)."""
    root = Path(root)
    if split == 'train':
        return _read_list(root / 'places365_train_standard.txt', root / 'data_256', 365)
    return _read_list(root / 'places365_val.txt', root / 'val_256', 365)


def read_places205(root, split, **_) -> Split:
    """Places205: ``trainvalsplit_places205/{train,val}_places205.csv`` ("path label") over ``images256/``."""
    root = Path(root)
    return _read_list(root / 'trainvalsplit_places205' / f'{split}_places205.csv', root / 'images256', 205)


READERS = {'imagenet': read_imagenet, 'inat': read_inat, 'places365': read_places365, 'places205': read_places205}


def check_files_exist(paths, listed_in):
    """Preflight: every image a list or annotation file names is there (seconds even for Places365's 1.8 M)."""
    missing = next((p for p in paths if not os.path.exists(p)), None)
    if missing is not None:
        raise DataError(f'{listed_in}: names {missing}, which does not exist (--cfg-options preflight=False skips '
                        'this check)')


def read_split(spec: dict, split: str, preflight: bool = True) -> Split:
    """Read ``split`` of the dataset a config's ``dataset`` section describes; with ``preflight``, check that
    every image it names exists before any work starts."""
    fmt = spec['format']
    if fmt not in READERS:
        raise DataError(f'dataset.format {fmt!r} is not one of {sorted(READERS)}')
    if not spec.get('root'):
        raise DataError(f'no data root for dataset {spec.get("name", fmt)}: pass --data-root (or --smoke)')
    _need(Path(spec['root']), f'the {spec.get("name", fmt)} dataset root')
    s = READERS[fmt](spec['root'], split, **{k: v for k, v in spec.items() if k not in ('root', 'format')})
    if spec.get('num_classes') not in (None, s.num_classes):
        raise DataError(f'{s.root}: found {s.num_classes} classes, the config says dataset.num_classes='
                         f'{spec["num_classes"]}')
    if preflight and fmt != 'imagenet':  # ImageNet's samples come from listing the folders themselves
        check_files_exist((p for p, _ in s.samples), f'{s.root} ({split} list of {spec.get("name", fmt)})')
    return s


def read_imagenet_c(root, extras: bool, partial: bool):
    """The released layout ``root/<corruption>/<1..5>/<wnid>/`` -> ([(corruption, severity, folder)], missing).

    A missing one of the 15 x 5 mCE folders is an error listing everything missing, unless ``partial``."""
    root = Path(root)
    found, missing = [], []
    for c in IMAGENET_C_CORRUPTIONS + (IMAGENET_C_EXTRAS if extras else ()):
        for s in SEVERITIES:
            folder = root / c / str(s)
            if folder.is_dir():
                found.append((c, s, folder))
            elif c in IMAGENET_C_CORRUPTIONS:
                missing.append(f'{c}/{s}')
    if missing and not partial:
        raise MissingFile(f'{root}: ImageNet-C is incomplete, missing {len(missing)} of 75 corruption/severity '
                          f'folders: {", ".join(missing)}. Pass --cfg-options partial=True for a run marked partial')
    if not found:
        raise MissingFile(f'{root}: no <corruption>/<severity>/<wnid>/ folders of ImageNet-C found')
    return found, missing


def timm_class_subset(name: str) -> list:
    """The sorted 1000-class indices of a 200-class ImageNet variant (``imagenet_a``, ``imagenet_r``), as timm
    ships them in ``timm/data/_info/<name>_indices.txt``."""
    text = resources.files('timm.data').joinpath(f'_info/{name}_indices.txt').read_text()
    return [int(line) for line in text.split()]
