"""What the sign-in, sign-up and dialog screens share: showing an error beside the field it is about."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Input, Static

from cfd_tui.client.errors import ApiError, ClientError, ConnectionLost


class FormMixin:
    """For screens with `Input`s named by id and a `Static#form-error`; `FIELDS` maps server field names
    (`details.field`) to input ids."""

    FIELDS: dict[str, str] = {}

    def show_errors(self: Screen, errors: dict[str, str]) -> None:  # type: ignore[misc]
        """Mark each field in `errors` invalid and show the messages (first one focused)."""
        for field_input in self.query(Input):
            field_input.set_class(False, "-invalid")
        lines = []
        focus = None
        for field, message in errors.items():
            input_id = type(self).FIELDS.get(field, field)
            found = self.query(f"#{input_id}")
            if found and isinstance(found.first(), Input):
                found.first().set_class(True, "-invalid")
                focus = focus or found.first()
            lines.append(message)
        error = self.query_one("#form-error", Static)
        error.update("\n".join(lines))
        error.set_class(bool(lines), "-shown")
        if focus is not None:
            focus.focus()
            focus.select_all()  # typing replaces the wrong value

    def show_failure(self, exc: ClientError) -> None:
        """A server or network failure, by the field it names when it names one."""
        if isinstance(exc, ApiError):
            self.show_errors({exc.field or "form": exc.message})  # type: ignore[attr-defined]
        elif isinstance(exc, ConnectionLost):
            self.show_errors({"form": f"{exc.message} Is the server running?"})  # type: ignore[attr-defined]
        else:
            self.show_errors({"form": str(exc)})  # type: ignore[attr-defined]

    def clear_errors(self) -> None:
        self.show_errors({})  # type: ignore[attr-defined]
