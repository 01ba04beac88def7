"""Defence in depth: credential shapes are redacted wherever they appear in free text,
whatever the secret is; and cutting a huge Batch echo never leaves part of a request
string behind (both were holes: see tests/leaks/README.md)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.plan import _scrubbed
from handlers.redaction import REDACTED, redact, redact_text, request_strings
from tests.leaks.canaries import SHAPES, leaked_in

# Secrets as credentials look: base64url characters, long enough to matter. The
# fixed prefix keeps hypothesis from picking a word the surrounding text already holds.
SECRET = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=8, max_size=48
).map(lambda s: "Q9" + s)
PROSE = st.sampled_from(
    ["", "Invalid value: ", "The request failed.\n", "PropertyName=poolInfo; ", '{"note": "x"} ']
)


@given(secret=SECRET, shape=st.sampled_from(sorted(SHAPES)), before=PROSE, after=PROSE)
@settings(max_examples=300, deadline=None)
def test_every_credential_shape_is_redacted_in_free_text(
    secret: str, shape: str, before: str, after: str
) -> None:
    text = before + SHAPES[shape].format(secret=secret) + after
    out = redact_text(text)
    assert not leaked_in(secret, out), (shape, text, out)
    assert REDACTED in out


@given(secret=SECRET, shape=st.sampled_from(sorted(SHAPES)))
@settings(max_examples=100, deadline=None)
def test_shapes_inside_json_text_are_redacted_too(secret: str, shape: str) -> None:
    # Batch echoes rejected values as JSON text, or quotes JSON inside its message.
    value = SHAPES[shape].format(secret=secret)
    for text in (json.dumps({"value": value}), "Invalid value " + json.dumps({"value": value})):
        assert not leaked_in(secret, redact_text(text)), (shape, text)


def test_prose_that_only_looks_like_a_scheme_is_kept() -> None:
    for text in ("Basic tier accounts", "The value of PropertyName is invalid", "a key; a token"):
        assert redact_text(text) == text


def test_secret_keys_named_as_producers_name_them_are_redacted_in_json() -> None:
    doc = {"pwd": "a1", "passphrase": "a2", "privateKeyPem": "a3", "clientSecret": "a4", "sig": "a5"}
    assert redact(doc) == dict.fromkeys(doc, REDACTED)


@given(
    # No A (the filler) and no I (the prose), so any 4 characters of it found are a leak.
    secret=st.text(alphabet="BCDEFGHJKLMNOPQRSTUVWXYZ23456789", min_size=8, max_size=40),
    filler=st.integers(min_value=1_000, max_value=17_000),
    split=st.integers(min_value=1, max_value=40),
)
@settings(max_examples=200, deadline=None)
def test_a_cut_echo_never_leaves_part_of_a_request_string(secret: str, filler: int, split: int) -> None:
    # A long request string, then a secret placed across the 16 KiB cut: replacing the long
    # string pulled the secret's cut-off prefix into the kept 1 KiB (fixed in plan._scrubbed).
    long = "A" * filler
    head = f"Invalid value {long} "
    split = min(split, len(secret) - 1)
    pad = max(0, 16 * 1024 - split - len(head))
    text = head + " " * pad + secret + " and more text after it"
    out = _scrubbed(text, request_strings({"commandLine": long, "password": secret}))
    assert not leaked_in(secret, out, window=4), out
