"""The naive baseline: what a user's own plain-stdlib script would do, and the floor to beat.

Reads the CSV, trims/lowercases/hashes the email, builds the documented body and json.dumps
it every 500 profiles. No validation, no params typing, no report, no network.
"""

import csv
import hashlib
import json
import sys
import uuid


def main(path: str) -> None:
    bodies = 0
    batch = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            email = row.pop("email").strip().lower()
            cid = hashlib.sha256(email.encode()).hexdigest()
            params = [{"name": k, "type": "string", "value": v} for k, v in row.items()]
            batch.append({"customerId": cid, "r42Status": "NEW", "params": params})
            if len(batch) == 500:
                body = {"uuid": str(uuid.uuid4()), "customerType": "HASHED_EMAIL",
                        "campaigns": [{"segmentName": "Bench", "customers": batch}]}  # fmt: skip
                json.dumps(body)
                bodies += 1
                batch = []
    if batch:
        json.dumps(
            {
                "uuid": str(uuid.uuid4()),
                "customerType": "HASHED_EMAIL",
                "campaigns": [{"segmentName": "Bench", "customers": batch}],
            }
        )
        bodies += 1
    print(bodies)


if __name__ == "__main__":
    main(sys.argv[1])
