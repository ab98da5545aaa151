"""SMTP delivery through aiosmtplib: STARTTLS, implicit TLS or plain, with optional login."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from shared.errors import BackendDown
from shared.mail import Mailer
from shared.settings import MailSettings


class SmtpMailer(Mailer):
    name = "smtp"

    def __init__(self, settings: MailSettings) -> None:
        super().__init__(settings.sender)
        self.settings = settings

    def _options(self) -> dict:
        s = self.settings
        return {
            "hostname": s.host,
            "port": s.port,
            "username": s.user,
            "password": s.password,
            "use_tls": s.security == "tls",
            "start_tls": True if s.security == "starttls" else False,
            "timeout": 10,
        }

    async def deliver(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(message, **self._options())
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise BackendDown("mail", f"SMTP {self.settings.host}:{self.settings.port}: {exc}") from exc

    async def ping(self) -> None:
        options = self._options()
        client = aiosmtplib.SMTP(
            hostname=options["hostname"], port=options["port"], use_tls=options["use_tls"],
            start_tls=options["start_tls"], timeout=5,
        )
        try:
            await client.connect()
            if options["username"]:
                await client.login(options["username"], options["password"] or "")
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise BackendDown("mail", f"SMTP {self.settings.host}:{self.settings.port}: {exc}") from exc
