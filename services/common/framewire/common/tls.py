"""TLS for every framewire hop: server credentials that follow their files, client credentials.

Servers read their certificate, key and (for mTLS) client CA through
``grpc.dynamic_ssl_server_credentials``: gRPC asks :class:`CertificateFiles`
for the current configuration at every new handshake, and it answers with a
new one only when a file changed on disk (cert-manager replacing a Secret's
files). New connections then see the new certificate; open streams keep the
connection they have.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

_LOGGER = logging.getLogger(__name__)

# What identifies one version of a file on disk. Kubernetes updates a mounted
# Secret by swapping a symlink, so the inode changes even when the size and
# the second of the change do not.
FileSignature = tuple[int, int, int, int]


def file_signature(path: Path) -> FileSignature:
    """Device, inode, modification time (ns) and size of ``path`` (following symlinks)."""
    status = os.stat(path)
    return (status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)


def _no_password() -> str:
    raise ValueError("the private key is encrypted; give an unencrypted key (PEM)")


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; ValueError naming ``what`` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the {what} {path}: {error.strerror or error}") from error


@dataclass(frozen=True)
class _Loaded:
    signature: tuple[FileSignature, ...]
    configuration: Any  # grpc.ServerCertificateConfiguration, untyped in grpc-stubs


class CertificateFiles:
    """A server's certificate chain, key and optional client CA, read again when they change.

    :meth:`fetch` is the ``cert_config_fetcher`` of
    ``grpc.dynamic_ssl_server_credentials``; gRPC calls it from its own
    threads at each handshake, so it is cheap (three ``stat`` calls) while
    nothing changed, and locked.
    """

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._current = self._load()
        self._failed_signature: tuple[FileSignature, ...] | None = None
        self.reloads = 0

    def _paths(self) -> tuple[Path, ...]:
        return (
            (self.cert, self.key)
            if self.client_ca is None
            else (self.cert, self.key, self.client_ca)
        )

    def _signature(self) -> tuple[FileSignature, ...]:
        return tuple(file_signature(path) for path in self._paths())

    def _load(self) -> _Loaded:
        """Reads and checks the files; ValueError when they are unusable or changed meanwhile."""
        try:
            before = self._signature()
        except OSError as error:
            raise ValueError(f"cannot read the TLS files: {error}") from error
        cert = read_pem(self.cert, "certificate (--tls-cert)")
        key = read_pem(self.key, "private key (--tls-key)")
        client_ca = (
            read_pem(self.client_ca, "client CA (--tls-client-ca)") if self.client_ca else None
        )
        # Let OpenSSL check what gRPC would otherwise only refuse at the next
        # handshake: that the files are PEM, and that the key belongs to the certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key, password=_no_password)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"the certificate {self.cert} and key {self.key} are not a usable pair: {error}"
            ) from error
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"the client CA {self.client_ca} is not usable: {error}"
                ) from error
        try:
            after = self._signature()
        except OSError as error:
            raise ValueError(f"the TLS files changed while being read: {error}") from error
        if after != before:
            raise ValueError("the TLS files changed while being read")
        configuration = grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=client_ca
        )
        return _Loaded(after, configuration)

    def initial(self) -> Any:
        """The configuration read at start-up."""
        return self._current.configuration

    def fetch(self) -> Any:
        """A new configuration when the files changed since the last one, else None.

        A half-written or mismatched set of files keeps the previous
        configuration (logged once per version of the files), so a rotation in
        progress never breaks new handshakes.
        """
        with self._lock:
            try:
                signature = self._signature()
            except OSError as error:
                _LOGGER.error("TLS files unreadable, keeping the current certificate: %s", error)
                return None
            if signature in (self._current.signature, self._failed_signature):
                return None
            try:
                loaded = self._load()
            except ValueError as error:
                self._failed_signature = signature
                _LOGGER.error(
                    "new TLS files not usable, keeping the current certificate: %s", error
                )
                return None
            self._current = loaded
            self._failed_signature = None
            self.reloads += 1
            _LOGGER.info("TLS certificate reloaded from %s", self.cert)
            return loaded.configuration


def server_credentials(
    cert: Path, key: Path, client_ca: Path | None
) -> tuple[grpc.ServerCredentials, CertificateFiles]:
    """TLS server credentials that follow the files; mTLS when ``client_ca`` is given."""
    files = CertificateFiles(cert, key, client_ca)
    credentials = grpc.dynamic_ssl_server_credentials(
        files.initial(), files.fetch, require_client_authentication=client_ca is not None
    )
    return credentials, files


def system_roots() -> bytes | None:
    """The operating system's CA bundle, or None to let gRPC use the roots it ships with."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return Path(candidate).read_bytes()
    return None


@dataclass(frozen=True)
class ClientTls:
    """How a client checks its server and proves itself.

    ``ca`` None trusts the system roots; ``cert`` and ``key`` together are the
    client certificate for mTLS; ``server_name`` replaces the name checked
    against the server's certificate (for addresses that are not in it).
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both its certificate and its key")

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials read from the files now; ValueError when one cannot be read."""
        roots = read_pem(self.ca, "CA certificate") if self.ca is not None else system_roots()
        cert = read_pem(self.cert, "client certificate") if self.cert is not None else None
        key = read_pem(self.key, "client key") if self.key is not None else None
        return grpc.ssl_channel_credentials(
            root_certificates=roots, private_key=key, certificate_chain=cert
        )

    def channel_options(self) -> list[tuple[str, int | str]]:
        """Channel arguments TLS needs besides the credentials."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def aio_channel(
    target: str, options: list[tuple[str, int | str]], tls: ClientTls | None
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``target``: TLS when ``tls`` is given, plaintext otherwise."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(
        target, tls.credentials(), options=[*options, *tls.channel_options()]
    )


def is_handshake_failure(details: str | None) -> bool:
    """Whether an UNAVAILABLE call's details describe a failed TLS handshake.

    gRPC reports a refused certificate, an unknown CA or a plaintext peer as
    UNAVAILABLE with the handshake's reason in the details; the agent tells
    them apart from a network failure by this text.
    """
    text = (details or "").lower()
    return any(
        marker in text
        for marker in (
            "ssl",
            "tls",
            "handshake",
            "certificate",
            "wrong_version_number",
            "socket closed",
        )
    )
