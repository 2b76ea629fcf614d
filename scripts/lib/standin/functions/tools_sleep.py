"""Sleeps event["seconds"] (the function's timeout is 3 s), for timeouts and slow calls."""
import time


def handler(event, context):
    seconds = float(event.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}
