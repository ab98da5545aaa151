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
| `Tab` | move between the watchlist and the positions |
| `c` / `p` / `e` | close / partly close / edit the stops of the highlighted position |
| `h` | history: closed positions and the ledger |
| `x` | sign out |
| `Ctrl+P` | command palette: markets, ticket, history, theme, sign out |
| `?` or `F1` | this help · `Ctrl+Q` quits |

| Order ticket | |
|---|---|
| `F2` / `F3` | long / short |
| `F4` | size in quantity or in USD |
| `Enter` | review, then `Enter` again to send · `Esc` goes back |

The ticket shows the margin the order will use and an estimate of the price at which the account would be
stopped out (margin level 50 %, other prices unchanged). Nothing is sent until every field is valid.

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
