#!/usr/bin/env python3
"""An independent reader for the CSV Samband writes: Python's csv module with strict=True.

usage: check_csv.py FILE [DELIMITER]  -> prints the rows as JSON (one list per row), exit 1 on error.
The file must start with a UTF-8 BOM and use CRLF line ends (Excel's own CSV dialect).
"""
import csv
import json
import sys

path = sys.argv[1]
delim = sys.argv[2] if len(sys.argv) > 2 else ";"
raw = open(path, "rb").read()
if not raw.startswith(b"\xef\xbb\xbf"):
    sys.exit("no UTF-8 BOM")
with open(path, newline="", encoding="utf-8-sig") as f:
    rows = list(csv.reader(f, delimiter=delim, strict=True))
json.dump(rows, sys.stdout, ensure_ascii=False)
