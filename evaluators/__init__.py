"""How good and how costly a model is: data, measured latency, proxy accuracy, zero-cost scores.

Pure functions of (model, data, settings); nothing here knows about Optuna.
"""

from .data import DataError, Dataset, Split, check_arch_data, load_data
from .latency import LatencyError, LatencyResult, LockBusy, measure_latency, measurement_lock
from .train_proxy import TrainingDiverged, TrainResult, evaluate, train, train_and_evaluate
from .zero_cost import SCORES, compute_scores

__all__ = [
    "DataError", "Dataset", "Split", "check_arch_data", "load_data",
    "LatencyError", "LatencyResult", "LockBusy", "measure_latency", "measurement_lock",
    "TrainingDiverged", "TrainResult", "evaluate", "train", "train_and_evaluate",
    "SCORES", "compute_scores",
]
