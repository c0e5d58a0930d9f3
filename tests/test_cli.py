"""run_transfer.py as a user runs it: list, bad input, one benchmark under torchrun, and `all`."""
import argparse
import dataclasses
import re
import shutil
import sys

import pytest

from conftest import REPO, run
from mae_core import cli as core_cli
from mae_core.record import read_record, read_records
from transfer import cli, compare, demo, registry, tables

RUN = [sys.executable, str(REPO / 'run_transfer.py')]


def test_list_names_every_benchmark_with_family_dataset_metrics_and_table():
    out = run(RUN + ['list']).stdout
    for b in registry.BENCHMARKS.values():
        line = next(l for l in out.splitlines() if l.startswith(b.name + ' '))
        assert b.family in line and b.dataset in line and ','.join(b.metrics) in line and b.paper_table in line


@pytest.mark.parametrize('args,message', [
    (['no_such_bench', '--checkpoint', 'x'], "unknown benchmark 'no_such_bench'"),
    (['in1k_linprobe', '--checkpoint', '/nonexistent.pth'], '--checkpoint /nonexistent.pth: no such file'),
    (['in1k_linprobe', '--checkpoint', '{ckpt}', '--data-root', '/nonexistent'], '--data-root /nonexistent: no such folder'),
    (['in1k_linprobe', '--checkpoint', '{ckpt}'], 'no data root: pass --data-root'),
    (['in1k_linprobe', '--checkpoint', '{ckpt}', '--config', '{bad_cfg}'], 'bad.py: unreadable config'),
    (['in1k_linprobe', '--checkpoint', '{ckpt}', '--smoke', '--cfg-options', 'optim.nope=1'],
     "--cfg-options optim.nope: the config has no key 'nope'"),
    (['in1k_linprobe', '--checkpoint', '{junk}', '--smoke'], 'junk.pth: not a readable PyTorch checkpoint'),
    (['in1k_linprobe', '--checkpoint', '{ckpt}', '--smoke', '--data-root', '/tmp'], '--smoke runs on generated data'),
])
def test_bad_input_is_one_line_on_stderr_exit_2_and_nothing_written(args, message, tiny_checkpoint, tmp_path):
    bad_cfg, junk = tmp_path / 'bad.py', tmp_path / 'junk.pth'
    bad_cfg.write_text('epochs = (\n')
    junk.write_bytes(b'not a checkpoint')
    args = [a.format(ckpt=tiny_checkpoint[0], bad_cfg=bad_cfg, junk=junk) for a in args]
    proc = run(RUN + args + ['--records-dir', str(tmp_path / 'records')], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / 'records').exists() and not (tmp_path / 'work_dirs').exists()


def test_torchrun_two_processes_write_one_record_over_the_whole_val_set(tiny_checkpoint, tmp_path):
    proc = run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', str(REPO / 'run_transfer.py'),
                'in1k_linprobe', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--launcher', 'pytorch',
                '--records-dir', str(tmp_path / 'records')], cwd=tmp_path, timeout=300)
    records = list((tmp_path / 'records').glob('*/*.json'))
    assert len(records) == 1
    rec = read_record(records[0])
    assert rec['env']['world_size'] == 2 and rec['data']['num_images'] == 80 and rec['data']['subset'] == 'smoke'
    assert proc.stdout.strip().splitlines()[-1] == str(records[0])


def test_slurm_launcher_two_tasks_write_one_record_over_the_whole_val_set(tiny_checkpoint, tmp_path):
    """Two tasks as ``srun`` starts them (SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; MASTER_ADDR given, as a
    batch script exports it where ``scontrol`` is not at hand), on CPU with gloo."""
    import os
    import socket
    import subprocess
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    args = RUN + ['in1k_linprobe', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--launcher', 'slurm',
                  '--records-dir', str(tmp_path / 'records'), '--cfg-options', 'epochs=1']
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')}
    tasks = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, 'SLURM_PROCID': str(r), 'SLURM_NTASKS': '2', 'SLURM_LOCALID': str(r),
                                   'SLURM_NODELIST': 'localhost', 'MASTER_ADDR': '127.0.0.1',
                                   'MASTER_PORT': str(port)}) for r in range(2)]
    outs = [t.communicate(timeout=300) for t in tasks]
    assert [t.returncode for t in tasks] == [0, 0], outs[0][1][-3000:]
    records = list((tmp_path / 'records').glob('*/*.json'))
    assert len(records) == 1 and outs[0][0].strip().splitlines()[-1] == str(records[0])
    rec = read_record(records[0])
    assert rec['env']['world_size'] == 2 and rec['data']['num_images'] == 80


def test_all_ran_every_benchmark_and_a_rerun_skips_them(smoke_all, tiny_checkpoint, tmp_path):
    records, records_dir, stdout = smoke_all
    assert set(records) == set(registry.BENCHMARKS)
    for name in registry.BENCHMARKS:
        assert any(line.startswith(name) and 'finished' in line for line in stdout.splitlines())
    again = run(RUN + ['all', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--records-dir',
                       str(records_dir)], cwd=tmp_path)
    assert again.stdout.count('skipped (done)') == len(registry.BENCHMARKS)
    assert len(read_records(records_dir)) == len(registry.BENCHMARKS)


def test_all_goes_on_past_a_failing_benchmark_and_exits_non_zero(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    def broken(bench, cfg, ctx):
        raise RuntimeError('this benchmark is broken')
    monkeypatch.setitem(cli.FAMILIES, 'broken', broken)
    broken_inat = dataclasses.replace(registry.BENCHMARKS['inat2019'], family='broken')
    monkeypatch.setattr(cli, 'BENCHMARKS', {'inat2019': broken_inat, 'in1k_linprobe': registry.BENCHMARKS['in1k_linprobe']})
    monkeypatch.chdir(tmp_path)
    status = cli.main(['all', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '--records-dir', str(tmp_path / 'r')])
    printed = capsys.readouterr()
    assert status == 1
    assert re.search(r'^inat2019\s+FAILED', printed.out, re.M)
    assert re.search(r'^in1k_linprobe\s+finished\s+top1', printed.out, re.M)
    # the message in full, once, after the summary, its benchmark named once
    assert printed.err.strip().splitlines()[-1] == 'error: inat2019: RuntimeError: this benchmark is broken'
    assert [l for l in printed.err.splitlines() if l.startswith('error:')] == [printed.err.strip().splitlines()[-1]]
    assert 'inat2019: inat2019' not in printed.err
    assert [r['benchmark'] for r in read_records(tmp_path / 'r')] == ['in1k_linprobe']


@pytest.mark.parametrize('name, size, trained', [
    ('imagenet_c', 15 * 5 * 20, 'in1k_finetune'), ('imagenet_a', 80, 'in1k_finetune'),
    ('coco_maskrcnn', 12, 'coco_maskrcnn'), ('ade20k_upernet', 8, 'ade20k_upernet')])
def test_a_run_on_exactly_the_published_evaluation_set_is_recorded_full(name, size, trained, smoke_all, tmp_path,
                                                                        monkeypatch):
    """The published sets cannot be made here, so the registry entry's published size is set to the generated
    set's: the record must then say 'full' (ImageNet-C with its 4 extra corruptions present included; the
    classification family's full path is in test_architecture)."""
    records = smoke_all[0]
    bench = dataclasses.replace(registry.BENCHMARKS[name], eval_size=size)
    monkeypatch.setattr(cli, 'BENCHMARKS', {**registry.BENCHMARKS, name: bench})
    monkeypatch.chdir(tmp_path)
    args = [name, '--checkpoint', records[trained]['model']['finetuned_checkpoint'], '--data-root',
            records[name]['config']['dataset']['root'], '--config', str(bench.smoke_config), '--records-dir',
            str(tmp_path / 'r')] + (['--eval-only'] if name == trained else [])
    assert cli.main(args) == 0
    (rec,) = [read_record(p) for p in (tmp_path / 'r').glob('*/*.json')]
    assert rec['data']['subset'] == 'full' and rec['data']['num_images'] == size


def test_all_after_the_demo_skips_everything_and_prints_a_few_lines_per_benchmark(tiny_checkpoint, tmp_path,
                                                                                  monkeypatch, capsys):
    """The demo and run-transfer share the records dir by default, so the README's ``run-transfer all
    --checkpoint work_dirs/demo/pretrain/final.pth --smoke`` after the demo re-runs nothing; every work dir of the
    demo is under its --out; the console gets a few lines per benchmark, mmengine's log goes to the work dir.
    (Three benchmarks, one a prerequisite of another, stand for the fourteen.)"""
    subset = {n: registry.BENCHMARKS[n] for n in ('in1k_finetune', 'in1k_linprobe', 'imagenet_a')}
    monkeypatch.setattr(cli, 'BENCHMARKS', subset)
    monkeypatch.chdir(tmp_path)
    final = tmp_path / 'work_dirs' / 'demo' / 'pretrain' / 'final.pth'
    final.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoint[0], final)
    assert demo.main([]) == 0
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).strip().splitlines()
    assert len(lines) <= 8 + 3 * len(subset) + 3 + len(subset), '\n'.join(lines)  # steps, 3 a benchmark, summary
    assert 'mmengine' not in printed.out + printed.err and 'FileClient' not in printed.out + printed.err
    assert sorted(p.parent.name for p in (tmp_path / 'results' / 'runs').glob('*/*.json')) == sorted(subset)
    assert sorted(p.name for p in (tmp_path / 'work_dirs').iterdir()) == ['demo']  # all under --out
    logs = list((tmp_path / 'work_dirs' / 'demo' / 'work_dirs' / 'in1k_linprobe').glob('*/*/*.log'))
    assert logs and 'System environment' in logs[0].read_text()  # the full log is in the work dir
    page = (tmp_path / 'work_dirs' / 'demo' / 'report' / 'index.html').read_text()
    assert 'src="figures/reconstructions.png"' in page

    assert cli.main(['all', '--checkpoint', str(final), '--smoke']) == 0
    again = capsys.readouterr()
    assert again.out.count('skipped (done)') == len(subset) and ' finished ' not in again.out
    assert len(read_records(tmp_path / 'results' / 'runs')) == len(subset)


def test_verbose_prints_mmengines_log(tiny_checkpoint, tmp_path):
    proc = run(RUN + ['in1k_linprobe', '--checkpoint', str(tiny_checkpoint[0]), '--smoke', '-v', '--records-dir',
                      str(tmp_path / 'r')], cwd=tmp_path)
    assert 'mmengine - INFO - Epoch(train)' in proc.stdout


def test_smoke_work_dirs_keep_one_training_checkpoint_and_iteration_runs_log_iterations(smoke_all):
    work_dirs = smoke_all[1].parent / 'work_dirs'
    for bench in registry.BENCHMARKS:
        for run_dir in (work_dirs / bench).glob('*'):
            kept = [p.name for p in run_dir.glob('*.pth') if p.name.startswith(('epoch_', 'iter_'))]
            assert len(kept) <= 1, (run_dir, kept)
    for bench in ('coco_maskrcnn', 'ade20k_upernet'):
        log = next((work_dirs / bench).glob('*/*/*.log')).read_text()
        assert re.search(r'Iter\(train\) \[\s*\d+/\d+\]', log) and 'Epoch(train)' not in log, bench


def test_every_command_has_a_whole_description_and_help_for_every_option(monkeypatch):
    parsers = []

    def capture(self, *args, **kwargs):
        parsers.append(self)
        raise SystemExit(0)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', capture)
    for main in (cli.main, tables.main, demo.main, compare.main, core_cli.pretrain_main, core_cli.convert_main,
                 core_cli.figures_main):
        with pytest.raises(SystemExit):
            main([])
    assert len(parsers) == 7
    for p in parsers:
        text = p.format_help()
        assert p.description.splitlines()[0].endswith('.') and '``' not in text and ':class:' not in text, p.prog
        for action in p._actions:
            assert action.help, f'{p.prog} {action.option_strings or action.dest}: no help'
        if any('--records-dir' in a.option_strings for a in p._actions):
            assert '(default: results/runs)' in ' '.join(text.split())
