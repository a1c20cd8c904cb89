"""Search engines that fill an Optuna study the same way (``search.study``, ``search.trials``).

``BACKENDS`` lists the ``--backend`` names: ``optuna`` (``optuna_backend``, ``optuna_workers``)
and ``ray`` (``ray_backend``, ``ray_search``, ``ray_trainable``). A backend only drives trials;
backends never import each other.
"""

from __future__ import annotations

BACKENDS: tuple[str, ...] = ("optuna", "ray")

__all__ = ["BACKENDS"]
