"""P-256 device keys held on a PKCS#11 token (HSM, secure element, SoftHSM2).

The private key never leaves the token: the token computes the ECDH shared secret
(CKM_ECDH1_DERIVE) and :func:`~edgeguard.recipients._hpke.hpke_p256_open` finishes HPKE base-mode
decapsulation on the host, because `cryptography`'s own HPKE Suite needs an in-memory private key. Stanzas are the ordinary
``hpke-p256`` stanzas that ``edgeguard seal`` writes for any P-256 device key.

Keys are addressed by RFC 7512 URIs such as
``pkcs11:token=device;object=edgeguard?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import KeyFileError
from ..format import Stanza
from . import DEK_LEN, NoPickle, wrap_context
from ._hpke import hpke_p256_open
from .p256 import STANZA_TYPE

MODULE_ENV = "EDGEGUARD_PKCS11_MODULE"
_POINT_LEN = 65  # uncompressed SEC1 P-256 point
_PATH_ATTRS = {"token", "object", "id", "type", "serial", "manufacturer", "model", "library-manufacturer",
               "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id"}  # fmt: skip
_QUERY_ATTRS = {"module-path", "module-name", "pin-value", "pin-source"}


class TokenError(KeyFileError):
    """The PKCS#11 module, token or key cannot be used (not found, wrong PIN, wrong key type)."""


# --- RFC 7512 URIs --------------------------------------------------------------------------------


def parse_pkcs11_uri(uri: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """Splits a ``pkcs11:`` URI into (path attributes as bytes, query attributes as str).

    Raises:
        ValueError: not a pkcs11 URI, an unknown or repeated attribute.
    """
    if not uri.startswith("pkcs11:"):
        raise ValueError("a PKCS#11 URI starts with 'pkcs11:'")
    path_part, _, query_part = uri[len("pkcs11:") :].partition("?")
    path = {name: unquote_to_bytes(value) for name, value in _uri_attributes(path_part, ";", _PATH_ATTRS).items()}
    query = {name: unquote(value) for name, value in _uri_attributes(query_part, "&", _QUERY_ATTRS).items()}
    if path.get("type", b"private") != b"private":
        raise ValueError("the PKCS#11 URI must name a private key (type=private)")
    return path, query


def _uri_attributes(part: str, sep: str, known: set[str]) -> dict[str, str]:
    """The attributes of a pkcs11 URI's path or query part, values still percent-encoded."""
    out: dict[str, str] = {}
    for item in filter(None, part.split(sep)):
        name, eq, value = item.partition("=")
        if not eq or name not in known:
            raise ValueError(f"unsupported PKCS#11 URI attribute {name!r}")
        if name in out:
            raise ValueError(f"PKCS#11 URI attribute {name!r} appears twice")
        out[name] = value
    return out


def _read_pin_source(source: str) -> str:
    path = source[len("file:") :] if source.startswith("file:") else source
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise TokenError(f"cannot read the PIN source {path!r}: {exc.strerror}") from None


class Pkcs11Identity(NoPickle):
    """A P-256 device key on a PKCS#11 token. Its repr never shows the PIN.

    The token is opened for each unwrap (one session, login, one ECDH derive into a session
    object that is destroyed at once), so no session outlives a load.
    """

    def __init__(self, uri: str, *, pin: str | None = None, module_path: str | None = None) -> None:
        """Raises ValueError for a malformed URI and TokenError when the token or key is unusable."""
        path, query = parse_pkcs11_uri(uri)
        module = module_path or query.get("module-path") or os.environ.get(MODULE_ENV)
        if not module:
            raise TokenError(f"no PKCS#11 module: pass module_path, add module-path to the URI, or set {MODULE_ENV}")
        self._module_path: str = module
        if pin is None and "pin-value" in query:
            pin = query["pin-value"]
        if pin is None and "pin-source" in query:
            pin = _read_pin_source(query["pin-source"])
        self._pin = pin
        self._token_label = path["token"].decode() if "token" in path else None
        self._token_serial = path["serial"].decode() if "serial" in path else None
        self._label = path["object"].decode() if "object" in path else None
        self._id = path.get("id")
        if self._label is None and self._id is None:
            raise ValueError("the PKCS#11 URI must name the key with object= or id=")
        self._point = self._with_session(self._read_public_point)
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self._point)
        from ..keys import key_id  # keys imports the recipient modules; import late to avoid a cycle

        self.key_id = key_id(public_key)
        self.public_key = public_key

    def _attrs(self, object_class: Any) -> dict[Any, Any]:
        from pkcs11 import Attribute, KeyType

        attrs = {Attribute.CLASS: object_class, Attribute.KEY_TYPE: KeyType.EC}
        if self._label is not None:
            attrs[Attribute.LABEL] = self._label
        if self._id is not None:
            attrs[Attribute.ID] = self._id
        return attrs

    def _with_session(self, fn: Callable[[Any], Any]) -> Any:
        try:
            import pkcs11
        except ImportError:
            raise TokenError("PKCS#11 support needs the python-pkcs11 package") from None
        try:
            lib = pkcs11.lib(self._module_path)
        except pkcs11.exceptions.PKCS11Error:
            raise TokenError(f"cannot load the PKCS#11 module {self._module_path!r}") from None
        try:
            token = lib.get_token(token_label=self._token_label, token_serial=self._token_serial)
            with token.open(user_pin=self._pin) as session:
                return fn(session)
        except pkcs11.exceptions.PKCS11Error as exc:  # the class name (PinIncorrect, NoSuchToken, ...) says it all
            raise TokenError(f"PKCS#11 token error: {type(exc).__name__}") from None

    def _find_one(self, session: Any, object_class: Any) -> Any:
        found = list(session.get_objects(self._attrs(object_class)))
        if len(found) != 1:
            raise TokenError(f"the token holds {len(found)} matching {object_class.name.lower().replace('_', ' ')}s, expected one")
        return found[0]

    def _read_public_point(self, session: Any) -> bytes:
        from pkcs11 import Attribute, ObjectClass

        der = self._find_one(session, ObjectClass.PUBLIC_KEY)[Attribute.EC_POINT]
        # CKA_EC_POINT is a DER OCTET STRING around the point: 0x04 0x41 || 04 || X || Y.
        if len(der) != _POINT_LEN + 2 or der[:2] != b"\x04\x41" or der[2] != 4:
            raise TokenError("the token's public key is not an uncompressed P-256 point")
        return bytes(der[2:])

    def _derive(self, session: Any, enc: bytes) -> bytes:
        from pkcs11 import KDF, Attribute, KeyType, ObjectClass

        private = self._find_one(session, ObjectClass.PRIVATE_KEY)
        secret = private.derive_key(
            KeyType.GENERIC_SECRET, 256, mechanism_param=(KDF.NULL, None, enc),
            template={Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )  # fmt: skip
        try:
            return bytes(secret[Attribute.VALUE])
        finally:
            secret.destroy()

    def unwrap(self, stanzas: Sequence[Stanza], file_salt: bytes, *, context: bytes | None = None) -> bytes | None:
        """Raises TokenError when the token cannot be used; None if no stanza is for this key.
        `context` replaces ``wrap_context(file_salt)`` (a version 2 grant's wrap context)."""
        info = wrap_context(file_salt) if context is None else context
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE or stanza.key_id != self.key_id:
                continue

            def open_with(session: Any, wrapped: bytes = stanza.wrapped) -> bytes | None:
                try:
                    return hpke_p256_open(wrapped, self._point, lambda enc: self._derive(session, enc), info)
                except InvalidTag:
                    return None

            dek = self._with_session(open_with)
            return dek if dek is not None and len(dek) == DEK_LEN else None
        return None

    def __repr__(self) -> str:
        return f"Pkcs11Identity(token={self._token_label!r}, object={self._label!r}, key_id={self.key_id!r})"
