"""Credentials are recognised by one list: what the CLI shows and what a store URL shows.

``llm-memo show`` and ``explain`` print stored key material with anything that looks
like a credential replaced, and a Redis URL is shown without its password; both ask
the same questions the keys and the SDK patches ask (``llm_memo._secrets``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _cli import run_cli

from llm_memo.backends import from_url
from llm_memo.explain import call_material
from llm_memo.keys import digest, fingerprint, material_bytes
from llm_memo.serialize import pack_entry


def _put(url: str, arguments: dict[str, object]) -> str:
    backend = from_url(url)
    data = material_bytes(call_material("app.ask", arguments))
    key = digest(data)
    backend.set(
        "app.ask",
        key,
        pack_entry(json.dumps("ok").encode(), fingerprint(data), time.time(), None, data),
        None,
    )
    return key


def test_show_redacts_every_name_the_keys_treat_as_a_credential(tmp_path: Path) -> None:
    url = f"disk:{tmp_path / 'disk'}"
    secrets = {"client_secret": "cs-1234567", "auth_token": "tok-1234567", "credentials": "cred-1234567"}
    key = _put(url, {"prompt": "hi", "options": {**secrets, "max_tokens": 5}})
    for extra in ((), ("--json",)):
        done = run_cli("show", key, "--backend", url, *extra)
        assert done.returncode == 0, done.stderr
        assert not any(value in done.stdout for value in secrets.values()), done.stdout
        assert '"max_tokens": 5' in done.stdout  # a count of tokens is no credential


@pytest.mark.parametrize("name", ["password", "ssl_password", "token", "auth", "username", "user"])
def test_a_redis_url_is_shown_without_any_credential_in_its_query(name: str) -> None:
    pytest.importorskip("redis")
    from llm_memo.backends.redis import redact_url

    shown = redact_url(f"redis://db.internal:6379/0?{name}=s3cr3t-value&prefix=team")
    assert "s3cr3t-value" not in shown and "prefix=team" in shown
