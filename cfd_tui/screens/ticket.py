"""The order ticket: side, order type (market, limit, stop), size (quantity or USD), leverage, stops and a
trailing stop; for a limit or stop order its price and expiry. A live preview of margin, costs and stop-out
(or, for a pending order, what triggers it and when it expires); a confirmation step; nothing is sent until
every field is valid."""

from __future__ import annotations

from decimal import Decimal

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from cfd_client.errors import ClientError
from cfd_client.models import Order, Position, Side
from cfd_tui import format as fmt
from cfd_tui.messages import OrderFilled, OrderPlaced
from cfd_tui.orders import Checked, OrderKind, OrderPlan, check_ticket, parse_expiry, suggested_price
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter
from shared.markets import Market
from shared.trading import open_price

DEFAULT_LEVERAGE = 5
KINDS: tuple[OrderKind, ...] = ("market", "limit", "stop")


def order_words(side: Side, kind: OrderKind) -> str:
    """`Buy limit`, `Sell stop`, `Buy / long` (a market order)."""
    if kind == "market":
        return "Buy / long" if side == "long" else "Sell / short"
    return f"{'Buy' if side == 'long' else 'Sell'} {kind}"


def trigger_words(side: Side, kind: OrderKind) -> tuple[str, str]:
    """What a pending order waits for: (`ask`, `at or below`) for a buy limit, (`bid`, `at or above`) for a sell
    limit, and the other way round for a stop."""
    lower = (side == "long") == (kind == "limit")
    return ("ask" if side == "long" else "bid"), f"at or {'below' if lower else 'above'}"


class TicketScreen(FormMixin, CfdModalScreen[Position | Order | None]):
    """Dismissed with the opened position (a market order) or the placed order (limit, stop), or None when
    cancelled."""

    FIELDS = {"amount": "amount", "qty": "amount", "leverage": "leverage", "stop_loss": "stop-loss",
              "take_profit": "take-profit", "trailing_distance": "trailing", "price": "order-price",
              "expires_at": "expiry"}
    BINDINGS = [
        Binding("escape", "cancel", "Cancel / back"),
        Binding("f2", "side('long')", "Long"),
        Binding("f3", "side('short')", "Short"),
        Binding("f4", "toggle_units", "Qty/USD"),
        Binding("f5", "next_kind", "Type", tooltip="Market, limit or stop order"),
    ]

    def __init__(self, symbol: str, side: Side = "long", kind: OrderKind = "market") -> None:
        super().__init__()
        self.symbol = symbol
        self.side: Side = side
        self.kind: OrderKind = kind
        self.in_usd = False
        self.plan: OrderPlan | None = None
        self.confirming = False
        self._price_typed = False  # the trader typed the order's price: a side or type change keeps it

    @property
    def market(self) -> Market:
        return self.ctx.board.markets[self.symbol]

    def compose(self) -> ComposeResult:
        market = self.market
        with Vertical(id="ticket", classes="dialog"):
            yield Static("", id="ticket-title", classes="dialog-title")
            with Vertical(id="ticket-form"):
                with RadioSet(id="side"):
                    yield RadioButton("Long (buy at ask)", value=self.side == "long", id="side-long")
                    yield RadioButton("Short (sell at bid)", value=self.side == "short", id="side-short")
                with RadioSet(id="kind"):
                    for kind in KINDS:
                        yield RadioButton(kind.capitalize(), value=self.kind == kind, id=f"kind-{kind}")
                with RadioSet(id="units"):
                    yield RadioButton(f"Quantity ({market.base})", value=True, id="units-qty")
                    yield RadioButton("Amount (USD)", id="units-usd")
                with Vertical(id="ticket-fields"):
                    yield from self._field("Quantity", "amount", "", self._amount_hint())
                    yield from self._field(f"Leverage (1–{market.max_leverage}×)", "leverage",
                                           str(min(DEFAULT_LEVERAGE, market.max_leverage)), "")
                    # a pending order's price and expiry share a line (shown for a limit or stop order only)
                    with Horizontal(classes="field", id="pending-row"):
                        yield Label("Price", id="order-price-label")
                        yield Field(id="order-price", placeholder="price", compact=True, validate_on=[])
                        yield Label("Expires", id="expiry-label")
                        yield Field(id="expiry", placeholder="GTC · 1h · 2d · 17:30", compact=True, validate_on=[])
                    yield Static("", id="order-price-error", classes="field-error")
                    yield Static("", id="expiry-error", classes="field-error")
                    yield from self._field("Stop-loss (optional)", "stop-loss", "", "price")
                    yield from self._field("Take-profit (optional)", "take-profit", "", "price")
                    yield from self._field("Trailing (optional)", "trailing", "",
                                           "distance the stop-loss trails the price by")
            yield Static("", id="ticket-preview", classes="preview")
            yield Static("", id="ticket-confirm", classes="confirm")
            yield from form_end(Button("Review order", variant="primary", id="review"), Button("Cancel", id="cancel"))
        yield AppFooter()

    @staticmethod
    def _field(label: str, input_id: str, value: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label(label, id=f"{input_id}-label")
            # validate_on=[]: Textual's own validation would clear the -invalid mark on blur
            yield Field(value=value, placeholder=placeholder, id=input_id, compact=True, validate_on=[])
        yield Static("", id=f"{input_id}-error", classes="field-error")

    def on_mount(self) -> None:
        self.query_one("#ticket-confirm").display = False
        self.query_one("#amount", Input).focus()
        self._show_kind()
        self.watch(self.app, "market_version", lambda _v: self._update_preview(), init=False)

    # --- form ---------------------------------------------------------------------------------------------

    def _retitle(self) -> None:
        title = self.query_one("#ticket-title", Static)
        title.update(f"{order_words(self.side, self.kind)} {self.symbol.replace('_', '/')}")
        title.set_class(self.side == "long", "-long")
        title.set_class(self.side == "short", "-short")

    def _show_kind(self) -> None:
        """Show the fields of the order type (a pending order's price and expiry) and suggest its price."""
        pending = self.kind != "market"
        self.query_one("#pending-row").display = pending
        if not pending:
            self.recheck_fields({}, ["order-price", "expiry"])  # their errors go with them
        else:
            self.query_one("#order-price-label", Label).update(f"{self.kind.capitalize()} price")
            self._suggest_price()
        self._retitle()
        self._update_preview()

    def _suggest_price(self) -> None:
        """A price 1 % away on the side the order waits for, unless the trader typed one."""
        quote = self.ctx.board.quotes().get(self.symbol)
        field = self.query_one("#order-price", Input)
        if self.kind == "market" or quote is None or (self._price_typed and field.value.strip()):
            return
        with field.prevent(Input.Changed):
            field.value = f"{suggested_price(self.side, self.kind, quote, self.market):f}"
        self._price_typed = False

    def _check(self) -> Checked:
        board = self.ctx.board
        value = {key: self.query_one(f"#{key}", Input).value
                 for key in ("amount", "leverage", "stop-loss", "take-profit", "trailing", "order-price", "expiry")}
        checked = check_ticket(self.market, board.quotes().get(self.symbol), self.ctx.portfolio.account,
                               side=self.side, amount=value["amount"], in_usd=self.in_usd,
                               leverage=value["leverage"], stop_loss=value["stop-loss"],
                               take_profit=value["take-profit"], kind=self.kind, trailing=value["trailing"],
                               price=value["order-price"], expiry=value["expiry"],
                               now_ms=int(self.ctx.clock() * 1000), tz=self.ctx.tz)
        if self.kind == "market" and "price" in checked.errors:  # no quote yet: not the (hidden) price field's
            checked.errors["form"] = checked.errors.pop("price")
        return checked

    def _amount_hint(self) -> str:
        """The rules of the amount field: the market's quantity rules, or in USD what they come to now."""
        market = self.market
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
        checked = self._check()
        lines = self._market_lines(checked) if self.kind == "market" else self._pending_lines(checked)
        self.query_one("#ticket-preview", Static).update("\n".join(lines))
        rechecked = set(self.shown_errors())
        leverage = self.query_one("#leverage", Input).value.strip()
        if typed == "leverage" and leverage:
            rechecked.add("leverage")
        self.recheck_fields(checked.errors, rechecked)
        if self.in_usd:
            self.query_one("#amount", Input).placeholder = self._amount_hint()

    @staticmethod
    def _costs(commission: Decimal | None, per_day: Decimal | None, when: str = "now") -> str:
        """The commission charged on opening (`when`: now, or when a pending order fills) and the financing of
        each day held (a negative rate is a credit)."""
        if commission is None or per_day is None:
            return "—"
        daily = f"{fmt.money(-per_day)} USD/day credit" if per_day < 0 else f"{fmt.money(per_day)} USD/day"
        return f"{fmt.money(commission)} USD commission {when}   [dim]Financing[/] {daily}"

    def _market_lines(self, checked: Checked) -> list[str]:
        """A market order: the price it fills at now, its size, margin and the stop-out estimate."""
        market = self.market
        p = checked.preview
        tick, step = market.price_tick, market.qty_step
        if p.shortfall is not None:
            stop_out = f"[b $error]not enough margin[/]: {fmt.money(p.shortfall)} USD short"
        elif p.stop_out is not None:
            stop_out = f"{fmt.price(p.stop_out, tick)}   [dim](margin level 50 %, other prices unchanged)[/]"
        else:
            stop_out = "out of reach" if p.margin is not None and p.free_after is not None else "—"
        return [
            f"[dim]Price[/]      {fmt.price(p.price, tick)}   [dim]({'ask' if self.side == 'long' else 'bid'})[/]",
            f"[dim]Quantity[/]   {fmt.qty(p.qty, step)} {market.base}   [dim]Value[/] {fmt.money(p.notional)} USD",
            f"[dim]Margin[/]     {fmt.money(p.margin)} USD   [dim]Free after[/] {fmt.money(p.free_after)} USD",
            f"[dim]Costs[/]      {self._costs(p.commission, p.financing_per_day)}",
            f"[dim]Stop-out ≈[/] {stop_out}",
        ]

    def _pending_lines(self, checked: Checked) -> list[str]:
        """A limit or stop order: what triggers it, its size and margin at its price, and when it expires."""
        market = self.market
        p = checked.preview
        tick, step = market.price_tick, market.qty_step
        quote = self.ctx.board.quotes().get(self.symbol)
        series, direction = trigger_words(self.side, self.kind)
        now = "—" if quote is None else fmt.price(quote.ask if self.side == "long" else quote.bid, tick)
        at = "its price" if p.price is None else fmt.price(p.price, tick)
        if p.reached:
            trigger = f"[b $warning]at the next tick[/]: the {series} ({now}) is already past {at}"
        else:
            trigger = f"{series} {direction} {at}   [dim](now {now})[/]"
        account = self.ctx.portfolio.account
        if p.shortfall is not None:
            free = f"[b $warning]not enough free margin now[/] ({fmt.money(p.shortfall)} short)"
        else:
            free = f"[dim]Free now[/] {fmt.money(None if account is None else account.free_margin)} USD"
        return [
            f"[dim]Triggers[/]   {trigger}",
            f"[dim]Quantity[/]   {fmt.qty(p.qty, step)} {market.base}   [dim]Value[/] {fmt.money(p.notional)} USD",
            f"[dim]Margin[/]     {fmt.money(p.margin)} USD when it fills   {free}",
            f"[dim]Costs[/]      {self._costs(p.commission, p.financing_per_day, 'when it fills')}",
            f"[dim]Expires[/]    {self._expiry_words(checked)}",
        ]

    def _expiry_words(self, checked: Checked) -> str:
        if "expires_at" in checked.errors:
            return "—"
        expires = checked.plan.expires_at if checked.plan is not None else self._typed_expiry()
        if expires is None:
            return "good till cancelled"
        now_ms = int(self.ctx.clock() * 1000)
        return f"{fmt.timestamp(expires, self.ctx.tz)}   [dim](in {fmt.duration(round((expires - now_ms) / 1000))})[/]"

    def _typed_expiry(self) -> int | None:
        try:
            return parse_expiry(self.query_one("#expiry", Input).value, int(self.ctx.clock() * 1000), self.ctx.tz)
        except ValueError:
            return None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id == "order-price":
            self._price_typed = True
        self._update_preview(event.input.id)

    @on(RadioSet.Changed, "#side")
    def _side_changed(self, event: RadioSet.Changed) -> None:
        self.side = "long" if event.pressed.id == "side-long" else "short"
        self.query_one("#amount", Input).placeholder = self._amount_hint()
        self._suggest_price()
        self._retitle()
        self._update_preview()

    @on(RadioSet.Changed, "#kind")
    def _kind_changed(self, event: RadioSet.Changed) -> None:
        self.kind = KINDS[[f"kind-{k}" for k in KINDS].index(event.pressed.id or "kind-market")]
        self._show_kind()

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

    def action_next_kind(self) -> None:
        self.query_one(f"#kind-{KINDS[(KINDS.index(self.kind) + 1) % len(KINDS)]}", RadioButton).value = True

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
        button.label = ("Confirm — send order" if self.kind == "market" else "Confirm — place order") if on_ \
            else "Review order"
        button.variant = "success" if on_ else "primary"
        button.refresh(layout=True)  # a longer label needs a wider button
        if on_ and checked is not None and self.plan is not None:
            confirm.update(self._confirmation(checked, self.plan))
            button.focus()
        elif not on_:
            self.query_one("#amount", Input).focus()
            self._update_preview()

    def _confirmation(self, checked: Checked, plan: OrderPlan) -> str:
        """What will happen, in a sentence, and the keys."""
        market = self.market
        p = checked.preview
        tick = market.price_tick
        size = f"{fmt.qty(plan.qty, market.qty_step)} {market.base}"
        stops = []
        if plan.stop_loss is not None:
            stops.append(f"stop-loss {fmt.price(plan.stop_loss, tick)}")
        if plan.take_profit is not None:
            stops.append(f"take-profit {fmt.price(plan.take_profit, tick)}")
        if plan.trailing_distance is not None:
            stops.append(f"trailing stop {fmt.price(plan.trailing_distance, tick)} behind")
        stops_text = f", {' and '.join(stops)}" if stops else ""
        if plan.kind == "market":
            return (f"Open [b]{plan.side.upper()} {size}[/b] at about {fmt.price(p.price, tick)} with "
                    f"{plan.leverage}× leverage, using {fmt.money(p.margin)} USD of margin{stops_text}"
                    + (f"; {fmt.money(p.commission)} USD of commission is charged now" if p.commission else "")
                    + ".\n[b]Enter[/b] sends it · [b]Esc[/b] goes back to edit.")
        until = "good till cancelled" if plan.expires_at is None else \
            f"until {fmt.timestamp(plan.expires_at, self.ctx.tz)}"
        return (f"[b]{order_words(plan.side, plan.kind)} {size} at {fmt.price(plan.price, tick)}[/b], {until}, "
                f"with {plan.leverage}× leverage ({fmt.money(p.margin)} USD of margin when it fills at the "
                f"{'ask' if plan.side == 'long' else 'bid'}){stops_text}.\n"
                "[b]Enter[/b] places it · [b]Esc[/b] goes back to edit.")

    @work(group="order", exclusive=True, exit_on_error=False)
    async def _send(self) -> None:
        plan = self.plan
        if plan is None:
            return
        button = self.query_one("#review", Button)
        button.disabled, button.label = True, "Sending…"
        client = self.ctx.client
        try:
            if plan.kind == "market":
                result: Position | Order = await client.open_position(
                    plan.symbol, plan.side, plan.qty, plan.leverage, stop_loss=plan.stop_loss,
                    take_profit=plan.take_profit, trailing_distance=plan.trailing_distance)
            else:
                assert plan.price is not None  # a checked pending order has its price
                result = await client.place_order(
                    plan.symbol, plan.side, plan.kind, plan.qty, plan.price, plan.leverage, stop_loss=plan.stop_loss,
                    take_profit=plan.take_profit, trailing_distance=plan.trailing_distance,
                    expires_at=plan.expires_at)
        except ClientError as exc:
            button.disabled = False
            self._confirming(False)
            self.show_failure(exc)
            return
        # to the app: this dialog is closing
        self.app.post_message(OrderFilled(result) if isinstance(result, Position) else OrderPlaced(result))
        self.dismiss(result)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.confirming:
            self._confirming(False)
        else:
            self.dismiss(None)
