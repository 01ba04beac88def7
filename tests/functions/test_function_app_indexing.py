"""Index function_app.py with the Functions Python worker's own loader, as the host does at start-up.

`azure-functions-runtime` is the library the Python 3.13 worker runs. The only
stand-in is `protos`: the host's gRPC message classes, which the loader only
constructs and reads back (see ProtosStandIn).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest
from azure_functions_runtime import loader
from azure_functions_runtime.bindings import meta
from azure_functions_runtime.functions import Registry

ROOT = Path(__file__).resolve().parents[2]


class _Message(SimpleNamespace):
    def __init__(self, **fields: Any) -> None:
        super().__init__(**fields)


class _BindingInfo(_Message):
    # Direction enum values as in the host's FunctionRpc.proto.
    in_ = 0
    out = 1
    inout = 2
    undefined = 0


setattr(_BindingInfo, "in", 0)  # 'in' is a keyword: the proto enum member is named so


class ProtosStandIn:
    """The protobuf classes the loader touches, as plain records."""

    BindingInfo = _BindingInfo
    RpcFunctionMetadata = _Message
    RpcRetryOptions = _Message
    NullableBool = _Message
    NullableString = _Message
    NullableDouble = _Message
    NullableTimestamp = _Message
    TypedData = _Message
    ParameterBinding = _Message


@pytest.fixture(scope="module")
def indexed() -> Any:
    sys.path.insert(0, str(ROOT))
    meta.load_binding_registry()
    return loader.index_function_app(str(ROOT / "function_app.py"))


def test_one_function_with_a_service_bus_queue_trigger(indexed: Any) -> None:
    assert [f.get_function_name() for f in indexed] == ["job_update"]
    raw = json.loads(indexed[0].get_function_json())
    assert raw["bindings"] == [
        {
            "direction": "IN",
            "type": "serviceBusTrigger",
            "name": "msg",
            "connection": "ServiceBusConnection",
            "queueName": "%JOB_UPDATES_QUEUE%",
            "isSessionsEnabled": False,
        }
    ]


def test_the_worker_registry_accepts_the_signature(indexed: Any) -> None:
    results, _logs = loader.process_indexed_function(ProtosStandIn, Registry(), indexed, str(ROOT))
    (metadata,) = results
    assert metadata.name == "job_update"
    assert metadata.language == "python"
    assert metadata.bindings["msg"].type == "serviceBusTrigger"
    raw = [json.loads(b) for b in metadata.raw_bindings]
    assert raw[0]["queueName"] == "%JOB_UPDATES_QUEUE%"
    assert metadata.properties == {"worker_indexed": "True"}


def test_the_registry_rejects_a_broken_signature() -> None:
    """The check above can fail: a parameter with no binding is refused at indexing."""
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="q", connection="c")
    async def broken(message: func.ServiceBusMessage) -> None:  # wrong parameter name
        return None

    meta.load_binding_registry()
    with pytest.raises(Exception, match="message"):
        loader.process_indexed_function(ProtosStandIn, Registry(), app.get_functions(), str(ROOT))


def test_actions_mode_indexes_with_the_settlement_client_and_auto_complete_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JOB_UPDATES_SETTLEMENT=actions: the worker's own loader finds the extension's
    deferred trigger type and the settlement client parameter, as in Azure."""
    from azure_functions_runtime.bindings import meta as runtime_meta

    monkeypatch.setenv("JOB_UPDATES_SETTLEMENT", "actions")
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    # The worker resolves the deferred-binding registry once, after importing the app.
    monkeypatch.setattr(runtime_meta, "DEFERRED_BINDING_REGISTRY", None)
    monkeypatch.setattr(runtime_meta, "_DEFERRED_BINDING_REGISTRY_LOADED", False)
    sys.path.insert(0, str(ROOT))
    meta.load_binding_registry()
    try:
        functions = loader.index_function_app(str(ROOT / "function_app.py"))
        (binding,) = json.loads(functions[0].get_function_json())["bindings"]
        assert binding["name"] == "received_message"
        assert binding["autoCompleteMessages"] is False
        registry = Registry()
        results, _logs = loader.process_indexed_function(ProtosStandIn, registry, functions, str(ROOT))
        (metadata,) = results
        info = registry.get_function(metadata.function_id)
        assert info.settlement_client_arg == "message_actions"
        assert info.input_types["received_message"].deferred_bindings_enabled is True
    finally:
        sys.modules.pop("function_app", None)  # the next import is the default mode again
