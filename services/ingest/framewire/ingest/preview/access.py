"""Who may use the preview: anyone on loopback; elsewhere, the gRPC port's token and TLS.

On a loopback address the preview is as open as the machine (like the
metrics endpoint). On any other address it requires what the gRPC port
requires: with ``--auth-tokens`` a valid token (``Authorization: Bearer
TOKEN``, or ``?token=TOKEN`` for the browser, whose EventSource cannot send
headers), and the token sees only the streams it may open; with
``--tls-cert`` the page is served over HTTPS with the same certificate (and
the same client CA for mTLS). A non-loopback preview on a server with neither
is refused at start-up unless ``--preview-insecure`` says otherwise.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from framewire.common.auth import TokenAuthenticator, TokenEntry
from framewire.common.serving import SecurityConfig
from framewire.ingest.preview.config import PreviewConfig, is_loopback

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewAccess:
    """What a preview request must bring; both None: nothing (loopback, or the opt-in)."""

    authenticator: TokenAuthenticator | None = None
    tls: ssl.SSLContext | None = None

    def authenticate(self, authorization: str | None, token: str | None) -> TokenEntry | None:
        """The caller's token entry; None when no token is needed.

        Raises FramewireError (UNAUTHENTICATED) when a needed token is
        missing, malformed or unknown.
        """
        if self.authenticator is None:
            return None
        if token is not None:
            authorization = f"Bearer {token}"
        metadata = [("authorization", authorization)] if authorization is not None else []
        return self.authenticator.authenticate(metadata)


def preview_access(
    config: PreviewConfig,
    security: SecurityConfig,
    authenticator: TokenAuthenticator | None,
) -> PreviewAccess:
    """The access rules for ``config``'s address; ValueError when it would be open to all."""
    if is_loopback(config.preview_host):
        return PreviewAccess()
    if not security.tls and authenticator is None:
        if not config.preview_insecure:
            raise ValueError(
                f"--preview-host {config.preview_host} would show camera images to anyone who "
                "reaches it: give the server --auth-tokens (the preview then asks for the same "
                "tokens) or --tls-cert/--tls-key (it then serves HTTPS), keep the preview on "
                "127.0.0.1 (reach it through an SSH tunnel or kubectl port-forward), or pass "
                "--preview-insecure to accept that"
            )
        _LOGGER.warning(
            "the preview on %s has no token and no TLS (--preview-insecure): anyone who "
            "reaches it sees every camera",
            config.preview_host,
        )
        return PreviewAccess()
    context = None
    if security.tls_cert is not None and security.tls_key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(security.tls_cert, security.tls_key)
        if security.tls_client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=security.tls_client_ca)
    return PreviewAccess(authenticator=authenticator, tls=context)
