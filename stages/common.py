"""What every stage's main() does first: logging and the paths section."""

from __future__ import annotations

import logging
import os


def setup() -> None:
    """Log to stderr; keep MLflow and DVC from calling home."""
    logging.basicConfig(
        level=os.environ.get("CHARTDISTILL_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
