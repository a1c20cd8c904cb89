"""The run folder, one import for its readers: storage and config (``search.storage``), what is
derived from the study (``search.rundata``), the table (``search.table``) and the files written
(``search.outputs``).

``runs/<name>/``: ``study.journal`` (or a ``--storage`` URL), ``config.json``
(``search.config.RunConfig``), and, rebuilt from the study by ``write_outputs``: ``trials.csv``,
``pareto.json``, ``pareto.png``, ``pareto.html``, ``hypervolume.png``, ``layers.png``,
``best/arch.json``; ``ray/`` for Ray's own results; ``targets.json`` from ``search.remeasure``.
"""

from __future__ import annotations

from .objectives import FIGURES
from .outputs import pareto_document, write_outputs, write_trials_csv
from .rundata import RunData, collect, dominated_baselines, hv_history, tie_groups
from .storage import (
                      CONFIG,
                      JOURNAL,
                      check_name,
                      load_run,
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
