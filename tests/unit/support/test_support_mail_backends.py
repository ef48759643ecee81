"""The mail transport contract, run over both backends (console and SMTP to a real aiosmtpd server),
plus what only SMTP has: login, STARTTLS, implicit TLS, refusals and outages."""
from __future__ import annotations

import datetime
import io
import ipaddress
import socket
import ssl
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from release_server.support.errors import MailDeliveryError
from release_server.support.mailbackends import ConsoleBackend, SMTPBackend, backend_from_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """aiosmtpd handler that keeps what it receives and can refuse recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def self_signed() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    cert, key = self_signed()
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert)
    (d / "key.pem").write_bytes(key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    client_ctx = ssl.create_default_context(cafile=str(d / "cert.pem"))
    return server_ctx, client_ctx


def start(handler: Collector, **kwargs) -> Controller:
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    ctl.start()
    return ctl


@pytest.fixture
def smtp_server():
    handler = Collector()
    ctl = start(handler)
    yield ctl, handler
    ctl.stop()


def sample(to: str = "bob@acme.example") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Support <support@vendor.example>"
    msg["To"] = to
    msg["Subject"] = "[OTK-000123] Überweisung schlägt fehl"
    msg["Message-ID"] = "<otk-000123.abc@vendor.example>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("Ihre Anfrage wurde registriert: OTK-000123.\n")
    return msg


@pytest.fixture(params=["console", "smtp"])
def transport(request, smtp_server):
    """(backend, received) where received() returns the delivered messages as EmailMessage objects."""
    if request.param == "console":
        stream = io.StringIO()
        backend = ConsoleBackend(stream)

        def received():
            chunks = stream.getvalue().split("-------- end of mail --------\n")
            return [message_from_string(c.split(" --------\n", 1)[1], policy=policy.default)
                    for c in chunks if c.strip()]

        return backend, received
    ctl, handler = smtp_server
    backend = SMTPBackend(ctl.hostname, ctl.port, timeout=10)
    return backend, lambda: [message_from_bytes(raw, policy=policy.default) for _, raw in handler.messages]


# ---------------------------------------------------------------- the contract


def test_on_accepted_runs_once_the_message_is_delivered(transport):
    backend, received = transport
    seen = []
    backend.send(sample(), on_accepted=lambda: seen.append(len(received())))
    assert seen == [1]  # called once, when the message had arrived
    assert backend.max_send_seconds > 0


def test_an_error_in_on_accepted_propagates_unchanged(transport):
    backend, _ = transport

    class Crash(Exception):
        pass

    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        backend.send(sample(), on_accepted=crash)


def test_delivers_headers_and_body_intact(transport):
    backend, received = transport
    backend.send(sample())
    [msg] = received()
    assert msg["Subject"] == "[OTK-000123] Überweisung schlägt fehl"
    assert msg["Message-ID"] == "<otk-000123.abc@vendor.example>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "bob@acme.example"
    assert "OTK-000123" in msg.get_content()


def test_several_messages_in_order(transport):
    backend, received = transport
    for i in range(3):
        m = sample()
        m.replace_header("Subject", f"[OTK-00000{i}] n")
        backend.send(m)
    assert [m["Subject"] for m in received()] == [f"[OTK-00000{i}] n" for i in range(3)]


def test_message_without_recipient_is_a_permanent_error(transport):
    backend, received = transport
    msg = sample()
    del msg["To"]
    with pytest.raises(MailDeliveryError) as e:
        backend.send(msg)
    assert e.value.temporary is False
    assert received() == []


# ---------------------------------------------------------------- SMTP only


def test_smtp_unreachable_is_temporary():
    backend = SMTPBackend("127.0.0.1", free_port(), timeout=2)
    with pytest.raises(MailDeliveryError) as e:
        backend.send(sample())
    assert e.value.temporary is True


@pytest.mark.parametrize("reply, temporary", [("550 5.1.1 no such user", False), ("451 4.3.0 try later", True)])
def test_smtp_refused_recipient(smtp_server, reply, temporary):
    ctl, handler = smtp_server
    handler.refuse["bob@acme.example"] = reply
    with pytest.raises(MailDeliveryError) as e:
        SMTPBackend(ctl.hostname, ctl.port, timeout=10).send(sample())
    assert e.value.temporary is temporary
    assert handler.messages == []


def test_smtp_login_over_starttls(tls_files):
    server_ctx, client_ctx = tls_files
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
        seen.append((mechanism, auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    handler = Collector()
    ctl = start(handler, authenticator=authenticator, auth_required=True, tls_context=server_ctx)
    try:
        SMTPBackend(ctl.hostname, ctl.port, starttls=True, user="desk", password="s3cret", ssl_context=client_ctx,
                    timeout=10).send(sample())
        assert len(handler.messages) == 1 and seen[0][1] == b"desk"
        with pytest.raises(MailDeliveryError) as e:
            SMTPBackend(ctl.hostname, ctl.port, starttls=True, user="desk", password="wrong", ssl_context=client_ctx,
                        timeout=10).send(sample())
        assert e.value.temporary is True  # a login problem is fixed by the operator; keep the mail
    finally:
        ctl.stop()


def test_smtp_starttls(tls_files):
    server_ctx, client_ctx = tls_files
    handler = Collector()
    ctl = start(handler, tls_context=server_ctx, require_starttls=True)
    try:
        SMTPBackend(ctl.hostname, ctl.port, starttls=True, ssl_context=client_ctx, timeout=10).send(sample())
        assert len(handler.messages) == 1
        with pytest.raises(MailDeliveryError):  # the server insists on STARTTLS
            SMTPBackend(ctl.hostname, ctl.port, timeout=10).send(sample())
    finally:
        ctl.stop()


def test_smtp_implicit_tls(tls_files):
    server_ctx, client_ctx = tls_files
    handler = Collector()
    ctl = start(handler, ssl_context=server_ctx)
    try:
        SMTPBackend(ctl.hostname, ctl.port, tls=True, ssl_context=client_ctx, timeout=10).send(sample())
        assert len(handler.messages) == 1
    finally:
        ctl.stop()


def test_backend_from_config():
    assert isinstance(backend_from_config({"MAIL_BACKEND": "console"}), ConsoleBackend)
    smtp = backend_from_config({"MAIL_BACKEND": "smtp", "SMTP_HOST": "mx", "SMTP_PORT": 587, "SMTP_STARTTLS": True})
    assert isinstance(smtp, SMTPBackend) and (smtp.host, smtp.port, smtp.starttls) == ("mx", 587, True)
    from release_server.errors import ConfigError

    with pytest.raises(ConfigError):
        backend_from_config({"MAIL_BACKEND": "pigeon"})
    with pytest.raises(ConfigError):
        SMTPBackend("mx", starttls=True, tls=True)


def test_smtp_ca_file_verifies_the_server(tls_files, tmp_path_factory):
    server_ctx, _ = tls_files
    cert_dir = next(p for p in tmp_path_factory.getbasetemp().glob("tls*") if (p / "cert.pem").exists())
    handler = Collector()
    ctl = start(handler, tls_context=server_ctx, require_starttls=True)
    try:
        config = {"MAIL_BACKEND": "smtp", "SMTP_HOST": ctl.hostname, "SMTP_PORT": ctl.port, "SMTP_STARTTLS": True,
                  "SMTP_TIMEOUT": 10, "SMTP_CA_FILE": str(cert_dir / "cert.pem")}
        backend_from_config(config).send(sample())
        assert len(handler.messages) == 1
        with pytest.raises(MailDeliveryError):  # without it the self-signed server is not trusted
            backend_from_config({**config, "SMTP_CA_FILE": None}).send(sample())
        from release_server.errors import ConfigError

        with pytest.raises(ConfigError):
            backend_from_config({**config, "SMTP_CA_FILE": str(cert_dir / "missing.pem")}).send(sample())
    finally:
        ctl.stop()


def test_imap_ca_file_that_cannot_be_read_is_a_configuration_error(tmp_path):
    from release_server.errors import ConfigError
    from release_server.support.imap import ImapFetcher

    fetcher = ImapFetcher.from_config({"IMAP_HOST": "127.0.0.1", "IMAP_USER": "desk", "IMAP_PORT": 1,
                                       "IMAP_CA_FILE": str(tmp_path / "missing.pem")})
    assert fetcher.ca_file == str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError):
        fetcher.__enter__()
