"""Returns what the function sees of its context object, to check the Lambda-like context."""


def handler(event, context):
    client_context = context.client_context
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "custom": None if client_context is None else client_context.custom,
        "app_title": None if client_context is None or client_context.client is None
        else client_context.client.app_title,
    }
