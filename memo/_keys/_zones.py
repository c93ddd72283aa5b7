"""A time zone by what it is (its name), for the keys of datetimes in any library."""

from __future__ import annotations

import datetime
import sys
from typing import Any

from ._bytes import UnencodableError, text

__all__ = ["tzinfo_identity"]


def tzinfo_identity(tz: Any) -> bytes:
    """A time zone by what it is, not by its offset at one instant: ``Europe/Berlin`` and a
    fixed ``+01:00`` agree in January and differ in July, so they must not share a key."""
    if tz is None:
        return b"N"
    if isinstance(tz, datetime.timezone):
        offset = tz.utcoffset(None)
        return b"z" + text(f"{offset.days} {offset.seconds} {offset.microseconds}|{tz}")
    zoneinfo = sys.modules.get("zoneinfo")
    if zoneinfo is not None and isinstance(tz, zoneinfo.ZoneInfo) and tz.key is not None:
        return b"Z" + text(tz.key)
    zone = getattr(tz, "zone", None)
    if type(tz).__module__.startswith("pytz") and isinstance(zone, str):
        return b"Z" + text(zone)
    raise UnencodableError(
        type(tz),
        "its time zone cannot be identified; use zoneinfo.ZoneInfo('Area/City') or "
        "datetime.timezone for time zones in arguments",
    )
