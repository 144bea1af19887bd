"""``""`` clears only its own field (v2.5.1 2.5.3/2.6: empty = no change, ``""`` = delete the
value): raw ADT bytes through the real channel and mapping -> ACK and stored chart, for every
list the chart keeps that more than one field or segment feeds."""

from __future__ import annotations

from tests.test_adt_events import Harness, pv1

_n = iter(range(1, 1_000_000))


def pid(
    *,
    phones_home: str = "",
    phones_work: str = "",
    address: str = "",
    alias: str = "",
    ssn: str = "",
    ids: str = "M100^^^HOSP^MR",
    telecom: str = "",
) -> str:
    f = [""] * 41
    f[0], f[1], f[3], f[5], f[7], f[8] = "PID", "1", ids, "DOE^JANE^^^^^L", "19800101", "F"
    f[9], f[11], f[13], f[14], f[19], f[40] = alias, address, phones_home, phones_work, ssn, telecom
    while f and f[-1] == "":
        f.pop()
    return "|".join(f)


def msg(event: str, pid_: str, *rest: str, time: str = "", version: str = "2.5.1") -> str:
    time = time or f"202603011{next(_n):05d}"[:14]
    return (
        "\r".join(
            [
                f"MSH|^~\\&|REG|HOSP|IF|HOSP|{time}||ADT^{event}|C{next(_n)}|P|{version}",
                f"EVN|{event}|{time}",
                pid_,
                *rest,
            ]
        )
        + "\r"
    )


def send(h: Harness, *messages: str) -> None:
    for m in messages:
        out = h.send(m)
        assert out.status == "accepted" and b"MSA|AA|" in out.ack, (out.status, out.ack)
    h.drain()
    assert h.items("error") == []


HOME = "^PRN^PH^^44^113^5550001"
IN1 = "|".join(["IN1", "1", "PLAN1", "", "ACME"] + [""] * 31 + ["M-1"])  # IN1-36 member id
WORK = "^WPN^PH^^44^113^5550002"


def numbers(h: Harness) -> list[tuple[str, str]]:
    return [(p["number"], p["use"]) for p in h.chart("M100")["phones"]]


def test_null_home_phone_keeps_business_phone(engine):
    """PID-13 ``""`` deletes the home numbers only; PID-14's business number stays."""
    h = Harness(engine)
    send(h, msg("A28", pid(phones_home=HOME, phones_work=WORK)))
    assert numbers(h) == [("44 113 5550001", "PRN"), ("44 113 5550002", "WPN")]
    send(h, msg("A31", pid(phones_home='""')))
    assert numbers(h) == [("44 113 5550002", "WPN")]


def test_null_business_phone_keeps_home_phone(engine):
    """PID-14 ``""`` deletes the business numbers only; PID-13's home number stays."""
    h = Harness(engine)
    send(h, msg("A28", pid(phones_home=HOME, phones_work=WORK)))
    send(h, msg("A31", pid(phones_work='""')))
    assert numbers(h) == [("44 113 5550001", "PRN")]


def test_new_home_phone_with_empty_business_field_keeps_business_phone(engine):
    """A new PID-13 replaces the home numbers; PID-14 left empty (no change) keeps its number."""
    h = Harness(engine)
    send(h, msg("A28", pid(phones_home=HOME, phones_work=WORK)))
    send(h, msg("A31", pid(phones_home="^PRN^CP^^44^7700^900001")))
    assert numbers(h) == [("44 7700 900001", "PRN"), ("44 113 5550002", "WPN")]


def test_null_telecom_keeps_home_and_business(engine):
    """PID-40 ``""`` deletes the PID-40 numbers only (v2.7), not PID-13/PID-14's."""
    h = Harness(engine)
    send(
        h,
        msg(
            "A28",
            pid(phones_home=HOME, phones_work=WORK, telecom="^NET^Internet^jane@example.org"),
            version="2.7",
        ),
    )
    assert len(h.chart("M100")["phones"]) == 3
    send(h, msg("A31", pid(telecom='""'), version="2.7"))
    assert numbers(h) == [("44 113 5550001", "PRN"), ("44 113 5550002", "WPN")]


def test_null_address_keeps_next_of_kin_address_and_phones(engine):
    """PID-11 ``""`` deletes the patient's addresses only: next of kin (NK1-4) and phones stay."""
    h = Harness(engine)
    send(
        h,
        msg(
            "A28",
            pid(address="1 HIGH ST^^LEEDS^^LS1^GBR^H", phones_home=HOME),
            "NK1|1|DOE^JOHN|SPO|2 LOW RD^^YORK^^YO1^GBR",
        ),
    )
    send(h, msg("A31", pid(address='""')))
    c = h.chart("M100")
    assert c["addresses"] == []
    assert c["next_of_kin"][0]["address"]["city"] == "YORK"
    assert numbers(h) == [("44 113 5550001", "PRN")]


def test_null_alias_keeps_names_and_null_ssn_keeps_pid3_ss(engine):
    """PID-9 ``""`` does not touch the legal name (PID-5) or the other names; PID-19 ``""`` does
    not hide the SS identifier PID-3 carries (PID-3 SS is read first)."""
    h = Harness(engine)
    send(h, msg("A28", pid(alias="SMITH^JANE", ids="M100^^^HOSP^MR~123-45-6789^^^SSA^SS")))
    send(h, msg("A31", pid(alias='""', ssn='""', ids="M100^^^HOSP^MR~123-45-6789^^^SSA^SS")))
    c = h.chart("M100")
    assert (c["name"]["family"], c["name"]["given"]) == ("DOE", "JANE")
    assert [n["family"] for n in c["other_names"]] == ["SMITH"]
    assert c["ssn"] == "123-45-6789"
    assert {i["value"] for i in c["identifiers"]} == {"M100", "123-45-6789"}


def test_each_segment_list_is_replaced_only_by_its_own_segment(engine):
    """A message carrying only NK1 replaces the next of kin and keeps insurance (IN1), allergies
    (AL1), diagnoses (DG1), addresses and phones; a null NK1 clears the next of kin only."""
    h = Harness(engine)
    send(
        h,
        msg(
            "A01",
            pid(address="1 HIGH ST^^LEEDS", phones_home=HOME),
            pv1(),
            "NK1|1|DOE^JOHN|SPO",
            "DG1|1||I10^Hypertension^I10||20260301|A",
            "AL1|1|DA|PCN^Penicillin|SV|Rash",
            IN1,
        ),
    )
    send(h, msg("A08", pid(), pv1(), "NK1|1|ROE^ANN|MTH"))
    c = h.chart("M100")
    assert [n["name"]["family"] for n in c["next_of_kin"]] == ["ROE"]
    assert [i["member_id"] for i in c["insurance"]] == ["M-1"]
    assert [a["code"] for a in c["allergies"]] == ["PCN"]
    assert [d["code"] for d in c["diagnoses"]] == ["I10"]
    assert c["addresses"][0]["city"] == "LEEDS" and numbers(h) == [("44 113 5550001", "PRN")]
    send(h, msg("A08", pid(), pv1(), 'NK1|1|""'))
    c = h.chart("M100")
    assert c["next_of_kin"] == [] and [a["code"] for a in c["allergies"]] == ["PCN"]
    assert [i["member_id"] for i in c["insurance"]] == ["M-1"]


def test_diagnoses_of_one_visit_leave_another_visits(engine):
    """DG1 replaces the diagnoses of the visit the message is about (PV1-19), not another's."""
    h = Harness(engine)
    send(h, msg("A01", pid(), pv1(visit="V1"), "DG1|1||I10^Hypertension^I10||20260301|A"))
    send(h, msg("A04", pid(), pv1("O", "CLINIC^^^HOSP", visit="V2"), "DG1|1||J45^Asthma^I10||20260302|W"))
    send(h, msg("A08", pid(), pv1("O", "CLINIC^^^HOSP", visit="V2"), 'DG1|1||""'))
    by_visit = {(d["visit_number"], d["code"]) for d in h.chart("M100")["diagnoses"]}
    assert by_visit == {("V1", "I10")}
