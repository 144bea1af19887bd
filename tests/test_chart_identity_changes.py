"""Identifier changes keep the chart (v2.5.1 3.3.34 A34, 3.3.40 A40, 3.3.47 A47, 3.3.49 A49): raw
ADT bytes in -> ACK and the chart out. Each test fills a chart with every kind of data the chart
keeps (identifiers, names, demographics, addresses, three phone lists, next of kin, insurance,
allergies, diagnoses, visits with their location timeline, history, documents), changes the
identifier or merges, and compares the chart field by field with the one before."""

from __future__ import annotations

import pytest

from tests.test_adt_events import Harness, pv1

_n = iter(range(1, 1_000_000))


def _msg(event: str, segments: list[str], time: str) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|REG|HOSP|IF|HOSP|{time}||ADT^{event}|C{next(_n)}|P|2.5.1",
                f"EVN|{event}|{time}",
                *segments,
            ]
        )
        + "\r"
    )


def _pid(mrn: str, *, full: bool = True) -> str:
    f = [""] * 41
    f[0], f[1], f[3] = "PID", "1", f"{mrn}^^^HOSP^MR~943 476 5919^^^NHS^NH"
    if full:
        f[5], f[6], f[7], f[8] = "DOE^JANE^Q^^MRS^^L", "SMITH", "19800115", "F"
        f[9], f[10], f[11] = "ROE^JANE", "2106-3", "1 HIGH ST^FLAT 2^LEEDS^WY^LS1 1AA^GBR^H"
        f[13], f[14] = "^PRN^PH^^44^113^5550001", "^WPN^PH^^44^113^5550002"
        f[15], f[16], f[17], f[19] = "en", "M", "CHR", "123-45-6789"
        f[40] = "^NET^Internet^jane@example.org"
    while f[-1] == "":
        f.pop()
    return "|".join(f)


IN1 = "|".join(
    [
        "IN1",
        "1",
        "PLAN1",
        "ACME1",
        "ACME",
        "",
        "",
        "",
        "GRP1",
        "ACME GROUP",
        "",
        "",
        "20260101",
        "20261231",
        "",
        "",
        "DOE^JANE",
        "SEL",
    ]
    + [""] * 18
    + ["MEM-1"]
)


def _fill(h: Harness, mrn: str) -> None:
    """One of each: an admission with a transfer, lists, a document."""
    send(
        h,
        _msg(
            "A01",
            [
                _pid(mrn),
                pv1(
                    loc="W1^101^A^HOSP",
                    visit="V1",
                    admit="20260301090000",
                    attending="D1^HOUSE^GREG^^^^^^HOSP",
                ),
                "NK1|1|DOE^JOHN|SPO|2 LOW RD^^YORK^^YO1^GBR|^PRN^PH^^44^190^4440001",
                "DG1|1||I10^Hypertension^I10||20260301|A",
                "AL1|1|DA|PCN^Penicillin|SV|Rash",
                IN1,
            ],
            "20260301090000",
        ),
    )
    send(h, _msg("A02", [_pid(mrn, full=False), pv1(loc="W2^201^B^HOSP", visit="V1")], "20260302100000"))
    send(
        h,
        "\r".join(
            [
                "MSH|^~\\&|TRANSCRIBE|HOSP|IF|HOSP|20260302110000||MDM^T02^MDM_T02|D1|P|2.5.1",
                "EVN|T02|20260302110000",
                f"PID|1||{mrn}^^^HOSP^MR",
                "PV1|1|I|W2^201^B^HOSP",
                "TXA|1|HP|TX|20260302110000|||||D1^HOUSE^GREG|||DOC-7^TRANSCRIBE|||||AU",
                "OBX|1|TX|HP||Admission note",
            ]
        )
        + "\r",
        channel="mdm",
    )


def send(h: Harness, raw: str, channel: str = "adt") -> None:
    out = h.send(raw, channel)
    assert out.status == "accepted" and b"MSA|AA|" in out.ack, (out.status, out.ack)
    h.drain()
    assert h.items("error") == []


# What an identifier change may change on the chart: which MRN it lives under, the old MRN's
# identifier (A47 removes it), bookkeeping. Everything else must compare equal field by field.
_BOOKKEEPING = {
    "mrn",
    "requested_mrn",
    "merged_into",
    "merged_from",
    "updated_at",
    "last_event",
    "identifiers",
}


def _comparable(chart: dict) -> dict:
    out = {k: v for k, v in chart.items() if k not in _BOOKKEEPING}
    out["visits"] = [{k: v for k, v in visit.items() if k != "updated_at"} for visit in chart["visits"]]
    out["documents"] = [
        {k: v for k, v in d.items() if k not in ("mrn", "updated_at")} for d in chart["documents"]
    ]
    return out


def _assert_kept(before: dict, after: dict) -> None:
    a, b = _comparable(before), _comparable(after)
    assert a.keys() == b.keys()
    for key in a:  # field by field, so a failure names the part that was dropped
        assert b[key] == a[key], key
    # every kind was in the chart, so the comparison compared something
    for key in (
        "addresses",
        "phones",
        "other_names",
        "next_of_kin",
        "insurance",
        "allergies",
        "diagnoses",
        "visits",
        "documents",
    ):
        assert a[key], key
    assert {p["source"] for p in a["phones"]} == {"phones", "business_phones", "telecom"}
    assert len(a["visits"][0]["locations"]) == 2


def _history_kept(h: Harness, old: str, new: str, before: list[dict]) -> None:
    after = h.history(new)
    ids = [e["message_id"] for e in after]
    assert all(e["message_id"] in ids for e in before)
    assert len(after) > len(before)


@pytest.mark.parametrize("event", ["A34", "A40"])
def test_merge_into_a_new_survivor_keeps_every_demographic(engine, event):
    """A34/A40 whose survivor (PID-3) is new and whose PID carries only the MRN: the survivor
    gets the prior's whole chart (demographics, lists, visits, history, documents)."""
    h = Harness(engine)
    _fill(h, "OLD1")
    before, hist = h.chart("OLD1"), h.history("OLD1")
    send(h, _msg(event, [_pid("NEW1", full=False), "MRG|OLD1^^^HOSP^MR"], "20260303100000"))
    after = h.chart("NEW1")
    assert after["mrn"] == "NEW1" and h.chart("OLD1")["mrn"] == "NEW1"
    _assert_kept(before, after)
    assert {i["value"] for i in after["identifiers"]} == {"NEW1", "OLD1", "943 476 5919"}
    _history_kept(h, "OLD1", "NEW1", hist)


def test_a40_onto_an_existing_survivor_keeps_the_priors_data(engine):
    """A40 onto a survivor that exists with only a name: everything the survivor lacks comes from
    the prior (demographics, every list, visits, documents); the survivor's own values stay."""
    h = Harness(engine)
    _fill(h, "OLD2")
    send(h, _msg("A28", ["PID|1||NEW2^^^HOSP^MR||DOE^JANE^Q^^MRS^^L"], "20260301080000"))
    before = h.chart("OLD2")
    send(h, _msg("A40", ["PID|1||NEW2^^^HOSP^MR", "MRG|OLD2^^^HOSP^MR"], "20260303100000"))
    after = h.chart("NEW2")
    assert h.chart("OLD2")["mrn"] == "NEW2"
    _assert_kept(before, after)


def test_a40_merge_message_lists_win_and_shared_visit_is_completed(engine):
    """A40 carrying its own PID-11: the message's addresses are the survivor's; a visit number on
    both keeps the survivor's visit, filled in from the prior's (attending, diagnoses, locations)."""
    h = Harness(engine)
    _fill(h, "OLD3")
    send(h, _msg("A04", ["PID|1||NEW3^^^HOSP^MR||DOE^JANE", pv1("O", "", visit="V1")], "20260301080000"))
    send(
        h,
        _msg("A40", ["PID|1||NEW3^^^HOSP^MR||||||||9 NEW RD^^HULL", "MRG|OLD3^^^HOSP^MR"], "20260303100000"),
    )
    c = h.chart("NEW3")
    assert [a["street"] for a in c["addresses"]] == ["9 NEW RD"]
    assert [p["source"] for p in c["phones"]] == ["phones", "business_phones", "telecom"]
    [v1] = [v for v in c["visits"] if v["visit_number"] == "V1"]
    assert v1["attending"]["family"] == "HOUSE" and v1["location"] == "W2^201^B^HOSP"
    assert [l["location"] for l in v1["locations"]] == ["W1^101^A^HOSP", "W2^201^B^HOSP"]
    assert [d["code"] for d in c["diagnoses"]] == ["I10"]
    assert [a["code"] for a in c["allergies"]] == ["PCN"]


def test_a47_changes_the_identifier_and_keeps_the_chart(engine):
    """A47: the chart lives under the new MRN, field by field as it was; the old MRN's identifier
    is gone from the identifiers and the old MRN points to the new one."""
    h = Harness(engine)
    _fill(h, "OLD4")
    before, hist = h.chart("OLD4"), h.history("OLD4")
    send(h, _msg("A47", [_pid("NEW4", full=False), "MRG|OLD4^^^HOSP^MR"], "20260303100000"))
    after = h.chart("NEW4")
    _assert_kept(before, after)
    assert {i["value"] for i in after["identifiers"]} == {"NEW4", "943 476 5919"}
    assert h.chart("OLD4")["mrn"] == "NEW4"
    _history_kept(h, "OLD4", "NEW4", hist)


def test_a49_change_account_number_keeps_the_chart(engine):
    """A49 (change patient account number, PID-18 / MRG-3) is applied, and the chart is kept
    field by field under the same MRN."""
    h = Harness(engine)
    _fill(h, "M49")
    before = h.chart("M49")
    send(
        h,
        _msg(
            "A49",
            ["PID|1||M49^^^HOSP^MR~943 476 5919^^^NHS^NH|||||||||||||||ACC-2", "MRG|M49^^^HOSP^MR||ACC-1"],
            "20260303100000",
        ),
    )
    after = h.chart("M49")
    _assert_kept(before, after)
    assert after["identifiers"] == before["identifiers"] and after["last_event"] == "A49"


def test_a40_null_in_the_merge_message_is_not_refilled_from_the_prior(engine):
    """A40 whose PID-7 is ``""``: the survivor's birth date stays cleared; other empty fields are
    filled from the prior (sex)."""
    h = Harness(engine)
    _fill(h, "OLD5")
    send(h, _msg("A28", ["PID|1||NEW5^^^HOSP^MR||DOE^JANE||19800116"], "20260301080000"))
    send(h, _msg("A40", ['PID|1||NEW5^^^HOSP^MR||||""', "MRG|OLD5^^^HOSP^MR"], "20260303100000"))
    c = h.chart("NEW5")
    assert c["birth_date"] is None and c["sex"] == "female"
