"""What the chart page masks until a user reveals it with a reason, for the API as well: the SSN,
identifiers other than the MRN, insurance member ids, and in the change history the values of
those fields and of the identifier and insurance tables (inside an ``initial`` entry's JSON too).

The same rule as ``pages`` (``HISTORY_MASKED`` and ``chart.html``); values are shown as
``auth.mask`` shows them (``****1234``), history values as ``****``.
"""
from __future__ import annotations

import json
from typing import Any

from .auth import mask

HISTORY_FIELDS = frozenset({"ssn", "value", "member_id", "identifiers", "insurance"})
HISTORY_TABLES = frozenset({"patient_identifiers", "insurance"})
HIDDEN = "****"


def mask_chart(record: dict) -> dict:
    """A copy of ``chart.get_chart``'s record with the identifying values masked."""
    out = dict(record)
    out["ssn"] = mask(record.get("ssn"))
    out["identifiers"] = [i if i["value"] == record["mrn"] else {**i, "value": mask(i["value"])}
                          for i in record.get("identifiers", [])]
    out["insurance"] = [{**i, "member_id": mask(i.get("member_id"))}
                        for i in record.get("insurance", [])]
    return out


def mask_history(entry: dict) -> dict:
    """A copy of one history entry with masked values (``old``/``new``)."""
    if entry.get("table") in HISTORY_TABLES or entry.get("field") in HISTORY_FIELDS:
        return {**entry, "old": HIDDEN if entry.get("old") else entry.get("old"),
                "new": HIDDEN if entry.get("new") else entry.get("new")}
    if entry.get("action") == "initial" and entry.get("new"):
        try:
            values: Any = json.loads(entry["new"])
        except ValueError:
            values = None
        if not isinstance(values, dict):
            return {**entry, "new": HIDDEN}
        return {**entry, "new": json.dumps(
            {k: HIDDEN if k in HISTORY_FIELDS and v else v for k, v in values.items()},
            sort_keys=True)}
    return entry
