"""The bases of the terminal's screens: each reads the app through its typed `ctx` (see `cfd_tui.context`)."""

from __future__ import annotations

from textual.screen import ModalScreen, Screen, ScreenResultType

from cfd_tui.context import AppContext, app_context


class CfdScreen(Screen[ScreenResultType]):
    """A full screen of the terminal."""

    @property
    def ctx(self) -> AppContext:
        """The app's client and state (read-only)."""
        return app_context(self)


class CfdModalScreen(CfdScreen[ScreenResultType], ModalScreen[ScreenResultType]):
    """A dialog over another screen."""
