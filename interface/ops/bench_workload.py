"""The benchmark's workload: realistic ADT stories and MDM documents."""

from __future__ import annotations

import base64
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SB, EB = b"\x0b", b"\x1c\x0d"
LOAD_TOOL = Path("/work/shared/tools/mllp_load.py")


# -- messages -------------------------------------------------------------------------------------


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%d%H%M%S")


FAMILIES = [
    "SMITH",
    "JONES",
    "GARCIA",
    "NGUYEN",
    "OKAFOR",
    "MULLER",
    "ROSSI",
    "KOWALSKI",
    "TANAKA",
    "SILVA",
    "HASSAN",
    "DUBOIS",
    "MURPHY",
    "LARSEN",
    "PATEL",
    "COHEN",
]
GIVEN = ["ANNA", "JOHN", "MARIA", "WEI", "AMIR", "SARA", "LUCA", "EMMA", "OMAR", "NINA", "PAUL", "IDA"]


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    """Family, given name, birth date, sex: for one MRN, ``random.Random(hash(mrn))`` always draws
    the same person (so the documents of a patient name the person of the chart)."""
    fam, giv = rng.choice(FAMILIES), rng.choice(GIVEN)
    dob = f"19{rng.randint(30, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    return fam, giv, dob, rng.choice("MF")


def adt(
    event: str,
    mrn: str,
    cid: str,
    t: float,
    *,
    visit: str,
    klass: str = "I",
    location: str = "4W^401^A",
    rng: random.Random | None = None,
    app: str = "BENCH",
    admitted: float | None = None,
) -> str:
    """One ~1 KB v2.5.1 ADT message, the shape registration systems send. ``admitted``: the
    visit's admit time (PV1-44) and its diagnosis's time (DG1-5); default the message time."""
    rng = rng or random.Random(hash(mrn))
    fam, giv, dob, sex = _person(rng)
    stamp = _ts(t)
    admit = _ts(admitted) if admitted is not None else stamp
    structure = {
        "A04": "ADT_A01",
        "A08": "ADT_A01",
        "A01": "ADT_A01",
        "A02": "ADT_A02",
        "A03": "ADT_A03",
    }.get(event, "ADT_A01")
    segs = [
        f"MSH|^~\\&|{app}|HOSP|INTERFACE|HOSP|{stamp}||ADT^{event}^{structure}|{cid}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"EVN|{event}|{stamp}|||C{rng.randint(1000, 9999)}^CLERK^PAT^^^^^^HOSP|{stamp}",
        f"PID|1||{mrn}^^^HOSP^MR~{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}^^^SSA^SS||"
        f"{fam}^{giv}^Q^^^^L||{dob}|{sex}|||{rng.randint(1, 999)} MAIN ST^APT {rng.randint(1, 40)}^SPRINGFIELD^IL^62701^USA^H||"
        f"^PRN^PH^^1^217^555{rng.randint(1000, 9999)}|^WPN^PH^^1^217^555{rng.randint(1000, 9999)}|EN|M|CHR|"
        f"{visit}^^^HOSP^AN",
        "PD1|||SPRINGFIELD GENERAL^^1234|1234^WELBY^MARCUS^^^DR",
        f"NK1|1|{fam}^JANE^^^^^L|SPO^SPOUSE^HL70063|{rng.randint(1, 999)} MAIN ST^^SPRINGFIELD^IL^62701^USA|^PRN^PH^^1^217^5551234",
        f"PV1|1|{klass}|{location}^HOSP||||1234^WELBY^MARCUS^^^DR^^^HOSP|5678^KILDARE^JAMES^^^DR^^^HOSP||MED|||||||"
        f"1234^WELBY^MARCUS^^^DR^^^HOSP||{visit}^^^HOSP^VN|||||||||||||||||||||||||{admit}",
        "PV2|||^CHEST PAIN",
        "AL1|1|DA|^PENICILLIN|SV|HIVES",
        f"DG1|1||R07.9^CHEST PAIN UNSPECIFIED^I10||{admit}|A",
    ]
    if event == "A03":
        segs[5] = segs[5] + f"|{stamp}"  # PV1-45 discharge date/time
    return "\r".join(segs) + "\r"


STORIES = (  # (weight, events): each patient's visit, in the order a registration system sends it
    (4, ("A01", "A02", "A08", "A03")),
    (3, ("A04", "A08", "A03")),
    (2, ("A04", "A08")),
    (1, ("A01", "A08", "A02", "A02", "A03")),
)


@dataclass
class Workload:
    """Messages per connection (each a list of (control id, frame bytes)); ``keys`` maps a
    control id to its patient."""

    per_conn: list[list[tuple[str, bytes]]]
    patients: int
    mrn_of: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.per_conn)

    def types(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for conn in self.per_conn:
            for _, data in conn:
                t = data.split(b"|", 9)[8].split(b"^")[1].decode()
                out[t] = out.get(t, 0) + 1
        return out


MIXES = ("realistic", "churn")


def adt_mix(
    n: int,
    connections: int,
    tag: str,
    seed: int = 1,
    poison_mrn: str | None = None,
    pool: int | None = None,
    mix: str = "realistic",
) -> Workload:
    """About ``n`` ADT messages: patient stories (weighted above), each patient on one
    connection, patients interleaved at random but each story in its own order. With ``pool``,
    the stories are spread over at most ``pool`` distinct patients (a patient then has several
    visits, each with its own visit number, all on the patient's connection).

    ``mix``: ``realistic`` (default) sends what registration systems send: a visit keeps its
    admit time (PV1-44) and its diagnosis (DG1-5 time) on every message, and its location
    (PV1-3) changes on a transfer (A02) only. ``churn`` is the mix measured before 2026-11-24:
    every message carries a new admit time, a new diagnosis time and a random bed, so every
    message rewrites the visit's admit time, location and diagnoses (three more history rows
    and a diagnoses replace per message) — a worst case, kept to compare with older figures."""
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}")
    rng = random.Random(seed)
    weights = [w for w, _ in STORIES]
    stories: list[tuple[str, tuple[str, ...]]] = []
    total = 0
    p = 0
    conn_of: list[int] = []
    while total < n:
        events = rng.choices([s for _, s in STORIES], weights)[0]
        who = p % pool if pool else p
        stories.append((f"{tag}{who:06d}", events))
        conn_of.append(who % connections)
        total += len(events)
        p += 1
    per_conn_stories: list[list[tuple[str, tuple[str, ...]]]] = [[] for _ in range(connections)]
    for i, st in enumerate(stories):
        per_conn_stories[conn_of[i]].append(st)
    wl = Workload([], len({m for m, _ in stories}))
    base = time.time() - 86400
    seq = 0
    for c, sts in enumerate(per_conn_stories):
        slots = [i for i, (_, ev) in enumerate(sts) for _ in ev]
        rng.shuffle(slots)
        nxt = [0] * len(sts)
        msgs = []
        if poison_mrn is not None and c == 0:
            # a message its mapping cannot apply (cancel of a visit that does not exist):
            # it goes to the error queue and holds every later message for its patient
            cid = f"{tag}X{seq:07d}"
            seq += 1
            text = adt("A13", poison_mrn, cid, base, visit="NOVISIT", rng=random.Random(0))
            msgs.append((cid, SB + text.encode() + EB))
            wl.mrn_of[cid] = poison_mrn
        story: dict[int, tuple[float, str]] = {}  # slot -> (admit time, current bed): realistic
        for s in slots:
            mrn, events = sts[s]
            k = nxt[s]
            nxt[s] += 1
            event = events[k]
            cid = f"{tag}{seq:08d}"
            seq += 1
            klass = "O" if events[0] == "A04" else "I"
            loc = f"{rng.choice(['4W', '5E', '3N', 'ER'])}^{rng.randint(100, 499)}^{rng.choice('AB')}"
            admitted = None
            if mix == "realistic":
                admitted, bed = story.get(s, (base + seq, loc))
                loc = loc if event == "A02" else bed
                story[s] = (admitted, loc)
            visit = f"V{mrn}" if not pool else f"V{mrn}-{s}"
            text = adt(
                event,
                mrn,
                cid,
                base + seq,
                visit=visit,
                klass=klass,
                location=loc,
                rng=random.Random(mrn),
                admitted=admitted,
            )
            msgs.append((cid, SB + text.encode() + EB))
            wl.mrn_of[cid] = mrn
        wl.per_conn.append(msgs)
    if poison_mrn is not None:  # the poisoned patient's own story, behind the poison
        for k, event in enumerate(("A01", "A08", "A02", "A08", "A03")):
            cid = f"{tag}Y{k:07d}"
            text = adt(event, poison_mrn, cid, base + seq + k, visit=f"V{poison_mrn}")
            wl.per_conn[0].insert(1 + k * 7, (cid, SB + text.encode() + EB))
            wl.mrn_of[cid] = poison_mrn
    return wl


def _pdf(size: int, rng: random.Random) -> bytes:
    """A well-formed one-page PDF of about ``size`` bytes (an incompressible stream)."""
    head = (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n"
    )
    body = rng.randbytes(size)
    stream = b"4 0 obj << /Length " + str(len(body)).encode() + b" >>\nstream\n" + body
    return head + stream + b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def mdm_t02(mrn: str, doc: str, cid: str, t: float, rng: random.Random, kb: int = 100) -> bytes:
    """MDM^T02 (original document with content): TXA + one OBX ED with a base64 PDF whose
    encoded size is about ``kb`` KB."""
    fam, giv, dob, sex = _person(random.Random(hash(mrn)))  # the patient of the chart (see adt)
    pdf = _pdf(kb * 1024 * 3 // 4 - 300, rng)
    b64 = base64.b64encode(pdf).decode()
    stamp = _ts(t)
    segs = [
        f"MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|{stamp}||MDM^T02^MDM_T02|{cid}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"EVN|T02|{stamp}",
        f"PID|1||{mrn}^^^HOSP^MR||{fam}^{giv}^Q||{dob}|{sex}|||12 MAIN ST^^SPRINGFIELD^IL^62701^USA^H",
        f"PV1|1|I|4W^401^A^HOSP||||1234^SMITH^JOHN^^^^MD^^HOSP|||MED|||||||||V{mrn}^^^HOSP^VN",
        f"TXA|1|CN^Consultation^HL70270|AP|{stamp}||{stamp}|{stamp}||5678^JONES^ALICE^^^^MD^^HOSP||"
        f"T900^WRIGHT^PAT^^^^^^HOSP|{doc}^TRANSCRIBE|||||AU|U|AV|AC||5678^JONES^ALICE^^^^MD^^HOSP^^^^^^{stamp}",
        f"OBX|1|ED|CN^Consultation^HL70270||HOSP^AP^PDF^Base64^{b64}||||||F",
    ]
    return SB + ("\r".join(segs) + "\r").encode() + EB


# -- the MLLP client ------------------------------------------------------------------------------
