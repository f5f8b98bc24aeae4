"""Results of every kind: `{"case": NAME}` picks one; the marshaller must write each byte for byte
as awslambdaric does (or fail with the same Runtime.MarshalError)."""

from __future__ import annotations

import datetime
import decimal
from collections import namedtuple
from typing import Any

Point = namedtuple("Point", ["x", "y"])


class Opaque:
    pass


RESULTS: dict[str, Any] = {
    "dict": {"a": 1, "b": [1, 2, 3], "c": {"d": None, "e": True, "f": False}},
    "list": [1, "two", 3.0, None, True],
    "str": "plain text",
    "empty_str": "",
    "int": 42,
    "big_int": 2**70,
    "negative": -7,
    "float": 0.1 + 0.2,
    "float_exp": 1e300,
    "nan": float("nan"),
    "infinity": float("inf"),
    "neg_infinity": float("-inf"),
    "decimal": decimal.Decimal("1.50"),
    "decimal_exp": decimal.Decimal("1E+3"),
    "decimal_neg_zero": decimal.Decimal("-0.00"),
    "decimal_nan": decimal.Decimal("NaN"),
    "decimal_snan": decimal.Decimal("sNaN"),
    "decimal_inf": decimal.Decimal("Infinity"),
    "decimal_in_dict": {"price": decimal.Decimal("19.990"), "qty": [decimal.Decimal("3")]},
    "non_ascii": "Grüße, Zürich — ça va? 日本語",
    "emoji": "rocket \U0001f680 and family \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "lone_surrogate": "\ud800",
    "control_chars": "tab\there\nnewline\x00nul\x7f",
    "non_ascii_keys": {"clé": "valeur", "\U0001f511": 1},
    "bytes": b"\x00\x01raw bytes\xff",
    "empty_bytes": b"",
    "bytearray": bytearray(b"abc"),
    "none": None,
    "true": True,
    "tuple": (1, 2, "three"),
    "namedtuple": Point(1, 2),
    "nested": {"list": [{"t": (1, Point(3, 4))}, [decimal.Decimal("0.1"), float("nan")]],
               "deep": {"a": {"b": {"c": {"d": ["é"]}}}}},
    "int_keys": {1: "one", 2.5: "float key", None: "none key", False: "bool key"},
    "set": {1, 2, 3},
    "frozenset": frozenset(),
    "object": Opaque(),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
    "date_in_dict": {"when": datetime.date(2024, 1, 2)},
    "complex": 1 + 2j,
    "tuple_key": {(1, 2): "x"},
    "large": "x" * 100_000,
}


def handler(event: Any, context: Any) -> Any:
    case = event["case"]
    if case == "echo":
        return event.get("value")
    return RESULTS[case]
