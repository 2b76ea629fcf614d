"""Echo: returns the event, the invoked ARN and the client context the function received.

As in Lambda's Python runtime, the client context reaches the function as an object with
``client``, ``custom`` and ``env``; the echo returns those three parts (None when absent).
"""


def handler(event, context):
    client_context = context.client_context
    if client_context is None:
        received = None
    else:
        client = client_context.client
        received = {
            "client": None if client is None else vars(client),
            "custom": client_context.custom,
            "env": client_context.env,
        }
    return {"event": event, "function": context.invoked_function_arn, "client_context": received}
