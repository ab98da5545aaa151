"""API keys for bots and scripts: the live keys (never their secrets), a new key whose secret is shown once, and
revoking one."""

from __future__ import annotations

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from cfd_client.errors import ClientError
from cfd_tui import format as fmt
from cfd_tui.screens.base import CfdModalScreen, CfdScreen
from cfd_tui.screens.confirm import ConfirmScreen
from cfd_tui.screens.form import FormMixin, form_end, form_field
from cfd_tui.widgets.fitted_table import FittedTable
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.live_table import Column
from cfd_tui.widgets.top_bar import TopBar
from shared.contracts.rest import ApiKey, ApiKeyCreated, Scope

KEY_COLUMNS = (Column("Name", "name", 24), Column("Scopes", "scopes", 12), Column("Created", "created", 19),
               Column("Last used", "used", 19, drop=2), Column("ID", "id", 16, drop=1))
KEY_NAME_MAX = 64
ABOUT_KEYS = ("A key lets a bot or a script use this account without the password ([b]Authorization: Bearer[/b] "
              "<key>, or the token of the feed's auth op). [b]read[/b] only reads; [b]read + trade[/b] also trades. "
              "Signing out everywhere leaves keys working: revoke a key here to stop it.")


def scopes_words(scopes: list[str]) -> str:
    """`read` or `read + trade`."""
    return " + ".join(scopes)


class ApiKeysScreen(CfdScreen[None]):
    """Pushed over the dashboard (or the account screen); Esc goes back."""

    BINDINGS = [
        Binding("n", "new_key", "New key"),
        Binding("d,delete", "revoke", "Revoke"),
        Binding("r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, ApiKey] = {}

    def compose(self) -> ComposeResult:
        yield TopBar(screen_name="API keys", id="top-bar")
        yield Static(ABOUT_KEYS, id="keys-about", classes="screen-about")
        yield Static("loading…", id="keys-summary", classes="screen-summary")
        yield FittedTable(KEY_COLUMNS, id="keys-table", cursor_type="row")
        yield Static("No API keys. Press [b]n[/b] to create one.", id="keys-empty", classes="screen-empty")
        yield AppFooter()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(AppFooter).fit(event.size.width)

    def on_mount(self) -> None:
        self.query_one("#keys-empty").display = False
        self.query_one("#keys-table").focus()
        self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    @work(group="keys", exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        summary = self.query_one("#keys-summary", Static)
        try:
            keys = await self.ctx.client.api_keys()
        except ClientError as exc:
            summary.update(Text(f"⚠ {getattr(exc, 'message', str(exc))}", style="bold red"))
            return
        self.show_keys(keys)

    def show_keys(self, keys: list[ApiKey]) -> None:
        self.keys = {k.id: k for k in keys}
        tz = self.ctx.tz
        rows: list[tuple[str | None, dict[str, object]]] = []
        for k in sorted(keys, key=lambda k: (k.created_at, k.id), reverse=True):
            used = fmt.timestamp(k.last_used_at, tz) if k.last_used_at else "—"  # not every server tells
            rows.append((k.id, {"name": k.name, "scopes": scopes_words(k.scopes),
                                "created": fmt.timestamp(k.created_at, tz), "used": used, "id": k.id}))
        table = self.query_one("#keys-table", FittedTable)
        table.set_rows(rows)
        table.display = bool(keys)
        self.query_one("#keys-empty").display = not keys
        self.query_one("#keys-summary", Static).update(
            Text.assemble(("Live keys ", "dim"), str(len(keys)), ("   at most 20", "dim")))

    def selected(self) -> ApiKey | None:
        table = self.query_one("#keys-table", FittedTable)
        if not table.row_count:
            return None
        return self.keys.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or "")

    def action_new_key(self) -> None:
        def done(created: ApiKey | None) -> None:
            if created is not None:
                self.show_keys([*self.keys.values(), created])
                self.action_reload()

        self.app.push_screen(NewApiKeyScreen(), done)

    def action_revoke(self) -> None:
        key = self.selected()
        if key is None:
            self.notify("Select a key first.", severity="warning")
            return
        client = self.ctx.client

        async def revoke() -> None:
            await client.revoke_api_key(key.id)

        def done(revoked: bool | None) -> None:
            if revoked:
                self.notify(f"Revoked the key {key.name!r}: requests with it are refused from now on.",
                            title="Key revoked", markup=False)
                self.show_keys([k for k in self.keys.values() if k.id != key.id])
                self.action_reload()

        self.app.push_screen(ConfirmScreen(
            f"Revoke the key {key.name!r} ({scopes_words(key.scopes)})?",
            "Every program using it is refused from its next request (401 key_revoked), and a feed signed in with "
            "it leaves the account channel. This cannot be undone: a new key has a new secret.",
            "Revoke key", revoke, keep="Keep it", dialog_id="revoke-key-dialog"), done)


class NewApiKeyScreen(FormMixin, CfdModalScreen[ApiKey | None]):
    """A name and the scope, then the new key's secret, shown this once (with a way to copy it); dismissed with
    the key as listed (no secret), or None when cancelled. The secret lives only in this dialog."""

    FIELDS = {"name": "key-name", "scopes": "key-scope"}
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("f2", "scope('read')", "Read only"),
        Binding("f3", "scope('trade')", "Read and trade"),
        Binding("c", "copy", "Copy key"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.created: ApiKeyCreated | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="new-key-dialog", classes="dialog"):
            yield Static("New API key", id="new-key-title", classes="dialog-title")
            with Vertical(id="new-key-form"):
                with Vertical(classes="form-fields"):
                    yield from form_field("Name", "key-name", "", "what uses it, e.g. grid bot",
                                          max_length=KEY_NAME_MAX)
                with RadioSet(id="key-scope"):
                    yield RadioButton("Read only", value=True, id="scope-read")
                    yield RadioButton("Read and trade", id="scope-trade")
                yield Static("A read key sees prices, the account, positions and orders. A read-and-trade key can "
                             "also open, change and close them.", classes="preview")
            with Vertical(id="new-key-shown"):
                yield Static("", id="new-key-warning", classes="key-warning")
                yield Static("", id="key-secret", classes="key-secret", markup=False)
                yield Static("[b]c[/b] copies it to the clipboard (where the terminal allows it), or select it with "
                             "the mouse (Shift+drag in most terminals).", classes="preview")
            yield from form_end(Button("Create key", variant="primary", id="create"),
                                Button("Copy key", variant="primary", id="copy"), Button("Cancel", id="close"))
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#new-key-shown").display = False
        self.query_one("#copy").display = False
        self.query_one("#key-name", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "copy":
            return self.created is not None
        if action == "scope":
            return self.created is None
        return True

    def action_scope(self, scope: str) -> None:
        self.query_one(f"#scope-{scope}", RadioButton).value = True

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def submit(self) -> None:
        if self.created is not None:
            return
        name = self.query_one("#key-name", Input).value.strip()
        if not name:
            self.show_errors({"name": "Name the key after what will use it, e.g. grid bot."})
            return
        scopes: list[Scope] = ["read", "trade"] if self.query_one("#scope-trade", RadioButton).value else ["read"]
        self.clear_errors()
        self._create(name, scopes)

    @work(group="new-key", exclusive=True, exit_on_error=False)
    async def _create(self, name: str, scopes: list[Scope]) -> None:
        button = self.query_one("#create", Button)
        button.disabled = True
        try:
            created = await self.ctx.client.create_api_key(name, scopes)
        except ClientError as exc:  # too_many_keys, a name too long, no answer
            button.disabled = False
            self.show_failure(exc)
            return
        self.created = created
        self._show_secret(created)

    def _show_secret(self, created: ApiKeyCreated) -> None:
        self.query_one("#new-key-title", Static).update(f"Key created: {created.name} ({scopes_words(created.scopes)})")
        self.query_one("#new-key-form").display = False
        self.query_one("#create").display = False
        self.query_one("#new-key-warning", Static).update(
            "[b]Copy this key now: it is shown only this once.[/b] It is stored hashed; if it is lost, revoke it "
            "and create another.")
        self.query_one("#key-secret", Static).update(created.key)
        self.query_one("#new-key-shown").display = True
        copy = self.query_one("#copy", Button)
        copy.display = True
        close = self.query_one("#close", Button)
        close.label = "Done"
        copy.focus()
        self.refresh_bindings()

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        if self.created is None:
            return
        self.app.copy_to_clipboard(self.created.key)
        self.notify("The key is on the clipboard.", title="Copied")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        created, self.created = self.created, None
        if created is None:
            self.dismiss(None)
            return
        self.query_one("#key-secret", Static).update("")  # the secret leaves the screen with the dialog
        self.dismiss(ApiKey(id=created.id, name=created.name, scopes=created.scopes, created_at=created.created_at,
                            last_used_at=created.last_used_at))
