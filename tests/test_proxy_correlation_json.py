"""bench/proxy_correlation's saved file is standard JSON, and its non-finite scores survive a resume."""

from __future__ import annotations

import json
import math

import numpy as np

from bench.proxy_correlation import floats_back, strict_json


def test_non_finite_scores_are_written_as_null_and_read_back_as_nan():
    doc = {"values": {"synflow": [0.5, float("nan"), float("-inf")], "macs": [np.float64(2.0), float("inf")]},
           "table": {"synflow": {"spearman": float("nan")}}, "n": 3, "name": "x"}
    text = json.dumps(strict_json(doc), allow_nan=False)  # raises ValueError if any NaN/inf is left
    for token in ("NaN", "Infinity"):
        assert token not in text
    back = json.loads(text)
    assert back["values"]["synflow"][:1] == [0.5] and back["values"]["synflow"][1:] == [None, None]
    assert back["table"]["synflow"]["spearman"] is None and back["n"] == 3 and back["name"] == "x"
    scores = floats_back(back["values"]["synflow"])
    assert scores[0] == 0.5 and all(math.isnan(v) for v in scores[1:])
    assert floats_back(back["values"]["macs"])[0] == 2.0


def test_finite_values_pass_unchanged():
    doc = {"a": [1, 2.5, -3.0], "b": ("x", 0.0)}
    assert strict_json(doc) == {"a": [1, 2.5, -3.0], "b": ["x", 0.0]}
