"""Field types for the pydantic models of problems, solutions and traces, and their errors.

Validation errors must name the field in the words of the file (`inputs.x.dtype`,
`sources[2].path`) with a message a person can act on; pydantic's own messages ("Input should
be a valid integer") are replaced by ours. A validator that knows a more precise field than the
one it runs on passes it along with `invalid(message, field)`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

_OURS = "kernelbench"
_MESSAGES = {
    "missing": "required field is missing",
    "dict_type": "must be an object",
    "dataclass_type": "must be an object",
    "model_type": "must be an object",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
}


def invalid(message: str, field: str | None = None) -> PydanticCustomError:
    """An error for a validator to raise; `field` is relative to where the validator runs."""
    return PydanticCustomError(_OURS, "{message}", {"message": message, "field": field})


def first_error(exc: ValidationError, renames: dict[str, str] | None = None) -> tuple[str | None, str]:
    """(field, message) of the first error; `renames` maps a leading field name to its name in the file."""
    error = exc.errors()[0]
    field = ""
    for part in error["loc"]:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    context = error.get("ctx") or {}
    if context.get("field"):
        field = f"{field}.{context['field']}" if field else context["field"]
    head, dot, rest = field.partition(".")
    field = (renames or {}).get(head, head) + dot + rest
    message = context["message"] if error["type"] == _OURS else _MESSAGES.get(error["type"], error["msg"])
    return field or None, message


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid("must be a non-empty string")
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"must be a non-negative integer, got {value!r}")
    return value


def _non_negative_number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise invalid(f"must be a non-negative number, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid("must be true or false")
    return value


NonEmptyString = Annotated[str, PlainValidator(_non_empty_string)]
NonNegativeInt = Annotated[int, PlainValidator(_non_negative_int)]     # JSON integers only: no bool, "8" or 8.0
NonNegativeNumber = Annotated[float, PlainValidator(_non_negative_number)]
Flag = Annotated[bool, PlainValidator(_flag)]                          # true or false, not 1 or "yes"
