# The tests' handler, as a python3-http template user writes one.
import json


def handle(event, context):
    if event.path.endswith("/boom"):
        return {"statusCode": 500, "body": "the handler failed on purpose"}
    if event.method == "POST" and event.path.endswith("/items"):
        item = json.loads(event.body)
        return {
            "statusCode": 201,
            "body": {"created": item["name"], "count": item["count"] + 1},
            "headers": {"Location": "/items/" + item["name"], "X-Fixture": "python3-http"},
        }
    return {
        "statusCode": 200,
        "body": {
            "method": event.method,
            "path": event.path,
            "query": event.query.to_dict(flat=False),
            "contentType": event.headers.get("Content-Type"),
            "custom": event.headers.get("X-Custom"),
            "body": event.body.decode(),
        },
    }
