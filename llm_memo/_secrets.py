"""The one list of names that mark a credential, and the HMAC that may stand in for one.

Two strictnesses, because a wrong guess costs differently:

* :func:`is_secret_name`, for a function's parameters and dict keys. A value left
  out of a key by mistake makes different calls share an answer, so only names that
  say "credential" unambiguously count: ``api_key``, ``apiKey``, ``access_token``,
  ``token``, ``password``, ``client_secret``, ``authorization``, ``credentials``...
  and not ``key``, ``max_tokens``, ``stop_token`` or ``token_count``.
* :func:`is_secret_query_name`, for URL query parameters and HTTP headers, where
  short names (``key``, ``sig``, ``code``) usually are credentials and a request has
  few of them.

Two more questions for what is shown rather than keyed: :func:`is_url_credential_name`
(a query parameter to hide when a store URL is printed, the user name included) and
:func:`redact_text` (credentials that appear in free text, such as an ``sk-...`` key
pasted into a prompt).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

__all__ = [
    "fingerprint",
    "is_secret_name",
    "is_secret_query_name",
    "is_url_credential_name",
    "pepper",
    "redact_text",
]

# Words that make a name a credential wherever they stand in it.
_ALWAYS = frozenset(
    {"password", "passwd", "passphrase", "secret", "secrets", "apikey", "credential", "credentials"}
    | {"authorization", "accesstoken", "authtoken", "bearer"}
)
# Words that do only as the last word: "auth" and "token" but not "auth_mode" or "token_count".
_LAST = frozenset({"auth", "token"})
# "<word> key": an api_key, access key, private key... but not a sort_key or cache_key.
_KEY_KINDS = frozenset({"api", "access", "secret", "private", "signing", "subscription", "license", "master"})
# "<word> token" that names a piece of text, not a credential (tokenizer vocabulary).
_TEXT_TOKENS = frozenset(
    {"stop", "eos", "bos", "pad", "sep", "unk", "mask", "cls", "special", "start", "end", "next", "first"}
    | {"last", "new", "input", "output", "target", "max", "min", "num"}
)
# In a query or a header, these short names are credentials too (Google's ?key=,
# Azure SAS's sig=, Azure Functions' ?code=, X-Amz-Signature).
_QUERY_WORDS = frozenset({"key", "token", "sig", "signature", "auth"})
_QUERY_NAMES = frozenset({"code"})
# Who a URL logs in as is hidden with the password (``redis://user:pw@``, ``?username=``).
_URL_IDENTITY = frozenset({"user", "username"})
# Credential values recognisable without a name: OpenAI (sk-..., sk-proj-...),
# Anthropic (sk-ant-...) and look-alike API keys, and HTTP bearer tokens.
_SECRET_TEXT = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE),
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[-_.\s]+")


def _words(name: str) -> list[str]:
    return [w for w in _SEPARATORS.split(_CAMEL.sub("_", name).lower()) if w]


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a parameter or dict key named ``name`` holds a credential."""
    words = _words(name)
    if not words:
        return False
    if any(w in _ALWAYS for w in words):
        return True
    last = words[-1]
    previous = words[-2] if len(words) > 1 else ""
    if last in _LAST:
        return previous not in _TEXT_TOKENS
    return last == "key" and previous in _KEY_KINDS


@functools.lru_cache(maxsize=1024)
def is_secret_query_name(name: str) -> bool:
    """Whether a URL query parameter or an HTTP header named ``name`` holds a credential."""
    if name.lower() in _QUERY_NAMES or is_secret_name(name):
        return True
    return any(w in _QUERY_WORDS for w in _words(name))


def is_url_credential_name(name: str) -> bool:
    """Whether a URL query parameter named ``name`` is hidden when the URL is shown."""
    return name.lower() in _URL_IDENTITY or is_secret_query_name(name)


def redact_text(text: str, replacement: str) -> str:
    """``text`` with every credential-looking value in it replaced by ``replacement``."""
    for pattern in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def pepper(isolate: bool | str | bytes | None) -> bytes | None:
    """The HMAC key of ``isolate_credentials``, or None when credentials are left out."""
    if isolate is False or isolate is None:
        return None
    if isolate is True:
        # A fixed HMAC key still makes the fingerprint useless for anything but telling
        # credentials apart (API keys are far too long to guess); pass your own secret
        # string to make fingerprints unlinkable across deployments.
        return b"llm-memo/credential-fingerprint/v1"
    if not isinstance(isolate, str | bytes):
        raise TypeError(
            f"isolate_credentials: expected a bool, str or bytes, got {type(isolate).__qualname__}"
        )
    return isolate.encode() if isinstance(isolate, str) else bytes(isolate)


def fingerprint(secrets: tuple[str | bytes, ...], key: bytes) -> str:
    """A 128-bit HMAC-SHA256 of one or more credentials, as hex."""
    parts = [s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s for s in secrets]
    return hmac.new(key, b"\x00".join(parts), hashlib.sha256).hexdigest()[:32]
