#!/usr/bin/env python3
"""Submit jobfleet jobs through the SQS ingress queue with boto3.

    produce.py QUEUE_NAME_OR_URL BODY [BODY ...]

Each BODY is a message body: the same JSON as POST /v1/jobs, e.g.
'{"type":"echo","payload":{"hi":1}}'. The bodies go out in batches of up to
ten (SendMessageBatch); the script prints one line per entry, "ok <id>" or
"failed <code> <message>", and exits 1 if any entry failed. Credentials,
region and endpoint come from boto3's usual settings (AWS_REGION or
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL for LocalStack or moto).
"""
import os
import sys

import boto3


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    queue, bodies = argv[1], argv[2:]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    sqs = boto3.client("sqs", region_name=region)
    url = queue if "://" in queue else sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    failed = False
    for start in range(0, len(bodies), 10):
        batch = bodies[start:start + 10]
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)]
        resp = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        done = {e["Id"]: e for e in resp.get("Successful", [])}
        for e in resp.get("Failed", []):
            done[e["Id"]] = e
        for i in range(len(batch)):
            e = done[str(i)]
            if "MessageId" in e:
                print("ok", e["MessageId"])
            else:
                failed = True
                print("failed", e.get("Code"), e.get("Message"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
