"""The run folder, one import for its readers: storage and config (``search.storage``), what is
derived from the study (``search.rundata``), the table (``search.table``) and the files written
(``search.outputs``).

``runs/<name>/``: ``study.journal`` (or a ``--storage`` URL), ``config.json``
(``search.config.RunConfig``), and, rebuilt from the study by ``write_outputs``: ``trials.csv``,
``pareto.json``, ``pareto.png``, ``pareto.html``, ``hypervolume.png``, ``layers.png``,
``best/arch.json``; ``ray/`` for Ray's own results; ``targets.json`` from ``search.remeasure``.
``load_run`` here is ``search.storage.load_run`` that also rebuilds broken derived files from the
study (``search.safe_files.rebuild_derived``), for the commands that read a finished run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .objectives import FIGURES
from .outputs import pareto_document, write_outputs, write_trials_csv
from .rundata import RunData, collect, dominated_baselines, hv_history, tie_groups
from .storage import (
                      CONFIG,
                      JOURNAL,
                      check_name,
                      machine_info,
                      new_run_dir,
                      open_storage,
                      read_config,
                      storage_spec,
                      write_config,
)
from .table import front_table

FIGURE_KEYS = FIGURES

__all__ = ["JOURNAL", "CONFIG", "open_storage", "storage_spec", "new_run_dir", "write_config", "read_config",
           "load_run", "RunData", "collect", "write_outputs", "front_table", "machine_info", "FIGURE_KEYS",
           "FIGURES", "pareto_document", "write_trials_csv", "dominated_baselines", "hv_history", "tie_groups",
           "check_name"]


def load_run(run: str | Path, repair: bool = False) -> tuple[Path, Any, dict[str, Any]]:
    """(run folder, study, config) as ``search.storage.load_run``; a derived file that is broken
    (``pareto.json`` of ``[]``, a cut PNG ...) is rebuilt from the study, with a message."""
    from . import storage
    from .safe_files import rebuild_derived

    run_dir, study, config = storage.load_run(run, repair=repair)
    rebuild_derived(run_dir, lambda: write_outputs(run_dir, study, config))
    return run_dir, study, config
