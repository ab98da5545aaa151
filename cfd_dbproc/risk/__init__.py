"""The risk engine's in-memory index: which stops and which accounts a price tick triggers.

`RiskBook` is pure and synchronous (no I/O): the dbproc feeds it the open positions, the balances and
every tick, and acts on the `Trigger`s it returns. See docs/risk.md for how the index works.
"""

from cfd_dbproc.risk.book import RiskBook
from cfd_dbproc.risk.models import OpenPosition, Trigger, TriggerKind

__all__ = ["OpenPosition", "RiskBook", "Trigger", "TriggerKind"]
