"""Evaluation statuses of the trace format (SOL-ExecBench's names).

`Status` is a str enum: a member equals, hashes like, prints as and JSON-encodes as its plain
name, so `statuses.PASSED == "PASSED"` and a trace dumped with json.dumps reads "PASSED".
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    PASSED = "PASSED"
    INCORRECT_SHAPE = "INCORRECT_SHAPE"
    INCORRECT_DTYPE = "INCORRECT_DTYPE"
    INCORRECT_NUMERICAL = "INCORRECT_NUMERICAL"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    COMPILE_ERROR = "COMPILE_ERROR"
    TIMEOUT = "TIMEOUT"
    REWARD_HACK = "REWARD_HACK"
    INVALID_REFERENCE = "INVALID_REFERENCE"

    def __str__(self) -> str:  # f-strings and logs show the name, not "Status.PASSED"
        return self.value


PASSED = Status.PASSED
INCORRECT_SHAPE = Status.INCORRECT_SHAPE
INCORRECT_DTYPE = Status.INCORRECT_DTYPE
INCORRECT_NUMERICAL = Status.INCORRECT_NUMERICAL
RUNTIME_ERROR = Status.RUNTIME_ERROR
COMPILE_ERROR = Status.COMPILE_ERROR
TIMEOUT = Status.TIMEOUT
REWARD_HACK = Status.REWARD_HACK
INVALID_REFERENCE = Status.INVALID_REFERENCE

ALL = tuple(Status)
