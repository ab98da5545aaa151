"""A confirmation that does what it asks about: revoke an API key, delete an alert, sign out everywhere."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Static

from cfd_client.errors import ClientError
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.footer import AppFooter


class ConfirmScreen(FormMixin, CfdModalScreen[bool]):
    """`title` and what will happen (`text`); the `confirm` button (Enter) runs `action` and closes with True
    once it is done, or shows why not (the platform's sentence) and stays; `keep` (Esc) closes with False."""

    BINDINGS = [Binding("escape", "keep", "Keep")]

    def __init__(self, title: str, text: str, confirm: str, action: Callable[[], Awaitable[object]], *,
                 keep: str = "Cancel", dialog_id: str = "confirm-dialog") -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.confirm_label = confirm
        self.keep_label = keep
        self.action = action
        self.dialog_id = dialog_id

    def compose(self) -> ComposeResult:
        with Vertical(id=self.dialog_id, classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.text, id="confirm-text", classes="preview")
            yield from form_end(Button(self.confirm_label, variant="error", id="confirm"),
                                Button(self.keep_label, id="keep"))
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    @on(Button.Pressed, "#confirm")
    def submit(self) -> None:
        self._run()

    @work(group="confirm", exclusive=True, exit_on_error=False)
    async def _run(self) -> None:
        button = self.query_one("#confirm", Button)
        button.disabled = True
        try:
            await self.action()
        except ClientError as exc:
            button.disabled = False
            self.show_failure(exc)
            return
        self.dismiss(True)

    @on(Button.Pressed, "#keep")
    def action_keep(self) -> None:
        self.dismiss(False)
