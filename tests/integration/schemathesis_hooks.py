"""Schemathesis hooks for `test_openapi_fuzz.py` (loaded through `SCHEMATHESIS_HOOKS`).

Random bodies almost never open a position (the quantity must be a multiple of the market's step and the
margin affordable), so the stateful phase would never follow the links from an opened position to its
reads, changes and closes. In that phase only, a valid order keeps the symbol and side schemathesis chose
and gets a quantity and leverage every market takes. Every other phase fuzzes the order as generated.
"""

from __future__ import annotations

import schemathesis
from schemathesis.generation.meta import TestPhase


@schemathesis.hook("map_case").apply_to(operation_id="open_position")
def openable_orders_when_stateful(context, case):
    meta = case.meta
    if (meta is not None and meta.phase.name == TestPhase.STATEFUL and meta.generation.mode.is_positive
            and isinstance(case.body, dict)):
        case.body = {"symbol": case.body.get("symbol", "SOL_USDC"), "side": case.body.get("side", "long"),
                     "qty": "1", "leverage": 2}
    return case
