"""The architecture's rules, checked on the code itself: the import layering (parsed with ast), a new benchmark
being one registry entry plus its configs, the user's checkpoint read once per run, and input errors raised in
DataLoader workers reaching the user as the same one line."""
import ast
import builtins
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO
from mae_core.errors import UnreadableImage, UserError
from mae_core.record import read_record
from transfer import cli, registry

PACKAGES = ('mae_core', 'transfer')
ENTRY_POINTS = {'mae_core.cli', 'transfer.cli', 'transfer.demo'}  # may defer imports to keep --help fast
READERS = 'transfer.datasets'
READER_MAY_IMPORT = {'mae_core.data', 'mae_core.errors', 'mae_core.seeding'}  # no model, no engine


# ==================================================================== the import checker
def module_names(root: Path) -> dict:
    """{dotted module name: file} for every .py file of the project's packages under ``root``."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob('*.py')):
            parts = path.relative_to(root).with_suffix('').parts
            out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return out


def project_imports(name: str, path: Path, modules: dict):
    """[(imported project module, inside a function?, line)] of one module; third-party imports as
    ('third-party:<top name>', ...)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ''
                if child.level:
                    anchor = package.split('.')[:len(package.split('.')) - (child.level - 1)]
                    base = '.'.join(anchor + ([base] if base else []))
                targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base for a in child.names]
            else:
                visit(child, inside)
                continue
            for t in targets:
                top = t.split('.')[0]
                if top in PACKAGES:
                    while t not in modules and '.' in t:  # `import a.b.c` of a name inside a module
                        t = t.rpartition('.')[0]
                    found.append((t, in_function, child.lineno))
                else:
                    found.append((f'third-party:{top}', in_function, child.lineno))

    visit(tree, False)
    return found


def import_violations(root: Path) -> list:
    """Every breach of the layering rules under ``root`` (ARCHITECTURE.md), one line each."""
    modules = module_names(root)
    graph, problems = {}, []
    for name, path in modules.items():
        edges = project_imports(name, path, modules)
        graph[name] = {t for t, _, _ in edges if not t.startswith('third-party:') and t != name}
        for target, in_function, line in edges:
            where = f'{path.relative_to(root)}:{line}'
            if name.startswith('mae_core') and target.startswith('transfer'):
                problems.append(f'{where}: mae_core imports {target}')
            if name.startswith(READERS) and not (target.startswith(READERS) or target in READER_MAY_IMPORT
                                                 or target.startswith('third-party:')):
                problems.append(f'{where}: reader imports {target}')
            if name.startswith(READERS) and target == 'third-party:mmengine':
                problems.append(f'{where}: reader imports the engine (mmengine)')
            if in_function and not target.startswith('third-party:') and name not in ENTRY_POINTS:
                problems.append(f'{where}: project import of {target} inside a function')
    # cycles: depth-first search over every edge, module-level and deferred alike
    state, stack = {}, []

    def dfs(n):
        state[n] = 'open'
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 'open':
                problems.append('import cycle: ' + ' -> '.join(stack[stack.index(m):] + [m]))
            elif m not in state:
                dfs(m)
        stack.pop()
        state[n] = 'done'
    for n in sorted(graph):
        if n not in state:
            dfs(n)
    return list(dict.fromkeys(problems))  # `from x import a, b` would report twice


def test_the_project_keeps_its_import_rules():
    assert import_violations(REPO) == []


def _tree(tmp_path, files: dict) -> Path:
    for rel, text in {'mae_core/__init__.py': '', 'transfer/__init__.py': '',
                      'transfer/datasets/__init__.py': '', **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


@pytest.mark.parametrize('files, fault', [
    # the faults issue 11 found, each in a minimal tree
    ({'transfer/cli.py': 'from . import registry\n', 'transfer/registry.py': 'from . import robustness\n',
      'transfer/robustness.py': 'def f():\n    from . import cli\n'},
     'import cycle: transfer.cli -> transfer.registry -> transfer.robustness -> transfer.cli'),
    ({'mae_core/pretrain.py': 'def f():\n    from transfer.record import write_record\n',
      'transfer/record.py': ''}, 'mae_core imports transfer.record'),
    ({'mae_core/data.py': 'from .engine import seeded_draws\n', 'mae_core/engine.py': 'import mmengine\n',
      'transfer/datasets/smoke.py': 'from mae_core.data import cached\nfrom ..robustness import CORRUPTIONS\n',
      'transfer/robustness.py': ''}, 'reader imports transfer.robustness'),
    ({'transfer/datasets/coco.py': 'from mmengine.dataset import DefaultSampler\n'},
     'reader imports the engine (mmengine)'),
    ({'transfer/datasets/ade.py': 'from mae_core.engine import seeded_draws\n', 'mae_core/engine.py': ''},
     'reader imports mae_core.engine'),
    ({'transfer/robustness.py': 'def f():\n    from .record import read_records\n', 'transfer/record.py': ''},
     'project import of transfer.record inside a function'),
])
def test_the_import_checker_catches_each_fault(tmp_path, files, fault):
    problems = import_violations(_tree(tmp_path, files))
    assert any(fault in p for p in problems), problems


def test_entry_points_may_defer_imports_and_third_party_imports_are_free(tmp_path):
    root = _tree(tmp_path, {'transfer/cli.py': 'def main():\n    from . import tables\n', 'transfer/tables.py': '',
                            'transfer/x.py': 'def f():\n    import matplotlib\n'})
    assert import_violations(root) == []


# ==================================================================== a new benchmark
def test_a_new_benchmark_is_one_registry_entry_and_its_configs(tiny_checkpoint, tmp_path, monkeypatch):
    """A classification benchmark that is not in the suite, registered in a temporary registry with its two
    configs: `list` shows it, it runs end to end in smoke mode, and on data of exactly its published size
    (here the 80 generated val images) the record says 'full'."""
    configs = tmp_path / 'configs'
    configs.mkdir()
    base = REPO / 'eval_configs' / 'inat2019_smoke.py'
    (configs / 'birds_mini_smoke.py').write_text(f"_base_ = ['{base}']\nepochs = 1\n")
    (configs / 'birds_mini.py').write_text(f"_base_ = ['{base}']\nepochs = 1\n")  # its "paper" recipe, tiny
    bench = dataclasses.replace(registry.BENCHMARKS['inat2019'], name='birds_mini', dataset='Birds (mini)',
                                eval_size=80, paper_table='-', table_row=None, config_dir=configs)
    monkeypatch.setattr(cli, 'BENCHMARKS', {'birds_mini': bench})
    monkeypatch.chdir(tmp_path)
    assert cli.main(['list']) == 0
    common = ['--checkpoint', str(tiny_checkpoint[0]), '--records-dir', str(tmp_path / 'records')]
    assert cli.main(['birds_mini', '--smoke'] + common) == 0
    (smoke_record,) = (tmp_path / 'records' / 'birds_mini').glob('*.json')
    rec = read_record(smoke_record)
    assert rec['benchmark'] == 'birds_mini' and rec['data']['subset'] == 'smoke' and rec['data']['num_images'] == 80
    root = rec['config']['dataset']['root']
    assert cli.main(['birds_mini', '--data-root', root] + common) == 0
    full = [read_record(p) for p in (tmp_path / 'records' / 'birds_mini').glob('*.json') if p != smoke_record]
    assert [r['data']['subset'] for r in full] == ['full']


def test_the_subset_rule():
    b = registry.BENCHMARKS['imagenet_c']
    assert b.subset(50000 * 75, smoke=False) == 'full'
    assert b.subset(50000 * 75, smoke=False, incomplete=True) == 'partial'
    assert b.subset(100, smoke=False) == 'partial' and b.subset(50000 * 75, smoke=True) == 'smoke'
    assert {x.family for x in registry.BENCHMARKS.values()} <= set(registry.FAMILIES) == set(cli.FAMILIES)


# ==================================================================== the checkpoint is read once
@pytest.fixture
def opens(monkeypatch):
    """Counts builtins.open per resolved path."""
    counts, real_open = {}, builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)):
            key = str(Path(file).resolve())
            counts[key] = counts.get(key, 0) + 1
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, 'open', counting_open)
    return counts


def test_a_training_run_reads_the_checkpoint_once_and_hashes_it_in_one_pass(tiny_checkpoint, tmp_path,
                                                                            monkeypatch, opens):
    monkeypatch.chdir(tmp_path)
    status = cli.main(['in1k_linprobe', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--records-dir',
                       str(tmp_path / 'records'), '--cfg-options', 'epochs=1'])
    assert status == 0
    assert opens[str(tiny_checkpoint[0].resolve())] == 2  # torch.load once, sha256 once (was 3: resolve, sha, adapter)


def test_a_robustness_run_reads_each_checkpoint_once(smoke_all, tiny_checkpoint, tmp_path, monkeypatch, opens):
    """imagenet_a on a pre-trained checkpoint evaluates the model its in1k_finetune record saved: each file is
    loaded once and hashed once."""
    finetuned = smoke_all[0]['in1k_finetune']['model']['finetuned_checkpoint']
    records = tmp_path / 'records'  # the session's in1k_finetune record only: the shared dir stays as `all` left it
    (records / 'in1k_finetune').mkdir(parents=True)
    for p in (smoke_all[1] / 'in1k_finetune').glob('*.json'):
        shutil.copy(p, records / 'in1k_finetune' / p.name)
    monkeypatch.chdir(tmp_path)
    assert cli.main(['imagenet_a', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--records-dir',
                     str(records)]) == 0
    assert opens[str(tiny_checkpoint[0].resolve())] == 2 and opens[str(Path(finetuned).resolve())] == 2


# ==================================================================== errors from loader workers
class _BadImages(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise UnreadableImage(f'/data/img_{i}.jpg: unreadable image (truncated)')


def test_an_input_error_in_a_loader_worker_reaches_the_user_as_the_same_type_and_line():
    loader = torch.utils.data.DataLoader(_BadImages(), num_workers=1)
    with pytest.raises(UnreadableImage) as e:
        next(iter(loader))
    assert isinstance(e.value, UserError) and str(e.value) == '/data/img_0.jpg: unreadable image (truncated)'
