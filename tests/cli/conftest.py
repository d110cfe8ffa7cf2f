"""The CLI tests' one way of running ``monai-gen``: in process, exit status and everything it printed."""

from __future__ import annotations

import pytest

from monai_gen.cli.main import main


@pytest.fixture
def run_cli(capsys):
    """``run_cli(argv) -> (exit status, stdout + stderr)``; argparse's ``SystemExit`` becomes the status."""

    def run(argv):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        out = capsys.readouterr()
        return code, out.out + out.err

    return run
