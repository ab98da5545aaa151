"""`AppFooter`: Textual's `Footer`, without the keys it replaces staying in memory."""

from __future__ import annotations

from textual.widgets import Footer

from cfd_tui.layout import NARROW_BELOW


class AppFooter(Footer):
    """The footer of every screen: the keys of the screen, as Textual's `Footer` shows them.

    Textual's footer builds its keys again whenever the screen's bindings change (a screen comes back, the
    focus moves), and each key follows the footer's `compact` through a watcher that Textual drops only when
    `compact` next changes, which it may never do: every key ever shown would stay in memory, about 1 MB
    per return to the dashboard. After each rebuild the footer has its watchers checked, which drops those of
    the keys just removed.
    """

    async def recompose(self) -> None:
        await super().recompose()
        self.mutate_reactive(Footer.compact)  # the watchers run with the same value, and the removed keys' go

    def fit(self, width: int) -> None:
        """In a terminal narrower than `NARROW_BELOW` columns the keys fit only without the padding between them
        and the palette's hint (Ctrl+P still opens it, and Help lists it)."""
        self.compact = width < NARROW_BELOW
        self.show_command_palette = width >= NARROW_BELOW
