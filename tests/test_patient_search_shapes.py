"""``chart_pages.search_patients`` compiles one set of statements per *shape* of a search and binds
the values (``_Search``): for every combination of filters, prefixes that are index ranges or
plain LIKEs, date comparisons of every prefix and paging, it finds what the same search written
with SQLAlchemy's expressions (``_prefix``, ``compare``) finds, in the same order, with the same
totals — also when one shape is reused with other values."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timezone

from sqlalchemy import func, or_, select

from interface.ops import bench_fhir
from interface.store import chart_pages
from interface.store import chart_schema as cs
from interface.store.chart_pages import _prefix, compare


def _reference(conn, mrns, family, given, name, birth, sexes, updated, count, offset):
    t = cs.patients
    where = [func.coalesce(t.c.merged_into, "") == ""]
    if mrns is not None:
        where.append(t.c.mrn.in_(mrns))
    if family:
        where.append(_prefix(func.lower(t.c.family), family))
    if given:
        where.append(_prefix(func.lower(t.c.given), given))
    if name:
        where.append(or_(_prefix(func.lower(t.c.family), name), _prefix(func.lower(t.c.given), name)))
    if sexes is not None:
        where.append(func.lower(t.c.sex).in_(sexes))
    where += compare(t.c.birth_date, birth, text=True)
    where += compare(t.c.updated_at, updated)
    q = select(t.c.id).where(*where).order_by(t.c.family, t.c.given, t.c.mrn)
    every = [r.id for r in conn.execute(q)]
    return len(every), every[offset : offset + count], len(every) > offset + count


def test_every_shape_finds_what_the_expressions_find(engine):
    mrns = bench_fhir.load(engine, 400, seed=3)
    rnd = random.Random(5)
    families = sorted({f.lower() for f in bench_fhir.FAMILIES[:40]})
    birth_ops = ["eq", "ne", "ge", "gt", "le", "lt", "sa", "eb"]
    with engine.connect() as conn:
        births = [r.birth_date for r in conn.execute(select(cs.patients.c.birth_date))]
        # dates at the patients' own boundaries: a year, a month and a day someone was born
        dates = [b[:n] for b in rnd.sample(births, 12) for n in (4, 7, 10)]
        checked = 0
        for fam, giv, nm, sex, nbirth in itertools.product(
            [None, "b", "ba", "bar", "c%", "d_"],
            [None, "an", "w"],
            [None, "ma", "s"],
            [None, ["f"], ["f", "m"]],
            [0, 1, 2],
        ):
            if rnd.random() < 0.6:  # a sample of the 486 combinations, every value kind in it
                continue
            birth = [(rnd.choice(birth_ops), rnd.choice(dates)) for _ in range(nbirth)]
            some = rnd.sample(mrns, 30) if rnd.random() < 0.2 else None
            fam = fam if fam != "bar" else rnd.choice(families)[:3]
            for count, offset in ((5, 0), (5, 5), (50, 0)):
                args = dict(mrns=some, family=fam, given=giv, name=nm, birth=birth, sexes=sex, updated=[])
                want_total, want_ids, want_more = _reference(
                    conn, some, fam, giv, nm, birth, sex, [], count, offset
                )
                total, ids, more = chart_pages.search_patients(
                    conn, **args, count=count, offset=offset, total="accurate"
                )
                assert (total, ids, more) == (want_total, want_ids, want_more), args
                bounded, ids2, _ = chart_pages.search_patients(
                    conn, **args, count=count, offset=offset, total="bounded", cap=3
                )
                assert ids2 == want_ids and bounded == (
                    want_total if want_total <= 3 or (offset == 0 and not more) else None
                )
                checked += 1
        assert checked > 100
        # every date comparison at every boundary, alone and beside a name (one shape each,
        # reused with every value)
        for op, value, fam in itertools.product(birth_ops, dates, [None, "b"]):
            got = chart_pages.search_patients(
                conn, family=fam, birth=[(op, value)], count=10, total="accurate"
            )
            assert got == _reference(conn, None, fam, None, None, [(op, value)], None, [], 10, 0), (
                op,
                value,
                fam,
            )
        # _lastUpdated, and one shape twice with other values
        ups = [("ge", datetime(2026, 11, 30, tzinfo=timezone.utc))]
        for fam in ("ba", "ca", "zz"):
            assert (
                chart_pages.search_patients(conn, family=fam, updated=ups, count=10)[:2]
                == _reference(conn, None, fam, None, None, [], None, ups, 10, 0)[:2]
            )
