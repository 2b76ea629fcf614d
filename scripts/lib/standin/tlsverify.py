"""Client certificates from an unknown CA pass the handshake, as on AWS IoT's credentials provider.

AWS IoT accepts device certificates whose CA is not registered at all (multi-account
registration, "register a client certificate without a CA"), so its endpoints cannot refuse an
unknown issuer during the TLS handshake: they look the certificate up afterwards and answer at the
HTTP level (see iot.py for the answer and its source).

Python's ``ssl`` module has no verify callback, and with ``CERT_REQUIRED`` or ``CERT_OPTIONAL``
OpenSSL aborts the handshake on any verification error. ``tolerate_unknown_issuers`` installs,
through ctypes, an OpenSSL verify callback (SSL_CTX_set_verify(3)) on the context's SSL_CTX that
lets exactly the "issuer not found" errors through and keeps every other one (an expired
certificate, a bad signature, no certificate at all: those still end the handshake with an alert).
The SSL_CTX pointer is the first field after the object header of CPython's PySSLContext
(Modules/_ssl.c), a layout unchanged from 3.7 to 3.13; the verify mode read back through that
pointer must be the one CERT_REQUIRED sets, so a Python where this does not hold fails loudly
instead of writing to the wrong place (and scripts/tests/test_standin_iot.py checks the effect).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import ssl
from typing import Any, Final

__all__ = ["tolerate_unknown_issuers"]

# X509_V_ERR_* values from OpenSSL's x509_vfy.h (stable since OpenSSL 0.9.8): the chain cannot
# be built to a trusted root.
_UNKNOWN_ISSUER_ERRORS: Final = frozenset({
    2,    # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    18,   # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19,   # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20,   # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21,   # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
})
_SSL_VERIFY_PEER: Final = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT: Final = 0x02

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_libssl: Any = None


def _library() -> Any:
    """libssl as the running ``_ssl`` module uses it (its own dependency, not another copy)."""
    global _libssl
    if _libssl is None:
        import _ssl

        candidates = [getattr(_ssl, "__file__", None), None, ctypes.util.find_library("ssl")]
        for candidate in candidates:
            try:
                library = ctypes.CDLL(candidate)
                library.SSL_CTX_set_verify  # noqa: B018 - resolves or raises AttributeError
                library.X509_STORE_CTX_get_error  # noqa: B018
            except (OSError, AttributeError):
                continue
            library.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
            library.SSL_CTX_set_verify.restype = None
            library.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
            library.SSL_CTX_get_verify_mode.restype = ctypes.c_int
            library.X509_STORE_CTX_get_error.argtypes = [ctypes.c_void_p]
            library.X509_STORE_CTX_get_error.restype = ctypes.c_int
            _libssl = library
            break
        else:
            raise RuntimeError("the stand-in cannot reach OpenSSL's SSL_CTX_set_verify through ctypes")
    return _libssl


def _ssl_ctx(context: ssl.SSLContext) -> int:
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer:
        raise RuntimeError("no SSL_CTX found in this Python's ssl.SSLContext")
    return pointer


@_VERIFY_CALLBACK
def _verify(preverify_ok: int, store_ctx: int) -> int:
    if preverify_ok:
        return 1
    return 1 if _library().X509_STORE_CTX_get_error(store_ctx) in _UNKNOWN_ISSUER_ERRORS else 0


def tolerate_unknown_issuers(context: ssl.SSLContext) -> None:
    """Make ``context`` (server side, CERT_REQUIRED) accept a client certificate whose issuer it
    does not know, and nothing else that it would refuse. Call before wrapping sockets."""
    if context.verify_mode != ssl.CERT_REQUIRED:
        raise ValueError("tolerate_unknown_issuers expects a CERT_REQUIRED context")
    library = _library()
    ctx = _ssl_ctx(context)
    if library.SSL_CTX_get_verify_mode(ctx) != _SSL_VERIFY_PEER | _SSL_VERIFY_FAIL_IF_NO_PEER_CERT:
        raise RuntimeError("this Python's SSLContext layout is not the one expected (verify mode mismatch)")
    library.SSL_CTX_set_verify(ctx, _SSL_VERIFY_PEER | _SSL_VERIFY_FAIL_IF_NO_PEER_CERT, _verify)
