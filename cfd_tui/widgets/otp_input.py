"""`OtpInput`: a masked one-time-code field that takes exactly six digits and nothing else."""

from __future__ import annotations

from cfd_tui.widgets.field import Field

CODE_LENGTH = 6


class OtpInput(Field):
    """A `Field` restricted to digits, at most six, shown spaced out for reading the mail side by side."""

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="······", restrict=r"[0-9]*", max_length=CODE_LENGTH, **kwargs)

    @property
    def complete(self) -> bool:
        """Whether all six digits are in."""
        return len(self.value) == CODE_LENGTH
