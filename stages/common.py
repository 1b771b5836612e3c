"""What every stage does first (logging, validating all of params.yaml) and how it fails."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from chartdistill.config import InputError, ParamsError, validate_params

LOG_ENV = "CHARTDISTILL_LOG"
# A bad key or value in params.yaml, or an input file that is not there: one line, no traceback.
USER_ERRORS = (ParamsError, InputError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


def setup() -> None:
    """Log to stderr; keep MLflow and DVC from calling home; validate the whole params.yaml."""
    logging.basicConfig(
        level=os.environ.get(LOG_ENV, "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    validate_params()


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); a user error exits 2 with one line on stderr naming the key or path
    and the reason. With CHARTDISTILL_LOG=DEBUG the full traceback is shown instead."""
    stage = Path(sys.modules[main.__module__].__file__ or "stage").stem
    try:
        main()
    except USER_ERRORS as exc:
        if os.environ.get(LOG_ENV, "").upper() == "DEBUG":
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.filename}: {exc.strerror}"
        else:
            message = " ".join(str(exc).split())  # one line, whatever the message held
        sys.stderr.write(f"{stage}: {message}\n")
        sys.exit(2)
