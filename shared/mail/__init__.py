"""Outgoing mail: an outbox folder of .eml files by default, SMTP when `CFD_SMTP_HOST` is set."""

from __future__ import annotations

import logging
import os
import time
import uuid
from abc import ABC, abstractmethod
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from shared.settings import MailSettings, private_dir, write_private

log = logging.getLogger(__name__)


def compose(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="cfd-broker.local")
    message.set_content(text)
    return message


class Mailer(ABC):
    name: str

    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, to: str, subject: str, text: str) -> None:
        await self.deliver(compose(self.sender, to, subject, text))

    @abstractmethod
    async def deliver(self, message: EmailMessage) -> None: ...

    @abstractmethod
    async def ping(self) -> None: ...


class OutboxMailer(Mailer):
    """Writes each mail to `<data dir>/outbox/<time>-<id>.eml`, owner-only (mails carry sign-up codes), and
    logs where it went."""

    name = "outbox"

    def __init__(self, sender: str, folder: Path) -> None:
        super().__init__(sender)
        self.folder = folder

    async def deliver(self, message: EmailMessage) -> None:
        private_dir(self.folder)
        path = self.folder / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        # Written under a name no reader lists, then renamed: a reader never sees half a mail.
        partial = path.with_suffix(".partial")
        write_private(partial, bytes(message))
        os.replace(partial, path)
        log.info("mail to %s written to %s", message["To"], path)

    async def ping(self) -> None:
        private_dir(self.folder)

    def latest(self, limit: int = 10, to: str | None = None) -> list[EmailMessage]:
        """The newest mails first, optionally only those to one address."""
        from email import message_from_bytes, policy

        found: list[EmailMessage] = []
        if not self.folder.exists():
            return found
        for path in sorted(self.folder.glob("*.eml"), reverse=True):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if to is None or str(message["To"]).lower() == to.lower():
                found.append(message)
            if len(found) >= limit:
                break
        return found


def create_mailer(settings: MailSettings) -> Mailer:
    if settings.host:
        from shared.mail.smtp import SmtpMailer

        return SmtpMailer(settings)
    return OutboxMailer(settings.sender, settings.outbox_dir)
