"""Search engines that fill an Optuna study the same way (see ``search.runfolder``).

``BACKENDS`` lists the ``--backend`` names; a backend module adds its name here.
"""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("optuna", "ray")

__all__ = ["BACKENDS"]
