"""TLS for the node (DICOM over TLS, PS3.15 B.1): the SCP's server context and the sender's
client context, from PEM files.

- receiving: ``--tls-cert``/``--tls-key`` are the node's certificate and key; with
  ``--tls-ca`` every client must present a certificate that CA signed (mutual TLS), else the
  handshake fails and the connection is closed before any DICOM byte is read;
- forwarding: ``--forward-tls-ca`` (the CA that signed the PACS's certificate; without it
  the system's trust store), ``--forward-tls-cert``/``--forward-tls-key`` (the node's client
  certificate, for a PACS that asks for one). The PACS's certificate must name the host of
  ``--forward`` (DNS name or IP address).

TLS 1.2 at least; Python's default ciphers (no anonymous suites).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

HANDSHAKE_TIMEOUT = 15.0  # seconds a client has to complete its TLS handshake


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``cert``/``key`` (this side's certificate), ``ca`` (whom to trust)."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The SCP's context: this node's certificate; client certificates required and
    verified against ``files.ca`` when it is given."""
    if files.cert is None or files.key is None:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, files.cert, files.key, "--tls-cert/--tls-key")
    if files.ca is not None:
        _load_ca(ctx, files.ca, "--tls-ca")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The sender's context: the PACS's certificate verified (``files.ca``, else the system's
    trust store) and its host name checked; this node's certificate when given."""
    if (files.cert is None) != (files.key is None):
        raise ValueError("--forward-tls-cert and --forward-tls-key go together")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if files.ca is not None:
        _load_ca(ctx, files.ca, "--forward-tls-ca")
    if files.cert is not None:
        _load_chain(ctx, files.cert, files.key, "--forward-tls-cert/--forward-tls-key")
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path, what: str) -> None:
    for path in (cert, key):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file ({what})")
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise ValueError(f"{what}: {cert} and {key} are not a PEM certificate and its "
                         f"private key ({e.reason or e})") from None


def _load_ca(ctx: ssl.SSLContext, ca: Path, what: str) -> None:
    if not ca.is_file():
        raise FileNotFoundError(f"{ca}: no such file ({what})")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as e:
        raise ValueError(f"{what} {ca}: not a PEM certificate ({e.reason or e})") from None


def why(exc: BaseException) -> str:
    """A short reason for a failed handshake (no peer data beyond what TLS says)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
        hints = {"WRONG_VERSION_NUMBER": "not TLS (a plain DICOM connection?)",
                 "HTTP_REQUEST": "not TLS (an HTTP request)",
                 "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate",
                 "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust this node's CA",
                 "CERTIFICATE_VERIFY_FAILED": "certificate not trusted"}
        return hints.get(reason, reason)
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {HANDSHAKE_TIMEOUT:.0f} s"
    return type(exc).__name__
