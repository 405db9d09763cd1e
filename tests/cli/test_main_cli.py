"""Careless input to every command: one line on stderr naming what is wrong and what is allowed, exit 2,
no usage block, and nothing run."""

import os
import subprocess
import sys

import pytest

from selfstudy.cli import main as cli_main
from selfstudy.cli.main import main


def _fails(argv, capsys):
    """Run ``selfstudy argv``; return its stderr after checking exit status 2 and a one-line message."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors exit from inside parse_args
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "usage:" not in err, err
    return err


@pytest.mark.parametrize("argv, fragment", [
    (["pretrain", "--data", "TCVL", "--method", "rotation", "--seed", "abc"],
     "selfstudy pretrain: error: argument --seed: 'abc' is not allowed; it must be a whole number"),
    (["finetune", "--data", "TCVL", "--labels", "many"],
     "selfstudy finetune: error: argument --labels: 'many' is not allowed; it must be a whole number"),
    (["probe", "--data", "TCVL", "--labels", "1.5"], "argument --labels: '1.5' is not allowed"),
    (["render", "--factors", "TCVL", "--n", "1e3x"], "argument --n: '1e3x' is not allowed"),
    (["render", "--factors", "TCVL", "--seed", "-"], "argument --seed"),
    (["study", "run", "quick", "--workers", "0"], "argument --workers: '0' is not allowed: give an integer >= 1"),
    (["study", "run", "quick", "--wrokers", "2"],
     "selfstudy study run: error: unrecognized arguments: --wrokers 2 (did you mean --workers?)"),
    (["study", "run", "quick", "--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
    (["study", "frob"], "invalid choice: 'frob'"),
    (["study", "cells"], "the following arguments are required: SPEC_OR_PRESET"),
    (["report", "somewhere", "--bootstrap", "lots"], "argument --bootstrap: 'lots' is not allowed"),
    (["bench", "--timeout", "soon"], "argument --timeout: 'soon' is not allowed; it must be a number > 0"),
    (["bench", "--timeout", "-5"], "argument --timeout: '-5' is not allowed; it must be a number > 0"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_bad_argument_is_one_line_naming_it(argv, fragment, capsys):
    assert fragment in _fails(argv, capsys)


@pytest.mark.parametrize("argv, fragment", [
    (["study", "cells", "quick", "lables=[100]"], "unknown key 'lables' (did you mean 'labels'?)"),
    (["study", "cells", "quick", "labels=[100,many]"], "label count 'many' is not allowed"),
    (["study", "cells", "quick", "seeds=[0,0]"], "seeds lists a seed twice"),
    (["study", "cells", "quick", "finetune.lr=-1"], "finetune: lr=-1 is not allowed; lr must be a number > 0"),
    (["study", "cells", "quick", "finetune.lr=fast"], "finetune: lr='fast' is not allowed; lr must be a number > 0"),
    (["study", "cells", "quick", "methods.simclr.overrides.temprature=0.1"], "temprature"),
    (["study", "cells", "quick", "datasets.n=1234", "labels=[100,341]"], "341 needs 35 images per class"),
    (["study", "cells", "quick", "linear.weight_decays=[]"], "weight_decays must be a non-empty list"),
    (["study", "cells", "quick", "budget_check.factor=1"], "budget_check.factor must be a number in (1, 100]"),
    (["study", "cells", "quick", "device=gpu"], "device 'gpu' is not allowed"),
    (["study", "cells", "quick", "labels"], "bad override 'labels'; write key=value"),
    (["study", "cells", "nosuchpreset"], "no spec file or preset named 'nosuchpreset'"),
])
def test_a_bad_spec_is_one_line(argv, fragment, capsys):
    assert fragment in _fails(argv, capsys)


def test_a_duplicated_key_in_a_spec_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "twice.yaml"
    f.write_text("name: twice\ndatasets: {factors: [TCVL], n: 6000, res: 32}\nmethods: [scratch]\n"
                 "datasets: {factors: ['0000'], n: 6000, res: 32}\n")
    for command in ("cells", "run"):
        err = _fails(["study", command, str(f), "--dir", str(tmp_path / "s")] if command == "run"
                     else ["study", command, str(f)], capsys)
        assert "key 'datasets' is given twice (line 2 and line 4)" in err
    assert not (tmp_path / "s").exists()


def test_a_spec_with_no_runnable_cell_is_one_line_and_runs_nothing(tmp_path, capsys):
    f = tmp_path / "nocell.yaml"
    f.write_text("name: nocell\ndatasets: {factors: [TC-L], n: 6000, res: 32}\nmethods: [scratch, rotation]\n"
                 "tasks: [pose]\n")
    for argv in (["study", "cells", str(f)], ["study", "run", str(f), "--dir", str(tmp_path / "s")]):
        err = _fails(argv, capsys)
        assert "study nocell: the spec expands to no runnable cell: skipped task pose on TC-L" in err
        assert "0/0" not in err
    assert not (tmp_path / "s").exists()


def test_a_subcommand_that_fails_to_import_is_an_error(monkeypatch):
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", cli_main.SUBCOMMANDS + ("nosuchcommand",))
    with pytest.raises(ModuleNotFoundError, match="selfstudy.cli.nosuchcommand"):
        cli_main.build_parser()


@pytest.mark.parametrize("override, fragment", [
    ("lr=-1", "rotation: lr=-1 is not allowed; lr must be a number > 0"),
    ("betas=0.9", "rotation: betas=0.9 is not allowed; betas must be two numbers in [0, 1)"),
    ("cutout=maybe", "rotation: cutout='maybe' is not allowed; cutout must be true or false"),
    ("grad_clip=big", "train config: grad_clip='big' is not allowed; grad_clip must be a number > 0 or empty"),
    ("optimizer=sgdd", "train config: optimizer 'sgdd' is not allowed; allowed: adam, adamw, sgd"),
    ("grad_clip=-1", "train config: grad_clip=-1 is not allowed; grad_clip must be a number > 0 or empty"),
    ("max_steps=0", "train config: max_steps=0 is not allowed; max_steps must be an integer >= 1 or empty"),
])
def test_a_bad_method_value_is_refused_before_any_data_is_made(override, fragment, tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setenv("SELFSTUDY_DATA", str(tmp_path / "data"))
    err = _fails(["pretrain", "--data", "TCVL", "--method", "rotation", "--out", str(tmp_path / "run"),
                  override], capsys)
    assert fragment in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [["study", "cells", "quick"], ["study", "cells", "quick", "--count"], ["--help"],
                                  ["report", "--help"]])
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_closed_stdout_ends_every_command_quietly(argv, unbuffered):
    """``selfstudy ... | head -3``: the reader goes away early. Its end of the pipe is closed here before
    the command writes anything, so the write fails for certain: inside the command's print when stdout
    is unbuffered, at the final flush when it is buffered. No traceback, exit status 141 (128 + SIGPIPE,
    as the shell reports for cat or git)."""
    env = {**os.environ, "SELFSTUDY_THREADS": "1", "PYTHONUNBUFFERED": unbuffered}
    proc = subprocess.Popen([sys.executable, "-m", "selfstudy", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=300)
    assert err == ""
    # argparse's help ignores a failed write itself (0) when it reaches the pipe at once, unbuffered
    assert rc == cli_main.EXIT_BROKEN_PIPE == 141 or (rc == 0 and "--help" in argv and unbuffered), (rc, err)
