"""Set an alert: a price alert on a market's bid (the dialog starts at the bid now), or a margin-level alert."""

from __future__ import annotations

from decimal import Decimal

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Checkbox, Input, RadioButton, RadioSet, Static

from cfd_client.errors import ClientError
from cfd_client.models import Alert
from cfd_tui import format as fmt
from cfd_tui.alerts import (
    DEFAULT_MARGIN_LEVEL,
    NOTE_MAX,
    Condition,
    already_met,
    check_margin_alert,
    check_price_alert,
    condition_words,
    market_name,
    note_of,
    suggested_condition,
)
from cfd_tui.messages import AlertCreated
from cfd_tui.orders import parse_decimal
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end, form_field
from cfd_tui.widgets.footer import AppFooter
from shared.markets import Market


class NewAlertScreen(FormMixin, CfdModalScreen[Alert | None]):
    """A price alert on `symbol`'s bid, or with `symbol` None a margin-level alert; dismissed with the alert
    set, or None when cancelled. A price alert's price follows the bid until the trader types one (selected, so
    the first key typed replaces it); its condition follows the price typed (above the bid now: above) until
    the trader chooses it (F2 / F3, or the mouse)."""

    FIELDS = {"price": "alert-price", "below": "alert-below", "note": "alert-note", "notify": "alert-mail"}
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("f2", "condition('above')", "Above"),
        Binding("f3", "condition('below')", "Below"),
    ]

    def __init__(self, symbol: str | None = None) -> None:
        super().__init__()
        self.symbol = symbol
        self.condition: Condition = "above"
        self._chosen = False  # the trader chose the condition: the price typed no longer moves it
        self._set_by_us = 0  # condition changes made here, whose Changed events are still to come
        self._price_typed = False  # the trader typed the price: it no longer follows the bid
        self._shown_price = ""  # the price this dialog put in the field (the bid), to tell it from one typed

    @property
    def market(self) -> Market | None:
        return self.ctx.board.markets.get(self.symbol) if self.symbol else None

    @property
    def bid(self) -> Decimal | None:
        ticker = self.ctx.board.tickers.get(self.symbol or "")
        return None if ticker is None else ticker.bid

    def compose(self) -> ComposeResult:
        market = self.market
        user = self.ctx.user
        mail_to = f" at {user.email}" if user is not None else ""
        with Vertical(id="alert-dialog", classes="dialog"):
            if market is not None:
                yield Static(f"Price alert · {market_name(market.symbol)}", classes="dialog-title")
                with RadioSet(id="condition"):
                    yield RadioButton("Above: the bid at or above", value=True, id="condition-above")
                    yield RadioButton("Below: the bid at or below", id="condition-below")
                with Vertical(classes="form-fields"):
                    bid = self.bid
                    start = "" if bid is None else fmt.price(bid, market.price_tick).replace(",", "")
                    self._shown_price = start
                    yield from form_field("Price", "alert-price", start, f"a multiple of {market.price_tick}")
                    yield from form_field("Note (optional)", "alert-note", "", "shown with the alert",
                                          max_length=NOTE_MAX)
            else:
                yield Static("Margin-level alert", classes="dialog-title")
                with Vertical(classes="form-fields"):
                    yield from form_field("Margin level below (%)", "alert-below", f"{DEFAULT_MARGIN_LEVEL}",
                                          "percent, like 150")
                    yield from form_field("Note (optional)", "alert-note", "", "shown with the alert",
                                          max_length=NOTE_MAX)
            yield Checkbox(f"Mail me too{mail_to}", id="alert-mail")
            yield Static("", id="alert-preview", classes="preview")
            yield from form_end(Button("Set alert", variant="primary", id="save"), Button("Cancel", id="cancel"))
        yield AppFooter()

    def on_mount(self) -> None:
        field = self.query_one("#alert-price" if self.market is not None else "#alert-below", Input)
        field.focus()
        self._preview()
        self.watch(self.app, "market_version", lambda _v: self._follow_bid(), init=False)

    def _follow_bid(self) -> None:
        """The price field shows the bid now until the trader types a price; then the preview."""
        market, bid = self.market, self.bid
        if market is not None and bid is not None and not self._price_typed:
            field = self.query_one("#alert-price", Input)
            start = fmt.price(bid, market.price_tick).replace(",", "")
            if field.value != start:
                self._shown_price = start
                with field.prevent(Input.Changed):
                    field.value = start
                if field.has_focus:
                    field.select_all()
        self._preview()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "condition":
            return self.market is not None
        return True

    # --- the condition ------------------------------------------------------------------------------------

    def action_condition(self, condition: Condition) -> None:
        self._chosen = True
        self.query_one(f"#condition-{condition}", RadioButton).value = True

    @on(RadioSet.Changed, "#condition")
    def _condition_changed(self, event: RadioSet.Changed) -> None:
        self.condition = "below" if event.pressed.id == "condition-below" else "above"
        if self._set_by_us:
            self._set_by_us -= 1
            if not self._set_by_us:  # the price may have changed while the radio buttons caught up
                self._follow_price(self._typed_price())
        else:
            self._chosen = True
        self._preview()

    def _follow_price(self, price: Decimal | None) -> None:
        """Point the condition at the typed price (over the bid: above), unless the trader chose it. One change
        at a time: the radio buttons settle on their own messages, and the one after is decided when they have."""
        if self._chosen or self._set_by_us:
            return
        wanted = suggested_condition(price, self.bid, self.condition)
        if wanted != self.condition:
            self._set_by_us += 1
            self.condition = wanted
            self.query_one(f"#condition-{wanted}", RadioButton).value = True

    def _typed_price(self) -> Decimal | None:
        try:
            return parse_decimal(self.query_one("#alert-price", Input).value, "price")
        except ValueError:
            return None

    # --- preview ------------------------------------------------------------------------------------------

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        if event.input.id == "alert-price" and event.value != self._shown_price:
            self._price_typed = True
            self._follow_price(self._typed_price())
        self._preview()

    def _preview(self) -> None:
        preview = self.query_one("#alert-preview", Static)
        market = self.market
        if market is None:
            preview.update(self._margin_preview())
            return
        bid = self.bid
        now = f"[dim]Bid now[/] {fmt.price(bid, market.price_tick)}"
        price = self._typed_price()
        if price is None or price <= 0:
            preview.update(f"{now}. A price alert watches the bid, and fires once.")
            return
        words = f"the {market_name(market.symbol)} bid is {condition_words(self.condition)} " \
                f"{fmt.price(price, market.price_tick)}"
        if price == bid:
            preview.update(f"{now}. Type the price to watch for: over the bid for a rise, under it for a fall "
                           "(at the bid itself, it fires at the next tick).")
            return
        if already_met(self.condition, price, bid):
            preview.update(f"{now}: already {condition_words(self.condition)} it, so it fires at the next tick.\n"
                           f"Fires once, when {words}.")
            return
        away = fmt.change_percent(price, bid) if bid is not None else None
        distance = "" if away is None else f" ({fmt.percent(away, signed=True)} from now)"
        preview.update(f"{now}.\nFires once, when {words}{distance}.")

    def _margin_preview(self) -> str:
        account = self.ctx.portfolio.account
        level = account.margin_level if account is not None else None
        now = f"[dim]Margin level now[/] {fmt.percent(level)}" if level is not None else \
            "[dim]No margin level now[/] (no open positions): it counts once one opens"
        try:
            below = parse_decimal(self.query_one("#alert-below", Input).value.strip().rstrip("%"), "margin level")
        except ValueError:
            below = None
        rule = "Margin call at 100 %, stop-out at 50 %."
        if below is None or below <= 0:
            return f"{now}. {rule}"
        under = level is not None and level < below
        then = " It is under that already: it fires at the next tick." if under else ""
        return f"{now}. {rule}\nFires once, when the margin level falls below {fmt.percent(below)}.{then}"

    # --- set ----------------------------------------------------------------------------------------------

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def submit(self) -> None:
        note_raw = self.query_one("#alert-note", Input).value
        market = self.market
        if market is not None:
            price, errors = check_price_alert(market, self.query_one("#alert-price", Input).value, note_raw)
        else:
            price, errors = check_margin_alert(self.query_one("#alert-below", Input).value, note_raw)
        if errors or price is None:
            self.show_errors(errors)
            return
        self.clear_errors()
        self._save(price, note_of(note_raw), self.query_one("#alert-mail", Checkbox).value)

    @work(group="alert", exclusive=True, exit_on_error=False)
    async def _save(self, value: Decimal, note: str | None, mail: bool) -> None:
        button = self.query_one("#save", Button)
        button.disabled = True
        client = self.ctx.client
        try:
            if self.symbol is not None and self.market is not None:
                alert = await client.create_alert(self.symbol, self.condition, value, note=note, mail=mail)
            else:
                alert = await client.create_margin_alert(value, note=note, mail=mail)
        except ClientError as exc:  # invalid_alert (by field), too_many_alerts, unknown_market, no answer
            button.disabled = False
            self.show_failure(exc)
            return
        self.app.post_message(AlertCreated(alert))  # to the app: this dialog is closing
        self.dismiss(alert)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
