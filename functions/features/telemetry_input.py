"""Car-telemetry samples off the wire without pydantic: an exact check for the common case.

Most of a race's events are car samples, and validating each with :class:`schemas.CarTelemetry`
(pydantic, with Python validators for booleans and dates) cost the telemetry app more than its
window step. :func:`sample_from_json` accepts a message only when it is exactly typed as ingestion
encodes it (JSON ints, a JSON float SessionTime, Date null or RFC 3339 UTC text, the schema's 12
fields and no other) and every bound of the schema holds (the bounds are read from the schema).
Anything else gives None and the caller validates with pydantic as before: a message accepted here
is one pydantic accepts too, with the same values (tests/functions/test_telemetry_input.py checks
this against pydantic on real and fuzzed samples).

The accepted sample is the decoded payload itself (Date as text, which
:func:`~stratx.functions.features.telemetry.window_update` reads like the datetime of
``model_dump()``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from stratx.functions import schemas

_N_FIELDS = len(schemas.CarTelemetry.model_fields)  # 12, each looked up by name below
# RFC 3339 UTC text as orjson / isoformat() (+00:00) and pydantic (Z) write it: every such text
# that datetime.fromisoformat() reads is read by pydantic as the same instant
_UTC_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?(?:\+00:00|Z)"
)


def _bounds(name: str) -> tuple[Any, Any]:
    """The (ge, le) bounds the schema declares for a field."""
    info = schemas.CarTelemetry.model_fields[name]
    metadata = list(info.metadata)
    for arg in getattr(info.annotation, "__args__", ()):  # Optional[Annotated[int, ...]]: bounds on the field
        metadata += getattr(arg, "__metadata__", ())
    return next(m.ge for m in metadata if hasattr(m, "ge")), next(m.le for m in metadata if hasattr(m, "le"))


_KEY_MIN, _KEY_MAX = _bounds("SessionKey")
_SEQ_MIN, _SEQ_MAX = _bounds("Seq")
_T_MIN, _T_MAX = _bounds("SessionTime")
_SPEED_MIN, _SPEED_MAX = _bounds("Speed")
_RPM_MIN, _RPM_MAX = _bounds("RPM")
_GEAR_MIN, _GEAR_MAX = _bounds("nGear")
_THR_MIN, _THR_MAX = _bounds("Throttle")
_DRS_MIN, _DRS_MAX = _bounds("DRS")
_YEAR_MIN, _YEAR_MAX = 1950, 2100  # schemas_raw._utc_date


def _date_ok(date: object) -> bool:
    if type(date) is not str or _UTC_TEXT.fullmatch(date) is None:
        return False
    try:
        year = datetime.fromisoformat(date).year
    except ValueError:  # e.g. February 30th: pydantic decides (and rejects)
        return False
    return _YEAR_MIN <= year <= _YEAR_MAX


def is_exact_sample(p: Mapping[str, Any]) -> bool:
    """True if ``p`` is a CarTelemetry payload exactly typed as JSON carries it and within the
    schema's bounds (then pydantic accepts it with the same values); False means: let pydantic decide.
    ``type(x) is int`` keeps JSON true / false out of the numbers; comparisons with NaN are False;
    the 12 lookups and the length check mean exactly the schema's keys."""
    try:
        v, key, seq, t, date, number = (
            p["v"],
            p["SessionKey"],
            p["Seq"],
            p["SessionTime"],
            p["Date"],
            p["DriverNumber"],
        )
        speed, rpm, gear, thr, brake, drs = (
            p["Speed"],
            p["RPM"],
            p["nGear"],
            p["Throttle"],
            p["Brake"],
            p["DRS"],
        )
    except KeyError:
        return False
    return (
        len(p) == _N_FIELDS
        and type(speed) is int
        and _SPEED_MIN <= speed <= _SPEED_MAX
        and type(rpm) is int
        and _RPM_MIN <= rpm <= _RPM_MAX
        and type(gear) is int
        and _GEAR_MIN <= gear <= _GEAR_MAX
        and (thr is None or (type(thr) is int and _THR_MIN <= thr <= _THR_MAX))
        and (brake is None or type(brake) is bool)
        and type(drs) is int
        and _DRS_MIN <= drs <= _DRS_MAX
        and type(v) is int
        and v == 1
        and type(key) is int
        and _KEY_MIN <= key <= _KEY_MAX
        and type(seq) is int
        and _SEQ_MIN <= seq <= _SEQ_MAX
        and type(t) is float
        and _T_MIN <= t <= _T_MAX
        and type(number) is str
        and 0 < len(number) <= 2
        and number.isascii()
        and number.isdigit()  # ASCII: 0-9 only
        and (date is None or _date_ok(date))
    )


def sample_from_json(raw: bytes) -> dict[str, Any] | None:
    """The sample in ``raw`` (message bytes) if :func:`is_exact_sample` accepts it, else None.

    Decoded with orjson: where it reads a document differently from the standard library's json
    (integers beyond 64 bits become floats; NaN, lone surrogates and BOMs are errors) the exact
    check or the decoder fails, and the caller takes the standard path.
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(payload) is dict and is_exact_sample(payload):
        return payload
    return None
