"""TLS for both listeners: the HTTP listener's ``ssl.SSLContext`` and gRPC's server credentials,
built from the PEM files the settings name, and reloaded from them on SIGHUP (``reload``).

Both take TLS 1.2 or later. A reload changes the certificate new handshakes present; established
connections keep theirs and stay open. HTTP reloads into the same ``SSLContext``; gRPC's
credentials are dynamic (``grpc.dynamic_ssl_server_credentials``): before each handshake grpc
asks ``_fetch`` whether the configuration changed. With ``grpc_client_ca``, gRPC requires a client
certificate signed by that CA (mutual TLS), refused at the handshake otherwise.
"""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

import grpc

from gateway.config import ConfigError, Settings

log = logging.getLogger(__name__)


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{setting}: {path} cannot be read: {exc.strerror}", setting=setting
        ) from None


class Certificates:
    """The TLS material of one serving process (either side may be off)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http: ssl.SSLContext | None = None
        if settings.tls_cert and settings.tls_key:
            self.http = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.http.minimum_version = ssl.TLSVersion.TLSv1_2
            self._load_http()
        cert = settings.grpc_tls_cert or settings.tls_cert
        key = settings.grpc_tls_key or settings.tls_key
        self._grpc_files = (cert, key) if cert and key else None
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._grpc_initial = self._grpc_config() if self._grpc_files else None

    def _load_http(self) -> None:
        assert self.http is not None
        s = self.settings
        assert s.tls_cert and s.tls_key
        try:
            # Into a scratch context first: a bad pair must not half-replace the one in use.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(s.tls_cert, s.tls_key)
            self.http.load_cert_chain(s.tls_cert, s.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"tls_cert/tls_key cannot be loaded: {exc}", setting="tls_cert"
            ) from None

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        assert self._grpc_files is not None
        cert, key = self._grpc_files
        ca = self.settings.grpc_client_ca
        return grpc.ssl_server_certificate_configuration(
            [(_read(key, "grpc_tls_key"), _read(cert, "grpc_tls_cert"))],
            root_certificates=_read(ca, "grpc_client_ca") if ca else None,
        )

    @property
    def grpc_tls(self) -> bool:
        return self._grpc_initial is not None

    def grpc_credentials(self) -> grpc.ServerCredentials | None:
        """Credentials for ``add_secure_port``, or None: serve gRPC in plaintext."""
        if self._grpc_initial is None:
            return None
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_initial,
            self._fetch,  # type: ignore[arg-type]  # None means "unchanged" (grpc's docs)
            require_client_authentication=self.settings.grpc_client_ca is not None,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by grpc before handshakes: the new configuration once, then "unchanged".
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> None:
        """Read the files again (SIGHUP). A file that cannot be read or does not fit keeps the
        previous certificate in use, and is logged."""
        try:
            if self.http is not None:
                self._load_http()
            if self._grpc_files is not None:
                config = self._grpc_config()
                with self._lock:
                    self._pending = config
        except ConfigError as exc:
            log.error("TLS certificates not reloaded: %s", exc)
        else:
            log.info("TLS certificates reloaded")
