"""Azure Functions entry point (Python v2 model): thin wiring only.

The queue name and connection come from app settings (`%JOB_UPDATES_QUEUE%`,
`ServiceBusConnection__*`); everything else lives in `handlers/`.
"""

import azure.functions as func

from handlers.settings import SettlementMode, sessions_enabled_from_env, settlement_mode_from_env
from handlers.trigger import on_job_update_message, on_job_update_settled

app = func.FunctionApp()

if settlement_mode_from_env() is SettlementMode.actions:
    # Explicit settlement (docs/host.md): imported only in this mode, so the default
    # deploy neither ships nor loads the pre-release extension. The worker fills
    # `message_actions` with the extension's gRPC client because of its annotation.
    import azurefunctions.extensions.bindings.servicebus as servicebus  # type: ignore[import-untyped]

    @app.function_name("job_update")
    @app.service_bus_queue_trigger(
        arg_name="received_message",
        queue_name="%JOB_UPDATES_QUEUE%",
        connection="ServiceBusConnection",
        is_sessions_enabled=sessions_enabled_from_env(),
        auto_complete_messages=False,
    )
    async def job_update_settled(
        received_message: servicebus.ServiceBusReceivedMessage,
        message_actions: servicebus.ServiceBusMessageActions,
    ) -> None:
        await on_job_update_settled(received_message, message_actions)

else:

    @app.function_name("job_update")
    @app.service_bus_queue_trigger(
        arg_name="msg",
        queue_name="%JOB_UPDATES_QUEUE%",
        connection="ServiceBusConnection",
        is_sessions_enabled=sessions_enabled_from_env(),
    )
    async def job_update(msg: func.ServiceBusMessage) -> None:
        await on_job_update_message(msg)
