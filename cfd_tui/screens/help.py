"""Help: every key of every screen, and where the session is kept."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# CFD Broker · keys

| Dashboard | |
|---|---|
| `↑` `↓` / mouse | choose a market (the chart follows) |
| `[` `]` | previous / next market |
| `i`, or `1` `2` `3` `4` | chart interval: cycle, or 1m 5m 15m 1h |
| `b` / `s` | order ticket: buy (long) / sell (short) |
| `Tab` | move between the watchlist and the positions (or orders) |
| `o` | show the working orders under the chart, or the open positions again |
| `c` / `p` / `e` | positions: close / partly close / edit the stops (and trailing stop) of the highlighted one |
| `c` / `e` | working orders: cancel (after a confirmation) / modify the highlighted one |
| `C` (Shift+C) | close all positions, or only the selected market's, after a confirmation that counts them |
| `h` | history: closed positions, orders and the ledger |
| `a` | price alert on the selected market, starting at its bid |
| `A` (Shift+A) | alerts: the active and triggered ones; set a price or a margin-level alert, delete one |
| `k` | API keys for bots and scripts: create (the key is shown once), revoke |
| `u` | account: change the password, sign out everywhere |
| `x` | sign out |
| `Ctrl+P` | command palette: markets, ticket, orders, close all, history, alerts, keys, account, theme, sign out |
| `?` or `F1` | this help · `Ctrl+Q` quits |

| Order ticket | |
|---|---|
| `F2` / `F3` | long / short |
| `F4` | size in quantity or in USD |
| `F5` | order type: market, limit, stop |
| `Enter` | review, then `Enter` again to send · `Esc` goes back |

| Alerts, API keys, account | |
|---|---|
| `F2` / `F3` | price alert: above / below (it follows the price typed until you choose) |
| `n` / `m` / `d` | alerts: new price alert / margin-level alert / delete the highlighted one |
| `n` / `d` · `c` | API keys: new key / revoke the highlighted one · copy a new key (shown this once) |
| `r` · `Esc` | reload · back to the dashboard |

| Sign in | |
|---|---|
| `Ctrl+N` | create an account |
| `Ctrl+F` | forgotten password: a code by mail, then a new password |

A **market** order opens now, at the ask (long) or the bid (short). A **limit** order waits for a better
price (a buy limit for the ask to fall to its price, a sell limit for the bid to rise to it), a **stop**
order for a breakout (a buy stop for the ask to rise to its price, a sell stop for the bid to fall to it);
either then opens at that tick's price, after the margin check (no margin then: it is rejected, and a toast
says why). **Expires**: empty is good till cancelled, or a duration (`30m`, `1h`, `2d`), a time (`17:30`) or
a date and time (`2026-01-02 17:30`). A **trailing** distance makes the stop-loss follow the price up (a
long) or down (a short) at that distance, never back.

The ticket shows the margin the order will use and, for a market order, an estimate of the price at which
the account would be stopped out (margin level 50 %, other prices unchanged). Nothing is sent until every
field is valid.

The chart draws the selected market's levels as dashed lines: an open position's entry (`long 2`), its
stop-loss (`SL`, `trailing SL`) and take-profit (`TP`), and each working order (`buy limit 2`), with the
price on the axis; a level far off the chart is named at the top (`▲`) or bottom (`▼`) of the axis. In the
positions, `↑ 204.93` is a trailing stop-loss (it moves up; `↓` for a short).

A price alert watches the market's **bid** (above: the bid at or above its price; below: at or under it),
a margin-level alert the account's margin level; each fires **once**, with a toast (and a mail if asked).

Margin level turns **amber** below 150 % and **red** below 100 % (margin call). The top bar always shows the
feed: **live**, **reconnecting** or **stale** (a market with no price for 10 s).

Your session is kept in `session.json` in `$CFD_TUI_CONFIG_DIR`, else `$XDG_CONFIG_HOME/cfd-broker/`, else
`~/.config/cfd-broker/` (owner-only), until the token expires or you sign out.

*Esc closes this help.*
"""


class HelpScreen(ModalScreen[None]):
    """The keys, as a dialog."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close help")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Markdown(HELP)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
