"""``llm-memo explain``: why a call missed, as a diff against its closest stored entries.

::

    llm-memo explain KEY [--material FILE]
    llm-memo explain --function NS --call '{"prompt": "hi", "temperature": 0.7}' [--version V]

The comparison is :mod:`llm_memo.explain`'s; this module finds the call to explain
and prints the result.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends import Backend
from ..keys import short_key
from ._command import Command, common, count_arg, guarded
from ._output import CLIError, Style, emit_json, iso, out, plural, printable, redact, render, say, span
from ._stores import Row, open_store, resolve, scan

if TYPE_CHECKING:
    from ..explain import BoundCall

__all__ = ["COMMANDS"]


def _configure_explain(parser: argparse.ArgumentParser) -> None:
    common(parser)
    parser.add_argument(
        "key",
        metavar="KEY",
        nargs="?",
        help="the key (or a unique prefix) of the call to explain: a stored entry is compared "
        "with its siblings; an unstored key needs --material",
    )
    parser.add_argument("--material", metavar="FILE", help="the call's key material, as JSON ('-' for stdin)")
    parser.add_argument("--function", "-f", metavar="NS", help="the cached function's namespace")
    parser.add_argument(
        "--call",
        metavar="JSON",
        help='the call\'s arguments as a JSON object, e.g. \'{"prompt": "hi", "temperature": 0.7}\''
        " (@FILE reads it from a file)",
    )
    parser.add_argument(
        "--version", dest="fn_version", metavar="V", help="the function's version= (JSON, else a string)"
    )
    parser.add_argument(
        "--limit", "-n", type=count_arg, default=3, metavar="N", help="closest entries to show (3)"
    )


def _read_json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot read {what} from {text[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{what} is not valid JSON: {exc}", code=2) from None


def _explain_target(
    args: argparse.Namespace, backend: Backend
) -> tuple[dict[str, Any], set[str], Row | None]:
    """(key material of the call, keys to leave out, the stored entry explained if any)."""
    from ..explain import call_material

    if args.call is not None or args.function is not None:
        if args.key is not None or args.material is not None:
            raise CLIError("give either KEY / --material, or --function with --call", code=2)
        if args.call is None or args.function is None:
            raise CLIError("--function and --call go together", code=2)
        arguments = _read_json(args.call, "--call")
        if not isinstance(arguments, dict):
            raise CLIError("--call must be a JSON object of the call's arguments", code=2)
        version: Any = None
        if args.fn_version is not None:
            try:
                version = json.loads(args.fn_version)
            except json.JSONDecodeError:
                version = args.fn_version
        from ..explain import bind_call

        # As `python -m` would: the function's module is usually in the project being worked on.
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        bound = bind_call(args.function, arguments)
        args.defaults = bound
        return call_material(args.function, bound.arguments, version), set(), None
    if args.material is not None:
        if args.material.startswith("@"):
            args.material = args.material[1:]
        material = _read_json(args.material if args.material == "-" else "@" + args.material, "--material")
        if not isinstance(material, dict) or not isinstance(material.get("ns"), str) or "a" not in material:
            raise CLIError('--material must be key material: {"a": ..., "f": 2, "ns": ..., "v": ...}', code=2)
        if args.key is not None:
            from ..keys import digest, material_bytes

            key = digest(material_bytes(material))
            if not key.startswith(args.key.strip().lower()):
                raise CLIError(f"the material in {args.material} has key {short_key(key)}, not {args.key}")
        return material, set(), None
    if args.key is None:
        raise CLIError("give a KEY, --material FILE, or --function NS --call JSON", code=2)
    try:
        row = resolve(backend, args.key)
    except CLIError as exc:
        if str(exc).startswith("no entry"):
            raise CLIError(
                f"{exc}; to explain a key that is not stored, pass the call's key material with "
                "--material FILE, or the call with --function NS --call JSON"
            ) from None
        raise
    if row.header is None:
        raise CLIError(
            f"entry {short_key(row.key)} of {printable(row.namespace)} is not a readable llm_memo entry"
        )
    material = row.material()
    if not isinstance(material, dict):
        raise CLIError(
            f"entry {short_key(row.key)} was stored without its key material "
            "(configure(store_material=False)), so there is nothing to compare"
        )
    return material, {row.key}, row


def _explain(args: argparse.Namespace) -> int:
    from ..explain import compare
    from ..keys import digest, material_bytes

    backend = open_store(args)
    material, exclude, row = _explain_target(args, backend)
    bound: BoundCall | None = getattr(args, "defaults", None)
    now = time.time()
    result = compare(material, backend, limit=max(args.limit, 0) + 1, exclude=exclude)
    key = digest(material_bytes(material))
    # Without the function's identity, a stored call with the same arguments is the match.
    exact = next((e for e in result.closest if e.key == key or (result.identity_unknown and e.exact)), None)
    closest = [e for e in result.closest if e is not exact and e.key != key][: max(args.limit, 0)]
    namespace = printable(result.namespace)
    others: list[str] = []
    if result.compared == 0 and result.without_material == 0:
        functions = {r.namespace for r in scan(backend)}
        others = difflib.get_close_matches(result.namespace, sorted(functions), n=3, cutoff=0.4)
    if args.json:
        emit_json(
            {
                "function": result.namespace,
                "key": key,
                "stored": exact is not None or row is not None,
                "expired": exact.expired if exact else (row.expired(now) if row else None),
                "compared": result.compared,
                "without_material": result.without_material,
                "closest": [
                    {
                        "key": e.key,
                        "distance": e.distance,
                        "created": iso(e.created),
                        "expires": iso(e.expires),
                        "expired": e.expired,
                        "differences": [redact(d.to_json()) for d in e.differences],
                    }
                    for e in closest
                ],
                "similar_functions": others,
                **({"defaults": {"applied": bound.bound, "note": bound.note}} if bound else {}),
            }
        )
        return 0
    style = Style(out())
    say(f"{style.bold('call')}      {namespace}  key {short_key(key)}")
    if bound is not None:
        say(f"{style.bold('defaults')}  {bound.note if bound.bound else style.yellow(bound.note)}")
    if row is not None:
        stored = f"{span(now - (row.created or now))} ago; compared with the other entries of {namespace}"
    elif exact is not None and exact.expired:
        ago = span(now - (exact.expires or now))
        stored = f"{style.yellow('yes, but expired')} {ago} ago: a miss until it is stored again"
    elif exact is not None:
        stored = f"{style.green('yes')} ({span(now - exact.created)} ago): this call is a hit"
    else:
        stored = f"{style.yellow('no')}: this call misses"
    say(f"{style.bold('stored')}    {stored}")
    if result.identity_unknown:
        say(style.dim("          compared by arguments: explain a KEY to compare the function's code too"))
    if result.without_material:
        n = result.without_material
        say(style.dim(f"          {n} entries of {namespace} have no stored key material: not compared"))
    if not closest:
        if result.compared == 0 and result.without_material == 0:
            hint = f" (did you mean {', '.join(map(printable, others))}?)" if others else ""
            say(f"no other stored entries of {namespace} to compare with{hint}")
        elif exact is None or row is not None:
            say(f"no other stored entries of {namespace} to compare with")
        return 0
    say()
    compared = result.compared - (exact is not None)
    noun = "entry" if len(closest) == 1 else "entries"
    say(f"closest {'other ' if exact or row else ''}stored {noun} of {compared:,} compared:")
    for n, e in enumerate(closest, start=1):
        ago = f"stored {span(now - e.created)} ago" + (", expired" if e.expired else "")
        count = plural(len(e.differences), "difference", "differences")
        if e.distance != len(e.differences):
            count += f" ({e.distance} values)"
        say(f"  {n}. {style.cyan(e.key[:12])}  {style.dim(ago)}  {count}")
        for d in e.differences:
            say(f"       {d.describe(render)}")
    return 0


COMMANDS: dict[str, Command] = {
    "explain": Command(
        "say why a call missed: its closest stored entries, diffed", _configure_explain, guarded(_explain)
    ),
}
