"""Always raises, for the function-error path (X-Amz-Function-Error: Unhandled)."""


def handler(event, context):
    raise ValueError(f"iotinvoke-tools-fail was asked to fail: {event!r}")
