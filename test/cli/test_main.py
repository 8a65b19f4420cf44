"""The `ovp` entry point: subcommand registry and error handling."""
from __future__ import annotations

import importlib

import pytest

from perception_nodes.cli import main as cli


def test_every_registered_subcommand_has_a_module_with_the_interface():
    for name, (module, help_text) in cli.SUBCOMMANDS.items():
        mod = importlib.import_module(f'perception_nodes.cli.{module}')
        assert callable(mod.add_arguments), name
        assert callable(mod.run), name
        assert help_text


def test_unknown_subcommand_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(['no-such-command'])
    assert exc.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err


def test_cli_error_is_reported_without_traceback(monkeypatch, capsys):
    class Failing:
        @staticmethod
        def add_arguments(parser):
            parser.add_argument('x')

        @staticmethod
        def run(args):
            raise cli.CliError(f'bad thing {args.x}')

    monkeypatch.setitem(cli.SUBCOMMANDS, 'fail', ('fail', 'always fails'))
    monkeypatch.setattr(cli, '_load', lambda module: Failing)
    assert cli.main(['fail', 'here']) == 2
    assert 'ovp fail: error: bad thing here' in capsys.readouterr().err


@pytest.mark.parametrize('command', ['pseudo-label', 'train'])
def test_offline_subcommand_without_its_training_module_is_a_one_line_error(monkeypatch, capsys, command):
    """A machine where training/ cannot be imported: the subcommand parses anything and then says why."""
    real = importlib.import_module

    def no_training(name, *args, **kwargs):
        if name.startswith('training'):
            raise ImportError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, 'import_module', no_training)
    assert cli.main([command, 'some.bag', '--out', 'x']) == 2
    err = capsys.readouterr().err
    assert f'ovp {command}: error: ovp {command} needs training.' in err
    assert 'cannot be imported here' in err and 'Traceback' not in err


def test_import_training_returns_the_module():
    assert cli.import_training('training.train', 'ovp train').__name__ == 'training.train'
