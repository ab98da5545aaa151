"""`AccountBar`: balance, equity, used and free margin, and the margin level — amber below 150 %, red below
100 % (a margin call; stop-out comes at 50 %)."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cfd_tui import format as fmt
from cfd_tui.client.models import Account

AMBER_BELOW = Decimal(150)
RED_BELOW = Decimal(100)


class AccountBar(Widget):
    """The account at a glance, one line; `account` None shows `note` (loading, or trading unavailable).

    Drawn by `render` (a repaint, never a re-layout), since it changes with every tick of a held market.
    """

    COMPONENT_CLASSES = {"account-bar--label", "account-bar--profit", "account-bar--loss", "account-bar--amber",
                         "account-bar--red", "account-bar--note"}

    account: reactive[Account | None] = reactive(None)
    note: reactive[str] = reactive("loading account…")

    def watch_account(self, account: Account | None) -> None:
        level = account.margin_level if account is not None else None
        self.set_class(account is None, "-empty")
        self.set_class(level is not None and RED_BELOW <= level < AMBER_BELOW, "-amber")
        self.set_class(level is not None and level < RED_BELOW, "-red")

    def render(self) -> Text:
        style = self.get_component_rich_style
        account = self.account
        if account is None:
            return Text(self.note, style=style("account-bar--note"))
        label = style("account-bar--label")
        pnl = account.unrealized_pnl
        pnl_style = style("account-bar--profit") if pnl > 0 else style("account-bar--loss") if pnl < 0 else ""
        level = account.margin_level
        level_style = style("account-bar--red") if self.has_class("-red") else \
            style("account-bar--amber") if self.has_class("-amber") else ""
        text = Text(no_wrap=True, overflow="ellipsis")
        for name, value, value_style in (
            ("Balance", fmt.money(account.balance), ""),
            ("Equity", fmt.money(account.equity), ""),
            ("Unrealised", fmt.money(pnl, signed=True), pnl_style),
            ("Used margin", fmt.money(account.used_margin), ""),
            ("Free margin", fmt.money(account.free_margin), ""),
            ("Margin level", "—" if level is None else f" {fmt.percent(level)} " if level_style else
             fmt.percent(level), level_style),
        ):
            text.append(f"{name} ", label)
            text.append(value, value_style)
            text.append("   ")
        text.append(account.currency, label)
        return text
