"""Prints event["lines"] numbered lines, for the log tail (X-Amz-Log-Result)."""


def handler(event, context):
    lines = int(event.get("lines", 1))
    for number in range(1, lines + 1):
        print(f"line {number} of {lines}")
    return {"printed": lines}
