"""Returns a string of event["bytes"] characters (the JSON response is 2 bytes more: the quotes)."""


def handler(event, context):
    return "x" * int(event.get("bytes", 0))
