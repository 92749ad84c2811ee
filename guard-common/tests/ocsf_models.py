"""guard's Detection Findings through py-ocsf-models (PyPI), OCSF's Python models.

Usage: python ocsf_models.py RECORDS.jsonl. Every record with class_uid 2004 must
validate as py_ocsf_models' DetectionFinding (pydantic); prints how many did, and
exits 1 naming the first that did not. Run by tests/ocsf.rs.
"""
import json
import sys

from py_ocsf_models.events.findings.detection_finding import DetectionFinding

checked = 0
with open(sys.argv[1], encoding="utf-8") as records:
    for n, line in enumerate(records, 1):
        record = json.loads(line)
        if record.get("class_uid") != 2004:
            continue
        try:
            finding = DetectionFinding.model_validate(record)
        except Exception as e:  # pydantic.ValidationError, with every problem
            print(f"line {n}: not a DetectionFinding: {e}\n{line}", file=sys.stderr)
            sys.exit(1)
        # What the model read is what was written.
        assert finding.finding_info.uid == record["finding_info"]["uid"], n
        assert finding.time == record["time"], n
        assert int(finding.severity_id) == record["severity_id"], n
        related = finding.finding_info.related_events or []
        written = record["finding_info"].get("related_events") or []
        assert len(related) == len(written), n
        if written:
            assert related[0].uid == written[0]["uid"], n
        checked += 1
        if checked == 1:
            # The model is no rubber stamp: without what OCSF requires, it refuses.
            for key in ("finding_info", "metadata", "time"):
                broken = {k: v for k, v in record.items() if k != key}
                try:
                    DetectionFinding.model_validate(broken)
                except Exception:
                    continue
                print(f"py-ocsf-models took a finding without {key}", file=sys.stderr)
                sys.exit(1)
if checked == 0:
    print("no detection finding in the records", file=sys.stderr)
    sys.exit(1)
print(f"{checked} detection findings valid")
