"""The order ticket: side, size (quantity or USD), leverage, stops; a live preview of margin, costs and
stop-out; a confirmation step; nothing is sent until every field is valid."""

from __future__ import annotations

from decimal import Decimal

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from cfd_client.errors import ClientError
from cfd_client.models import Position, Side
from cfd_tui import format as fmt
from cfd_tui.messages import OrderFilled
from cfd_tui.orders import Checked, OrderPlan, check_ticket
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter
from shared.trading import open_price

DEFAULT_LEVERAGE = 5


class TicketScreen(FormMixin, CfdModalScreen[Position | None]):
    """Dismissed with the opened position, or None when cancelled."""

    FIELDS = {"amount": "amount", "qty": "amount", "leverage": "leverage", "stop_loss": "stop-loss",
              "take_profit": "take-profit"}
    BINDINGS = [
        Binding("escape", "cancel", "Cancel / back"),
        Binding("f2", "side('long')", "Long"),
        Binding("f3", "side('short')", "Short"),
        Binding("f4", "toggle_units", "Qty/USD"),
    ]

    def __init__(self, symbol: str, side: Side = "long") -> None:
        super().__init__()
        self.symbol = symbol
        self.side: Side = side
        self.in_usd = False
        self.plan: OrderPlan | None = None
        self.confirming = False

    def compose(self) -> ComposeResult:
        market = self.ctx.board.markets[self.symbol]
        with Vertical(id="ticket", classes="dialog"):
            yield Static("", id="ticket-title", classes="dialog-title")
            with Vertical(id="ticket-form"):
                with RadioSet(id="side"):
                    yield RadioButton("Long (buy at ask)", value=self.side == "long", id="side-long")
                    yield RadioButton("Short (sell at bid)", value=self.side == "short", id="side-short")
                with RadioSet(id="units"):
                    yield RadioButton(f"Quantity ({market.base})", value=True, id="units-qty")
                    yield RadioButton("Amount (USD)", id="units-usd")
                with Vertical(id="ticket-fields"):
                    for label, input_id, value, placeholder in (
                        ("Quantity", "amount", "", self._amount_hint()),
                        (f"Leverage (1–{market.max_leverage}×)", "leverage",
                         str(min(DEFAULT_LEVERAGE, market.max_leverage)), ""),
                        ("Stop-loss (optional)", "stop-loss", "", "price"),
                        ("Take-profit (optional)", "take-profit", "", "price"),
                    ):
                        with Horizontal(classes="field"):
                            yield Label(label, id=f"{input_id}-label")
                            # validate_on=[]: Textual's own validation would clear the -invalid mark on blur
                            yield Field(value=value, placeholder=placeholder, id=input_id, compact=True,
                                        validate_on=[])
                        yield Static("", id=f"{input_id}-error", classes="field-error")
            yield Static("", id="ticket-preview", classes="preview")
            yield Static("", id="ticket-confirm", classes="confirm")
            yield from form_end(Button("Review order", variant="primary", id="review"), Button("Cancel", id="cancel"))
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#ticket-confirm").display = False
        self.query_one("#amount", Input).focus()
        self._retitle()
        self._update_preview()
        self.watch(self.app, "market_version", lambda _v: self._update_preview(), init=False)

    # --- form ---------------------------------------------------------------------------------------------

    def _retitle(self) -> None:
        verb = "Buy / long" if self.side == "long" else "Sell / short"
        title = self.query_one("#ticket-title", Static)
        title.update(f"{verb} {self.symbol.replace('_', '/')}")
        title.set_class(self.side == "long", "-long")
        title.set_class(self.side == "short", "-short")

    def _check(self) -> Checked:
        board = self.ctx.board
        value = {key: self.query_one(f"#{key}", Input).value for key in ("amount", "leverage", "stop-loss",
                                                                          "take-profit")}
        quotes = board.quotes()
        return check_ticket(board.markets[self.symbol], quotes.get(self.symbol),
                            self.ctx.portfolio.account, side=self.side,
                            amount=value["amount"], in_usd=self.in_usd, leverage=value["leverage"],
                            stop_loss=value["stop-loss"], take_profit=value["take-profit"])

    def _amount_hint(self) -> str:
        """The rules of the amount field: the market's quantity rules, or in USD what they come to now."""
        market = self.ctx.board.markets[self.symbol]
        if not self.in_usd:
            return f"min {market.min_qty.normalize():f}, step {market.qty_step.normalize():f} {market.base}"
        quote = self.ctx.board.quotes().get(self.symbol)
        steps = f"buys whole steps of {market.qty_step.normalize():f} {market.base}"
        if quote is None:
            return f"USD, {steps}"
        return f"USD, min ≈ {fmt.money(market.min_qty * open_price(self.side, quote))}, {steps}"

    def _update_preview(self, typed: str | None = None) -> None:
        """Redraw the preview, and the errors shown beside the fields as they stand now.

        An error shown after a review follows its field (it goes once fixed); a leverage above the market's
        maximum is flagged as it is typed (`typed`: the id of the field that just changed).
        """
        if self.confirming:
            return
        market = self.ctx.board.markets[self.symbol]
        checked = self._check()
        p = checked.preview
        tick, step = market.price_tick, market.qty_step
        if p.shortfall is not None:
            stop_out = f"[b $error]not enough margin[/]: {fmt.money(p.shortfall)} USD short"
        elif p.stop_out is not None:
            stop_out = f"{fmt.price(p.stop_out, tick)}   [dim](margin level 50 %, other prices unchanged)[/]"
        else:
            stop_out = "out of reach" if p.margin is not None and p.free_after is not None else "—"
        lines = [
            f"[dim]Price[/]      {fmt.price(p.price, tick)}   [dim]({'ask' if self.side == 'long' else 'bid'})[/]",
            f"[dim]Quantity[/]   {fmt.qty(p.qty, step)} {market.base}   [dim]Value[/] {fmt.money(p.notional)} USD",
            f"[dim]Margin[/]     {fmt.money(p.margin)} USD   [dim]Free after[/] {fmt.money(p.free_after)} USD",
            f"[dim]Costs[/]      {self._costs(p.commission, p.financing_per_day)}",
            f"[dim]Stop-out ≈[/] {stop_out}",
        ]
        self.query_one("#ticket-preview", Static).update("\n".join(lines))
        rechecked = set(self.shown_errors())
        leverage = self.query_one("#leverage", Input).value.strip()
        if typed == "leverage" and leverage:
            rechecked.add("leverage")
        self.recheck_fields(checked.errors, rechecked)
        if self.in_usd:
            self.query_one("#amount", Input).placeholder = self._amount_hint()

    @staticmethod
    def _costs(commission: Decimal | None, per_day: Decimal | None) -> str:
        """The commission charged now and the financing of each day held (a negative rate is a credit)."""
        if commission is None or per_day is None:
            return "—"
        daily = f"{fmt.money(-per_day)} USD/day credit" if per_day < 0 else f"{fmt.money(per_day)} USD/day"
        return f"{fmt.money(commission)} USD commission now   [dim]Financing[/] {daily}"

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._update_preview(event.input.id)

    @on(RadioSet.Changed, "#side")
    def _side_changed(self, event: RadioSet.Changed) -> None:
        self.side = "long" if event.pressed.id == "side-long" else "short"
        self._retitle()
        self.query_one("#amount", Input).placeholder = self._amount_hint()
        self._update_preview()

    @on(RadioSet.Changed, "#units")
    def _units_changed(self, event: RadioSet.Changed) -> None:
        self.in_usd = event.pressed.id == "units-usd"
        self.query_one("#amount-label", Label).update("Amount (USD)" if self.in_usd else "Quantity")
        self.query_one("#amount", Input).placeholder = self._amount_hint()
        self._update_preview()

    def action_side(self, side: Side) -> None:
        self.query_one(f"#side-{side}", RadioButton).value = True

    def action_toggle_units(self) -> None:
        self.query_one("#units-usd" if not self.in_usd else "#units-qty", RadioButton).value = True

    # --- review, confirm, send ----------------------------------------------------------------------------

    @on(Input.Submitted)
    @on(Button.Pressed, "#review")
    def review(self) -> None:
        if self.confirming:
            self._send()
            return
        checked = self._check()
        if checked.plan is None:
            errors = dict(checked.errors)
            self.show_errors(errors)
            return
        self.clear_errors()
        self.plan = checked.plan
        self._confirming(True, checked)

    def _confirming(self, on_: bool, checked: Checked | None = None) -> None:
        self.confirming = on_
        self.query_one("#ticket").set_class(on_, "-confirming")
        self.query_one("#ticket-form").disabled = on_
        confirm = self.query_one("#ticket-confirm", Static)
        confirm.display = on_
        button = self.query_one("#review", Button)
        button.label = "Confirm — send order" if on_ else "Review order"
        button.variant = "success" if on_ else "primary"
        button.refresh(layout=True)  # a longer label needs a wider button
        if on_ and checked is not None and self.plan is not None:
            market = self.ctx.board.markets[self.symbol]
            p, plan = checked.preview, self.plan
            stops = []
            if plan.stop_loss is not None:
                stops.append(f"stop-loss {fmt.price(plan.stop_loss, market.price_tick)}")
            if plan.take_profit is not None:
                stops.append(f"take-profit {fmt.price(plan.take_profit, market.price_tick)}")
            confirm.update(
                f"Open [b]{plan.side.upper()} {fmt.qty(plan.qty, market.qty_step)} {market.base}[/b] at about "
                f"{fmt.price(p.price, market.price_tick)} with {plan.leverage}× leverage, using "
                f"{fmt.money(p.margin)} USD of margin" + (f", {' and '.join(stops)}" if stops else "")
                + (f"; {fmt.money(p.commission)} USD of commission is charged now" if p.commission else "") + ".\n"
                "[b]Enter[/b] sends it · [b]Esc[/b] goes back to edit.")
            button.focus()
        elif not on_:
            self.query_one("#amount", Input).focus()
            self._update_preview()

    @work(group="order", exclusive=True, exit_on_error=False)
    async def _send(self) -> None:
        plan = self.plan
        if plan is None:
            return
        button = self.query_one("#review", Button)
        button.disabled, button.label = True, "Sending…"
        try:
            position = await self.ctx.client.open_position(
                plan.symbol, plan.side, plan.qty, plan.leverage, stop_loss=plan.stop_loss,
                take_profit=plan.take_profit)
        except ClientError as exc:
            button.disabled = False
            self._confirming(False)
            self.show_failure(exc)
            return
        self.app.post_message(OrderFilled(position))  # to the app: this dialog is closing
        self.dismiss(position)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.confirming:
            self._confirming(False)
        else:
            self.dismiss(None)
