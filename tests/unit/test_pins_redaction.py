"""Pins for redaction (found by mutation testing: tests/mutation): a secret word
anywhere in a key, not only at its start; what the allow-list lets through, field by
field; and each free-text scrubber on its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.redaction import (
    REDACTED,
    public_changes,
    public_error_values,
    public_property,
    redact,
    redact_text,
    request_strings,
    shape,
    without_echoes,
)


@pytest.mark.parametrize(
    "key",
    [
        "clientSecret",
        "storageAccountKey",
        "userPassword",
        "password",
        "PASSWORD",
        "registrySasToken",
        "sasKey",
        "accessToken",
        "mountCredential",
        "serviceConnectionString",
        "protectedSettings",
        "apiKey",
        "key",
    ],
)
def test_a_secret_word_anywhere_in_the_key_hides_the_value(key: str) -> None:
    assert redact({key: "s3cr3t-value", "name": "visible"}) == {key: REDACTED, "name": "visible"}
    assert redact({"outer": [{key: {"nested": "s3cr3t-value"}}]}) == {"outer": [{key: REDACTED}]}


@pytest.mark.parametrize("key", ["keepAlive", "keyVaultUrl", "name", "vmSize", "accountName"])
def test_other_keys_keep_their_values(key: str) -> None:
    assert redact({key: "plain"}) == {key: "plain"}


def test_scalars_and_empty_secrets_pass_as_they_are() -> None:
    assert redact({"password": "", "tokenCount": 3, "secretFlag": True, "keyRatio": 0.5, "apiKey": None}) == {
        "password": "",
        "tokenCount": 3,
        "secretFlag": True,
        "keyRatio": 0.5,
        "apiKey": None,
    }
    assert redact(7) == 7
    assert redact(None) is None
    assert redact(["a", {"password": "p"}]) == ["a", {"password": REDACTED}]


def test_environment_values_are_hidden_whatever_their_name() -> None:
    env = [{"name": "PLAIN", "value": "v1"}, {"name": "NO_VALUE"}, "raw"]
    assert redact({"environmentSettings": env}) == {
        "environmentSettings": [{"name": "PLAIN", "value": REDACTED}, REDACTED, REDACTED]
    }
    assert redact({"containerRunOptions": "--env X=1"}) == {"containerRunOptions": REDACTED}
    assert redact({"containerRunOptions": ["--env", "X=1"]}) == {"containerRunOptions": [REDACTED, REDACTED]}
    assert redact({"environment": "plain"}) == {"environment": "plain"}


def test_embedded_json_text_is_redacted_as_json() -> None:
    text = json.dumps({"accountKey": "k1", "name": "n"})
    assert json.loads(redact_text(text)) == {"accountKey": REDACTED, "name": "n"}
    assert json.loads(redact_text("  " + json.dumps([{"password": "p"}]))) == [{"password": REDACTED}]
    assert redact_text("{not json") == "{not json"


def test_a_huge_json_text_is_not_parsed_but_still_scrubbed() -> None:
    text = json.dumps({"password": "p", "pad": "x" * 1_000_000})
    assert len(text) > 1_000_000
    out = redact_text(text)
    assert '"password": "p"' not in out
    assert "password" in out and REDACTED in out


def test_url_queries_are_dropped() -> None:
    assert redact_text("see https://s.blob.core.windows.net/c/f?sv=1&sp=r now") == (
        f"see https://s.blob.core.windows.net/c/f?{REDACTED} now"
    )
    assert redact_text("HTTP://h/p?q=1") == f"HTTP://h/p?{REDACTED}"
    assert redact_text("what? no url") == "what? no url"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "SharedKey", "SHAREDKEY"])
def test_authorization_credentials_are_dropped(scheme: str) -> None:
    assert redact_text(f"Authorization: {scheme} abc.def") == f"Authorization: {scheme} {REDACTED}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2;", f"password={REDACTED};"),
        ("Secret: xyz", f"Secret: {REDACTED}"),
        ('"accountKey": "c2Fz"', f'"accountKey": "{REDACTED}"'),
        ("saskey=abc&x", f"saskey={REDACTED}&x"),
        ("sig=abc", f"sig={REDACTED}"),
        ("token = t0k3n", f"token = {REDACTED}"),
        ("a key word", "a key word"),
    ],
)
def test_inline_secrets_are_dropped(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_shape_keeps_structure_only() -> None:
    assert shape({"a": [1, 2.5, True, None, "s"], 3: {}}) == {
        "a": ["<number>", "<number>", "<boolean>", None, "<string>"],
        "3": {},
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("priority", 5),
        ("allowTaskPreemption", False),
        ("maxParallelTasks", -1),
        ("onAllTasksComplete", "terminatejob"),
        ("constraints", {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 2}),
    ],
)
def test_plain_properties_show_their_values(name: str, value: Any) -> None:
    assert public_property(name, value) == value


def test_metadata_shows_names_only() -> None:
    assert public_property("metadata", [{"name": "n", "value": "secret"}, "odd"]) == [
        {"name": "n", "value": "<string>"},
        "<string>",
    ]
    assert public_property("metadata", "not a list") == "<string>"


def test_pool_info_shows_ids_and_settings_and_the_pool_as_structure() -> None:
    value = {
        "autoPoolSpecification": {
            "autoPoolIdPrefix": "pre",
            "poolLifetimeOption": "job",
            "keepAlive": True,
            "pool": {"vmSize": "d2", "userAccounts": [{"password": "pw"}]},
        }
    }
    assert public_property("poolInfo", value) == {
        "autoPoolSpecification": {
            "autoPoolIdPrefix": "pre",
            "poolLifetimeOption": "job",
            "keepAlive": True,
            "pool": {"vmSize": "<string>", "userAccounts": [{"password": "<string>"}]},
        }
    }
    assert public_property("poolInfo", {"poolId": "p1", "other": "x"}) == {
        "poolId": "p1",
        "other": "<string>",
    }
    assert public_property("poolInfo", {"autoPoolSpecification": "odd"}) == {
        "autoPoolSpecification": "<string>"
    }
    assert public_property("poolInfo", "odd") == "<string>"


def test_network_configuration_shows_its_two_fields() -> None:
    value = {"subnetId": "/subscriptions/s/x", "skipWithdrawFromVNet": True, "extra": "e"}
    assert public_property("networkConfiguration", value) == {
        "subnetId": "/subscriptions/s/x",
        "skipWithdrawFromVNet": True,
        "extra": "<string>",
    }
    assert public_property("networkConfiguration", "odd") == "<string>"


def test_unknown_properties_show_structure() -> None:
    assert public_property("jobManagerTask", {"commandLine": "secret"}) == {"commandLine": "<string>"}


def test_public_changes_maps_both_sides() -> None:
    changes = {"metadata": {"from": [{"name": "a", "value": "1"}], "to": [{"name": "a", "value": "2"}]}}
    assert public_changes(changes) == {
        "metadata": {"from": [{"name": "a", "value": "<string>"}], "to": [{"name": "a", "value": "<string>"}]}
    }


def test_error_values_keep_names_and_hide_echoes() -> None:
    values = {
        "PropertyName": "priority",
        "Reason": "password=hunter2",
        "RequestId": "r",
        "QueryParameterName": "timeOut",
        "HeaderName": "ocp-date",
        "PropertyValue": "hunter2",
    }
    assert public_error_values(values) == {
        "PropertyName": "priority",
        "Reason": f"password={REDACTED}",
        "RequestId": "r",
        "QueryParameterName": "timeOut",
        "HeaderName": "ocp-date",
        "PropertyValue": "<string>",
    }


def test_request_strings_are_every_leaf_of_four_or_more_raw_and_as_json() -> None:
    body = {"a": "abcd", "b": ["abc", {"c": 'q"uo'}], "d": 5, "e": "long enough"}
    assert request_strings(body) == frozenset({"abcd", 'q"uo', 'q\\"uo', "long enough"})
    assert request_strings(None) == frozenset()


def test_echoes_are_replaced_longest_first() -> None:
    strings = frozenset({"pass", "password123"})
    assert without_echoes("got password123 and pass", strings) == "got <request value> and <request value>"
    assert without_echoes("nothing here", strings) == "nothing here"


def test_embedded_json_is_redacted_by_parsing_not_only_by_the_inline_patterns() -> None:
    # `mountCredential` and an object under `protectedSettings` are secrets by key only:
    # no inline pattern names them, so only the JSON path hides them. Output is compact.
    text = json.dumps({"mountCredential": "c-1", "protectedSettings": {"a": "b"}, "n": 1})
    assert redact_text(text) == '{"mountCredential":"***","protectedSettings":"***","n":1}'
    assert redact_text(json.dumps([{"mountCredential": "c-1"}])) == '[{"mountCredential":"***"}]'
    assert redact_text(' {"x": 1}') == '{"x":1}'


def test_json_text_is_parsed_up_to_a_million_characters() -> None:
    def sized(n: int) -> str:
        head = '{"mountCredential": "c-1", "pad": "'
        return head + "x" * (n - len(head) - 2) + '"}'

    assert len(sized(1_000_000)) == 1_000_000
    assert redact_text(sized(1_000_000)).startswith('{"mountCredential":"***"')
    # Too big to parse: not re-serialised, but the credential-key patterns still catch it.
    assert redact_text(sized(1_000_001)) == sized(1_000_001).replace('"c-1"', '"***"')


def test_inline_secrets_are_found_when_every_word_is_present() -> None:
    assert redact_text("password=p1 secret key sig token") == f"password={REDACTED} secret key sig token"


def test_an_environment_string_item_that_mentions_value_is_hidden() -> None:
    assert redact({"environmentSettings": ["value=1"]}) == {"environmentSettings": [REDACTED]}


def test_only_the_named_properties_get_their_special_views() -> None:
    listed = [{"name": "n", "value": "v"}]
    assert public_property("otherList", listed) == [{"name": "<string>", "value": "<string>"}]
    net = {"subnetId": "s", "skipWithdrawFromVNet": True}
    assert public_property("jobManagerTask", net) == {
        "subnetId": "<string>",
        "skipWithdrawFromVNet": "<boolean>",
    }
    assert public_property("poolInfo", {"other": {"poolId": "p"}}) == {"other": {"poolId": "<string>"}}


def test_echoes_are_replaced_longest_first_not_in_text_order() -> None:
    assert without_echoes("abczzzzdef", frozenset({"zzzz", "abczzzzdef"})) == "<request value>"


@pytest.mark.parametrize("text", ["1e5", " 5", "true ", '"x"  '])
def test_only_json_objects_and_arrays_are_rewritten(text: str) -> None:
    assert redact_text(text) == text
