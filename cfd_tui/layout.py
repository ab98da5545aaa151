"""What the app and its screens both need to know about the terminal's layout: the size breakpoints the
styles key on, the chart's intervals, and the views of the dashboard's lower pane.

A module of its own so that screens never import `cfd_tui.app` (which imports them).
"""

from __future__ import annotations

from typing import Literal

NARROW_BELOW = 110  # columns: below, screens get the class -narrow (else -wide)
SHORT_BELOW = 28  # lines: below, screens get the class -short (else -tall)
INTERVALS = ("1m", "5m", "15m", "1h")  # the chart's intervals, in the order the `i` key cycles them
BottomView = Literal["positions", "orders"]
BOTTOM_VIEWS: tuple[BottomView, ...] = ("positions", "orders")  # what the pane under the chart shows (`o` toggles)
