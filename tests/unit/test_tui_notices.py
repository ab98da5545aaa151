"""What the trader's toasts say about fills and closes."""

from __future__ import annotations

from decimal import Decimal

from cfd_client.models import Position
from cfd_tui.notices import close_notice, fill_notice


def btc_long(**closed) -> Position:
    return Position(id="p1", symbol="BTC_USDC", side="long", qty=Decimal("0.0100"), entry_price=Decimal("96601.70"),
                    leverage=5, margin=Decimal("193.20"), status="closed" if closed else "open", opened_at=1,
                    updated_at=1, **closed)


def test_a_fill_names_its_price_as_the_tables_show_it():
    assert fill_notice(btc_long()).message == "Opened long 0.01 BTC/USDC at 96,601.7 (5× leverage)."


def test_a_close_names_its_price_and_signed_pnl():
    notice = close_notice(btc_long(close_price=Decimal("96487.70"), realized_pnl=Decimal("-1.14"), closed_at=2))
    assert notice.message == "Closed long 0.01 BTC/USDC at 96,487.7: PnL -1.14."
    assert notice.severity == "warning"
