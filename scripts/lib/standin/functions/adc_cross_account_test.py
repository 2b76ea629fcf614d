"""The seed article's demo function, unchanged in behaviour."""
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps("Hello from Lambda cross account test!")}
