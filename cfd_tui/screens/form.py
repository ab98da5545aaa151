"""What the sign-in, sign-up and dialog screens share: showing an error beside the field it is about."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ApiError, ClientError, ConnectionLost
from cfd_tui.widgets.field import Field

NEXT_ON_ENTER = "next-on-enter"
"""The class of a form `Input` whose Enter moves to the next field. The app moves focus as it reads the key,
so the keys typed after it (a password manager's auto-type, a fast typist) land in the next field."""


def form_end(*buttons: Button, classes: str = "dialog-buttons") -> Iterator[Widget]:
    """The end of every form: the line its errors go to (`#form-error`), then its buttons in a row."""
    yield Static("", id="form-error", classes="form-error")
    yield Horizontal(*buttons, classes=classes)


def form_field(label: str, input_id: str, value: str = "", placeholder: str = "", **options: Any) -> Iterator[Widget]:
    """One line of a form (in a `.form-fields` container): the label, the field (`Field` options in `options`,
    e.g. `password=True`), and under them the line its error goes to (`#<input id>-error`)."""
    # validate_on=[]: Textual's own validation would clear the -invalid mark on blur
    yield Horizontal(Label(label, id=f"{input_id}-label"),
                     Field(value=value, placeholder=placeholder, id=input_id, compact=True, validate_on=[], **options),
                     classes="field")
    yield Static("", id=f"{input_id}-error", classes="field-error")


if TYPE_CHECKING:
    _FormScreen = Screen[Any]  # the type checker sees the mixin as the screen it is mixed into
else:
    _FormScreen = object  # at run time it is a plain mixin: the screen's own class is the Screen


class FormMixin(_FormScreen):
    """For screens with `Input`s named by id and a `Static#form-error`; `FIELDS` maps error keys (a checker's,
    or the server's `details.field`) to input ids.

    A field with its own `Static#<input id>-error` shows its message there, beside it; the other messages are
    listed in `#form-error`.
    """

    FIELDS: dict[str, str] = {}

    def show_errors(self, errors: dict[str, str]) -> None:
        """Mark each field in `errors` invalid and show the messages (the first invalid field is focused)."""
        by_input: dict[str, str] = {}
        lines = []
        for field, message in errors.items():
            input_id = type(self).FIELDS.get(field, field)
            found = self.query(f"#{input_id}")
            if found and isinstance(found.first(), Input) and self.query(f"#{input_id}-error"):
                by_input.setdefault(input_id, message)
            else:
                lines.append(message)
                if found and isinstance(found.first(), Input):
                    by_input.setdefault(input_id, "")
        focus = None
        for field_input in self.query(Input):
            shown = by_input.get(field_input.id or "")
            self._mark_field(field_input, shown)
            if shown is not None and focus is None:
                focus = field_input
        error = self.query_one("#form-error", Static)
        error.update("\n".join(lines))
        error.set_class(bool(lines), "-shown")
        if focus is not None:
            focus.focus()
            focus.select_all()  # typing replaces the wrong value

    def recheck_fields(self, errors: dict[str, str], input_ids: Iterable[str]) -> None:
        """Show the errors of the fields `input_ids` as they are now, clearing the fixed ones (no focus moves)."""
        by_input = {type(self).FIELDS.get(field, field): message for field, message in errors.items()}
        for input_id in input_ids:
            self._mark_field(self.query_one(f"#{input_id}", Input), by_input.get(input_id))

    def shown_errors(self) -> list[str]:
        """The ids of the fields marked invalid now."""
        return [field.id for field in self.query(Input) if field.id and field.has_class("-invalid")]

    def _mark_field(self, field_input: Input, message: str | None) -> None:
        field_input.set_class(message is not None, "-invalid")
        found = self.query(f"#{field_input.id}-error")
        if found:
            box = found.first(Static)
            box.update(message or "")
            box.set_class(bool(message), "-shown")

    def show_failure(self, exc: ClientError) -> None:
        """A server or network failure, by the field it names when it names one."""
        if isinstance(exc, ApiError):
            self.show_errors({exc.field or "form": exc.message})
        elif isinstance(exc, ConnectionLost):
            self.show_errors({"form": f"{exc.message} Is the server running?"})
        else:
            self.show_errors({"form": str(exc)})

    def clear_errors(self) -> None:
        self.show_errors({})
