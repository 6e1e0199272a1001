"""OpenF1's query syntax for the local server: ``key>=value`` style filters parsed from the query
string and compiled into record tests (dates compared as timestamps, numbers as numbers).
Re-exported by :mod:`stratx.quix_apps.kit.openf1_server`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from stratx.quix_apps.kit.openf1_server_clock import to_ts
from stratx.quix_apps.kit.openf1_server_data import _Rec

#: Query keys that are accepted and ignored (OpenF1 output options).
IGNORED_KEYS = frozenset({"csv"})
_FILTER_RE = re.compile(r"^([A-Za-z0-9_]+)(>=|<=|>|<|=)(.*)$", re.S)


# --------------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    value: str


def parse_query(query_string: str) -> list[Filter]:
    """OpenF1 query string -> filters. Each ``&`` part is percent-decoded, then split at its
    first operator (``>=``, ``<=``, ``>``, ``<``, ``=``). A literal ``+`` stays ``+`` (dates
    like ``...+00:00``). Bare keys without an operator (``&date`` in OpenF1's docs) are
    ignored."""
    out = []
    for part in query_string.split("&"):
        if not part:
            continue
        m = _FILTER_RE.match(unquote(part))
        if m and m.group(1) not in IGNORED_KEYS:
            out.append(Filter(m.group(1), m.group(2), m.group(3)))
    return out


def _coerce(sample: Any, text: str) -> Any:
    if isinstance(sample, bool):
        return text.strip().lower() in ("true", "1")
    if isinstance(sample, int | float):
        return float(text)
    return text


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


class _Compiled:
    """Filters grouped: equality on the same key ORs (``driver_number=1&driver_number=11``),
    everything else ANDs."""

    def __init__(self, filters: list[Filter]) -> None:
        self.eq: dict[str, list[str]] = {}
        self.cmp: list[Filter] = []
        for f in filters:
            if f.op == "=":
                self.eq.setdefault(f.key, []).append(f.value)
            else:
                self.cmp.append(f)
        self._date_cache: dict[str, float] = {}

    def date(self, text: str) -> float:
        v = self._date_cache.get(text)
        if v is None:
            v = self._date_cache[text] = to_ts(text)
        return v

    def _test(self, rec: _Rec, key: str, op: str, text: str) -> bool:
        if key in rec.dates:
            return _OPS[op](rec.dates[key], self.date(text))
        v = rec.data.get(key, None)
        if v is None:
            return op == "=" and text.lower() in ("null", "none")
        try:
            return _OPS[op](v, _coerce(v, text))
        except (TypeError, ValueError):
            return False

    def match(self, rec: _Rec, skip: frozenset[int] = frozenset()) -> bool:
        for key, texts in self.eq.items():
            if not any(self._test(rec, key, "=", t) for t in texts):
                return False
        for i, f in enumerate(self.cmp):
            if i not in skip and not self._test(rec, f.key, f.op, f.value):
                return False
        return True
