"""What every harness's ``main`` does: hand ``TestOneInput`` to atheris (libFuzzer)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Instrument every module imported so far and fuzz ``test_one_input`` with ``sys.argv``'s
    libFuzzer options (``-atheris_runs=N``, ``-max_len=N``, a corpus directory ...)."""
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
