def handle(event, context):
    if event.body == b"fail":
        return {"statusCode": 500, "body": "handler refused"}
    return {"statusCode": 200, "body": event.body.upper()}
