"""The command-line package: ``aptnn post`` = ``aptnn-post``, ``python -m aptnn``, the one error path, and the
default model size declared once."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aptnn import errors
from aptnn.cli import main, post, post_alias
from aptnn.cli.errors import fail, run_command

ROOT = Path(__file__).resolve().parents[1]


def _options(help_text: str) -> str:
    """The options part of a --help page (names, types, defaults, help), whitespace and wrapping ignored."""
    return re.sub(r"\s+", " ", help_text[help_text.index("Options:"):]).strip()


def _help(how: str) -> str:
    runner = CliRunner()
    if how == "aptnn post":
        res = runner.invoke(main, ["post", "--help"], prog_name="aptnn")
    elif how == "aptnn-post":
        res = runner.invoke(post, ["--help"], prog_name="aptnn-post")
    else:  # a fresh interpreter: python -m …
        res = subprocess.run([sys.executable, "-m", *how.split()[2:], "--help"], capture_output=True, text=True,
                             cwd=ROOT, timeout=300)
        assert res.returncode == 0, res.stderr
        return res.stdout
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("how", ["aptnn-post", "python -m aptnn.cli_post", "python -m aptnn post"])
def test_post_alias_shows_the_options_of_aptnn_post(how):
    reference = _options(_help("aptnn post"))
    assert "--shard-frames INTEGER" in reference and "--units TEXT" in reference
    assert _options(_help(how)) == reference


def test_post_alias_is_the_post_command():
    assert main.get_command(click.Context(main), "post") is post
    assert callable(post_alias)


def test_python_m_aptnn_help_lists_every_command():
    res = subprocess.run([sys.executable, "-m", "aptnn", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    for name in ("train", "predict", "evaluate", "models", "post", "spectrum", "merge", "demo", "label", "select",
                 "learn"):
        assert re.search(rf"^\s+{name}\s", res.stdout, re.M), name


def test_every_aptnn_error_derives_from_the_base_and_is_reexported():
    from aptnn.distributed import DistributedError
    from aptnn.drivers.ipi.processor import ClientError
    from aptnn.drivers.ipi.protocol import ProtocolError
    from aptnn.label.routes import BackendMissing, LabelError

    defined = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)
               and c.__module__ == errors.__name__]
    assert len(defined) >= 10 and all(issubclass(c, errors.APTNNError) for c in defined)
    assert (DistributedError, ClientError, ProtocolError, BackendMissing, LabelError) == (
        errors.DistributedError, errors.ClientError, errors.ProtocolError, errors.BackendMissing, errors.LabelError)
    assert issubclass(errors.BackendMissing, errors.LabelError)


@pytest.mark.parametrize("error", [errors.InputError("bad frame", "a.xyz", 3), errors.OutputError("full", "o.h5"),
                                   errors.CheckpointError("not a checkpoint"), errors.ProtocolError("no server"),
                                   errors.ClientError("no dt"), errors.LabelError("scf"),
                                   errors.BackendMissing("pip install tblite"), errors.DistributedError("rank 1")])
@pytest.mark.parametrize("prog", ["aptnn", "aptnn-ipi"])
def test_one_error_path_prints_one_line_and_exits_2(error, prog, capsys):
    def body():
        raise error

    with pytest.raises(SystemExit) as exit_:
        run_command(body, prog)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"{prog}: error: {error}\n"


def test_a_quiet_distributed_error_is_not_printed(capsys):
    error = errors.DistributedError("rank 0 failed")
    error.quiet = True  # what a non-zero rank raises
    with pytest.raises(SystemExit) as exit_:
        fail(error)
    assert exit_.value.code == 2 and capsys.readouterr().err == ""


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(KeyError):
        run_command(lambda: {}["x"])


def test_the_command_line_reports_through_the_error_path(tmp_path):
    (tmp_path / "x.h5").write_text("not hdf5")
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "x.h5"), "-o", str(tmp_path / "m.h5")])
    assert res.exit_code == 2
    assert res.output.startswith("aptnn: error: ") and res.output.count("\n") == 1, res.output


def test_one_default_model_size():
    from aptnn.cli.model import train
    from aptnn.cli.workflows import learn
    from aptnn.defaults import DEFAULT_CHANNELS, LEARN_CHANNELS
    from aptnn.model.network import ModelConfig

    def default(command, name):
        return next(p.default for p in command.params if p.name == name)

    assert DEFAULT_CHANNELS == 8 == ModelConfig(species=[1]).channels == default(train, "channels")
    assert default(learn, "channels") == LEARN_CHANNELS
