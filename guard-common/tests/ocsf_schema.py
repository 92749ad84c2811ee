"""Validates OCSF records against the JSON Schemas tests/ocsf.rs writes (one per
class, by class_uid), with python-jsonschema (Debian's python3-jsonschema).

Reads {"schemas": {class_uid: schema}, "records": [record, ...]} on stdin; writes
one list of errors per record (empty: valid) as JSON on stdout. A schema that is
not valid JSON Schema 2020-12 is an error of its own (exit status 1).
"""

import json
import sys

import jsonschema

data = json.load(sys.stdin)
validators = {}
for uid, schema in data["schemas"].items():
    jsonschema.Draft202012Validator.check_schema(schema)
    validators[uid] = jsonschema.Draft202012Validator(schema)
out = []
for record in data["records"]:
    validator = validators[str(record["class_uid"])]
    out.append(
        [
            "%s at /%s" % (e.message, "/".join(str(p) for p in e.absolute_path))
            for e in validator.iter_errors(record)
        ]
    )
json.dump(out, sys.stdout)
