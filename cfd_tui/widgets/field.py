"""A text field whose editing keys act in the order they were typed."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import Input


def _editing_actions() -> dict[str, str]:
    actions: dict[str, str] = {}
    for binding in Input.BINDINGS:
        if isinstance(binding, Binding):
            for key in binding.key.split(","):
                actions[key.strip()] = binding.action
    return actions


class Field(Input):
    """An `Input` that runs its own keys (Backspace, Delete, Ctrl+U, the arrows, Enter...) as it reads them.

    Textual's `Input` inserts a typed character as it reads the key but runs a bound key only once the key has
    bubbled up to the app, so in a burst (a fast typist, an auto-type, a terminal driven by a script) the
    characters typed after a Backspace land first: `Backspace 1` on "3" gave "" instead of "1", and
    `Ctrl+U 0.01 Enter` in the part-close dialog sent an empty quantity, which closes the whole position.
    """

    EDITING = _editing_actions()

    async def _on_key(self, event: events.Key) -> None:
        action = None if event.is_printable else self.EDITING.get(event.key)
        if action is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        self._restart_blink()
        await self.run_action(action)
