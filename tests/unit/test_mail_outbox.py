"""The outbox mailer: each mail appears whole, owner-only, and readers see only whole mails."""

from __future__ import annotations

import asyncio
import stat
from email.message import EmailMessage

from shared import mail
from shared.mail import OutboxMailer
from shared.settings import write_private


def _mail(to: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Your code"
    message.set_content(body)
    return message


def test_a_delivered_mail_is_listed_whole_and_owner_only(tmp_path):
    mailer = OutboxMailer("broker@example.com", tmp_path / "outbox")
    asyncio.run(mailer.deliver(_mail("ann@example.com", "123456")))

    [found] = mailer.latest(to="ann@example.com")
    assert found.get_content().strip() == "123456"
    [path] = (tmp_path / "outbox").iterdir()
    assert path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_reader_does_not_see_a_mail_until_it_is_whole(tmp_path, monkeypatch):
    mailer = OutboxMailer("broker@example.com", tmp_path / "outbox")
    seen_while_writing: list[int] = []

    def write_then_look(path, data):
        write_private(path, data[: len(data) // 2])  # the process is here when a reader lists the folder
        seen_while_writing.append(len(mailer.latest()))
        with path.open("ab") as out:
            out.write(data[len(data) // 2 :])

    monkeypatch.setattr(mail, "write_private", write_then_look)
    asyncio.run(mailer.deliver(_mail("ann@example.com", "111111")))

    assert seen_while_writing == [0]
    assert [m.get_content().strip() for m in mailer.latest(to="ann@example.com")] == ["111111"]
