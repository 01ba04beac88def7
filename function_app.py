"""Azure Functions entry point (Python v2 model): thin wiring only.

The queue name and connection come from app settings (`%JOB_UPDATES_QUEUE%`,
`ServiceBusConnection__*`); everything else lives in `handlers/`.
"""

import azure.functions as func

from handlers.settings import sessions_enabled_from_env
from handlers.trigger import on_job_update_message

app = func.FunctionApp()


@app.function_name("job_update")
@app.service_bus_queue_trigger(
    arg_name="msg",
    queue_name="%JOB_UPDATES_QUEUE%",
    connection="ServiceBusConnection",
    is_sessions_enabled=sessions_enabled_from_env(),
)
async def job_update(msg: func.ServiceBusMessage) -> None:
    await on_job_update_message(msg)
