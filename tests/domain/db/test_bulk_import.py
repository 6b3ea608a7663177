"""Rule 22: import from xlsx and csv, matched on external_id, values typed per field, a report
per row (and which assignment each customer is in), on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from bulk_world import NOW, customers_of, history_counts
from openpyxl import Workbook
from sqlalchemy import select

from domain.db import repositories as repo
from domain.db import tables as t
from domain.db.bulk import run_bulk_job
from domain.db.imports import create_import_job, import_rows, read_table
from domain.errors import Forbidden, Invalid, NotFound
from domain.model import HistoryKind

MAPPING = {"Kundeid": "external_id", "Poeng": "info.score", "By": "city", "Fornyes": "renewal"}


def write_xlsx(path: Path, rows: list[list]) -> Path:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


async def run_import(engine, world, path, store, mapping=MAPPING, user=None):
    table = read_table(path)
    async with engine.begin() as conn:
        job = await create_import_job(
            conn, user or world.admin, world.crm_id, table, mapping, NOW, file_name=path.name
        )
    done = await run_bulk_job(engine, job.id, selections=store, batch_size=3)
    async with engine.connect() as conn:
        return done, await import_rows(conn, job.id)


async def test_rule_22_import_xlsx_reports_every_row(engine, new_world, store, tmp_path):
    world = await new_world(
        customers=[{"info": {"score": 1, "city": "Oslo"}}, {"info": {"score": 5}}, {}, {}]
    )
    ids = world.customer_ids
    await store.mark_ready(world.owner)
    await store.select(world.owner, world.agents[0].id, ids[3])
    path = write_xlsx(
        tmp_path / "kunder.xlsx",
        [
            ["Kundeid", "Poeng", "By", "Fornyes", "Ignored"],
            ["000001", 7, "Bodø", "01.03.2026", "x"],  # a Norwegian date
            ["000002", 5, None, None, "x"],  # same value, empty cells: unchanged
            ["000003", "many", "Tromsø", None, None],  # not a number
            ["999999", 1, "Oslo", None, None],  # no such customer
            ["000004", 2, None, None, None],  # selected
        ],
    )
    done, rows = await run_import(engine, world, path, store)
    assert done.report["summary"] == (
        "1 of 5 updated; 1 unchanged; 1 not found; 1 invalid; 1 selected"
    )
    by_row = {r["row_no"]: r for r in rows}
    assert by_row[2]["result"] == "updated" and by_row[2]["detail"] == "city, renewal, score"
    assert by_row[2]["assignment"] == "Main" and by_row[2]["customer_id"] == ids[0]
    assert by_row[3]["result"] == "unchanged"
    assert (
        by_row[4]["result"] == "invalid" and "Score: 'many' is not a number" in by_row[4]["detail"]
    )
    assert (by_row[4]["customer_id"], by_row[4]["assignment"]) == (ids[2], "Main")
    assert by_row[5]["result"] == "not_found" and by_row[5]["assignment"] is None
    assert by_row[6]["result"] == "selected"
    customers = await customers_of(engine, ids)
    assert customers[ids[0]].info == {"score": 7, "city": "Bodø", "renewal": "2026-03-01"}
    assert customers[ids[2]].info == {}  # nothing of an invalid row is written
    imported = await history_counts(engine, ids, HistoryKind.IMPORTED)
    assert imported == {ids[0]: 1}


async def test_rule_22_import_csv_with_semicolons(engine, new_world, store, tmp_path):
    world = await new_world(n=2)
    path = tmp_path / "kunder.csv"
    path.write_text("Kundeid;Poeng;VIP\n000001;3,5;ja\n000002;;nei\n", encoding="utf-8")
    _, rows = await run_import(
        engine, world, path, store, {"Kundeid": "external_id", "Poeng": "score", "VIP": "vip"}
    )
    assert [r["result"] for r in rows] == ["updated", "updated"]
    customers = await customers_of(engine, world.customer_ids)
    assert customers[world.customer_ids[0]].info == {"score": 3.5, "vip": True}
    assert customers[world.customer_ids[1]].info == {"vip": False}


async def test_rule_22_a_bad_mapping_or_file_is_refused_whole(engine, new_world, store, tmp_path):
    world = await new_world(n=1)
    path = write_xlsx(tmp_path / "k.xlsx", [["Kundeid", "Poeng"], ["000001", 3]])
    with pytest.raises(Invalid, match="no column 'Navn'"):
        await run_import(engine, world, path, store, {"Kundeid": "external_id", "Navn": "city"})
    with pytest.raises(Invalid, match="no info field 'age'"):
        await run_import(engine, world, path, store, {"Kundeid": "external_id", "Poeng": "age"})
    with pytest.raises(Invalid, match="onto external_id"):
        await run_import(engine, world, path, store, {"Poeng": "score"})
    with pytest.raises(Forbidden):
        await run_import(engine, world, path, store, user=world.supervisor, mapping={})
    stranger = await new_world(n=1)
    with pytest.raises(NotFound):
        await run_import(engine, stranger, path, store, user=world.admin)
    (tmp_path / "k.txt").write_text("x")
    with pytest.raises(Invalid, match=r"only \.xlsx and \.csv"):
        read_table(tmp_path / "k.txt")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    with pytest.raises(Invalid, match="not a readable xlsx"):
        read_table(tmp_path / "broken.xlsx")
    async with engine.connect() as conn:
        jobs = (
            await conn.execute(
                select(t.bulk_jobs).where(t.bulk_jobs.c.data_owner_id == world.owner)
            )
        ).all()
    assert jobs == []


async def test_rule_22_a_customer_twice_in_one_batch_changes_in_file_order(
    engine, new_world, store, tmp_path
):
    world = await new_world(customers=[{"info": {"score": 1, "city": "Oslo"}}, {}])
    ids = world.customer_ids
    path = write_xlsx(
        tmp_path / "twice.xlsx",
        [
            ["Kundeid", "Poeng", "By", "Fornyes"],
            ["000001", 2, None, None],
            ["000002", None, "Mo", None],
            ["000001", 3, "Bodø", None],  # the same batch (of 3) as its first row
        ],
    )
    done, rows = await run_import(engine, world, path, store)
    assert done.report["summary"] == "3 of 3 updated"
    assert [r["detail"] for r in rows] == ["score", "city", "city, score"]
    customers = await customers_of(engine, ids)
    assert customers[ids[0]].info == {"score": 3, "city": "Bodø"}
    async with engine.connect() as conn:
        history = await repo.list_history(conn, ids[0])
    assert [(e.kind, e.user_id, e.assignment_id) for e in history] == [
        (HistoryKind.IMPORTED, world.admin.id, world.assignment.id)
    ] * 2
    assert [e.data for e in history] == [
        {"changes": {"score": {"from": 1, "to": 2}}, "job": done.id, "row": 2},
        {
            "changes": {"score": {"from": 2, "to": 3}, "city": {"from": "Oslo", "to": "Bodø"}},
            "job": done.id,
            "row": 4,
        },
    ]
