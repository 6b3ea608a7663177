"""Rule 22: the streaming xlsx reader gives the values openpyxl gives (values_only), for the
cell kinds spreadsheets write: shared and inline strings (rich text too), numbers, dates by
number format (built-in and custom, 1900 and 1904 calendars), booleans, errors, formula
results, and cells and rows the file leaves out."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from domain.db.imports import read_table
from domain.db.xlsx import read_rows
from domain.errors import Invalid

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"

SHEET = f"""<?xml version="1.0" encoding="UTF-8"?>
<worksheet xmlns="{MAIN}"><dimension ref="A1:F6"/><sheetData>
<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c>
<c r="D1" t="inlineStr"><is><r><t>Pr</t></r><r><t>is</t></r></is></c></row>
<row r="2"><c r="A2" t="s"><v>3</v></c><c r="B2" s="1"><v>46082</v></c><c r="C2" t="b"><v>1</v></c>
<c r="D2"><v>3.5</v></c><c r="F2" t="e"><v>#N/A</v></c></row>
<row r="4"><c r="A4"><v>42</v></c><c r="B4" s="2"><v>46082.5</v></c>
<c r="C4" t="str"><f>A4&amp;"x"</f><v>42x</v></c><c r="D4"><f>A4*2</f><v>84</v></c>
<c r="E4" t="inlineStr"><is><t>Bod&#248; &amp; Mo</t></is></c></row>
<row r="6"><c r="A6" t="s"><v>4</v></c><c r="B6" s="3"><v>1E3</v></c></row>
</sheetData></worksheet>"""

STRINGS = f"""<?xml version="1.0" encoding="UTF-8"?>
<sst xmlns="{MAIN}" count="5" uniqueCount="5"><si><t>Kundeid</t></si><si><t>Fornyes</t></si>
<si><r><rPr><b/></rPr><t>V</t></r><r><t xml:space="preserve">IP </t></r></si>
<si><t>000001</t><rPh sb="0" eb="1"><t>ignored</t></rPh></si><si><t/></si></sst>"""

STYLES = f"""<?xml version="1.0" encoding="UTF-8"?>
<styleSheet xmlns="{MAIN}"><numFmts count="1"><numFmt numFmtId="164" formatCode="dd.mm.yyyy"/>
</numFmts><cellStyleXfs count="1"><xf numFmtId="0"/></cellStyleXfs><cellXfs count="4">
<xf numFmtId="0"/><xf numFmtId="164" applyNumberFormat="1"/><xf numFmtId="22"/><xf numFmtId="3"/>
</cellXfs></styleSheet>"""


def write_package(path: Path, *, date1904: bool = False, sheet: str = SHEET) -> Path:
    """A workbook as Excel writes it (shared strings, styles), with a chartsheet first."""
    pr = '<workbookPr date1904="1"/>' if date1904 else "<workbookPr/>"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats'
            '-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
            'data.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
            'worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/><Override '
            'PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.styles+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" '
            f'Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0"?><workbook xmlns="{MAIN}" xmlns:r="{REL}">{pr}<sheets>'
            '<sheet name="Chart" sheetId="2" r:id="rId9"/>'
            '<sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{PKG}">'
            f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/data.xml"/>'
            f'<Relationship Id="rId9" Type="{REL}/chartsheet" Target="/xl/chart.xml"/>'
            f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
            f'<Relationship Id="rId3" Type="{REL}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
        "xl/worksheets/data.xml": sheet,
        "xl/sharedStrings.xml": STRINGS,
        "xl/styles.xml": STYLES,
    }
    with zipfile.ZipFile(path, "w") as package:
        for name, text in parts.items():
            package.writestr(name, text)
    return path


def openpyxl_rows(path: Path) -> list[list]:
    book = load_workbook(path, read_only=True, data_only=True)
    try:
        return [_trim(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def _empty(value):
    return None if value == "" or (isinstance(value, str) and value.startswith("#N/")) else value


def _trim(row) -> list:
    values = list(row)
    while values and values[-1] is None:
        values.pop()
    return values


@pytest.mark.filterwarnings("ignore:Workbook contains no default style")
@pytest.mark.parametrize("date1904", [False, True])
def test_rule_22_xlsx_cells_read_as_openpyxl_reads_them(tmp_path, date1904):
    path = write_package(tmp_path / "excel.xlsx", date1904=date1904)
    ours = [_trim(row) for row in read_rows(path)]
    # As openpyxl reads them, except that an empty text and an error cell ("#N/A") are empty
    # (None): the import sees no value there either way.
    assert ours == [_trim([_empty(v) for v in row]) for row in openpyxl_rows(path)]
    epoch_shift = 1462 if date1904 else 0  # the same serial is a later day in 1904's calendar
    assert ours[0] == ["Kundeid", "Fornyes", "VIP ", "Pris"]
    assert ours[1][0] == "000001" and ours[1][2:] == [True, 3.5]
    assert (ours[1][1] - datetime(2026, 3, 1)).days == epoch_shift
    assert ours[2] == []  # a row the file leaves out
    assert ours[3][0] == 42 and ours[3][2:] == ["42x", 84, "Bodø & Mo"]
    assert ours[5] == [None, 1000] and isinstance(ours[5][1], int)  # a whole number: int


def test_rule_22_openpyxl_written_files_read_alike(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(["Kundeid", "Poeng", "Fornyes", "Ja"])
    sheet.append(["000001", 7, datetime(2026, 3, 1), True])
    sheet.append([None, None, None, None])
    sheet.append(["000003", 2.25, None, False])
    book.save(tmp_path / "w.xlsx")
    ours = [_trim(row) for row in read_rows(tmp_path / "w.xlsx")]
    load = load_workbook(tmp_path / "w.xlsx", read_only=True, data_only=True)
    theirs = [_trim(row) for row in load.worksheets[0].iter_rows(values_only=True)]
    load.close()
    assert ours == theirs
    table = read_table(tmp_path / "w.xlsx")
    assert table.headers == ("Kundeid", "Poeng", "Fornyes", "Ja")
    assert [list(r) for r in table.rows] == [
        ["000001", 7, datetime(2026, 3, 1), True],
        ["000003", 2.25, None, False],
    ]


def test_rule_22_a_broken_xlsx_is_refused(tmp_path):
    path = write_package(tmp_path / "broken.xlsx", sheet="<worksheet><sheetData><row>")
    with pytest.raises(Invalid, match="not a readable xlsx"):
        read_table(path)
    empty = tmp_path / "empty.xlsx"
    with zipfile.ZipFile(empty, "w") as package:
        package.writestr("hello.txt", "no workbook here")
    with pytest.raises(Invalid, match="not a readable xlsx"):
        read_table(empty)
