"""The results table's declaration: one :class:`Row` per result, and every column grouping derived from it.

The columns are declared once, by :class:`Row` (name, SQL type, whether it is part of the key), in table
order. The key :data:`KEY_COLUMNS` = (model, dataset, image_id, object_id, protocol, level, draw,
corruption, severity), the SQL schema (:data:`RESULTS_TABLE`, :data:`SCHEMA`) and every grouping of rows
(:data:`LEVEL_COLUMNS`, :data:`OBJECT_COLUMNS`, :data:`PROMPT_COLUMNS`, :data:`IMAGE_ROW_COLUMNS`) are
derived from it, in its order; ``tests/test_structure.py`` pins them.

A row holds the prompt (JSON + sha256), IoU, boundary IoU, the model's score, the predicted mask as COCO
RLE, per-prompt extras, and a status (``ok`` or ``failed`` with its error). A failure that concerns a
whole image (unreadable file, mask of the wrong size, ...) is one row with ``object_id = ''``,
``level = ''`` and ``draw = -1`` for each model and protocol it blocked. An annotated object that cannot
be used (a COCO segmentation that decodes to nothing) is the same with its ``object_id`` set, so each
lost object is counted while the image's other objects are scored.

The ``objects`` table (:data:`OBJECTS_TABLE`) keeps, per group of rows that differ only in ``draw``
(:data:`OBJECT_KEY_COLUMNS`), the per-object stability a run computed from the ok masks of the batch it
wrote them with, and how many masks that was (``draws``). It is a cache of a number the rows define: a
reader uses a group's entry only when ``draws`` equals that group's ok rows (docs/runs.md). Added without
a schema version: stores written before it simply lack the table (every stability is computed from the
rows, as before), and any writable open creates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

DB_NAME = "results.sqlite"
#: 2 added the corruption axis to the key (``corruption``, ``severity``); version-1 stores are read as
#: all clean (``none``, 0) and migrated in place by the first run that writes to them.
SCHEMA_VERSION = 2


def _column(sql: str, key: bool = False, **default) -> object:
    return field(metadata={"sql": sql, "key": key}, **default)


@dataclass
class Row:
    """One result row: the declaration of the results table (column order, SQL types and the key)."""

    model: str = _column("TEXT NOT NULL", key=True)
    dataset: str = _column("TEXT NOT NULL", key=True)
    image_id: str = _column("TEXT NOT NULL", key=True)
    object_id: str = _column("TEXT NOT NULL", key=True)
    protocol: str = _column("TEXT NOT NULL", key=True)
    level: str = _column("TEXT NOT NULL", key=True)
    draw: int = _column("INTEGER NOT NULL", key=True)
    protocol_version: int = _column("INTEGER NOT NULL")
    level_value: Optional[float] = _column("REAL", default=None)
    prompt: Optional[str] = _column("TEXT", default=None)
    prompt_hash: Optional[str] = _column("TEXT", default=None)
    iou: Optional[float] = _column("REAL", default=None)
    biou: Optional[float] = _column("REAL", default=None)
    score: Optional[float] = _column("REAL", default=None)
    gt_area: Optional[int] = _column("INTEGER", default=None)
    pred_area: Optional[int] = _column("INTEGER", default=None)
    mask_rle: Optional[str] = _column("TEXT", default=None)
    extras: Optional[str] = _column("TEXT", default=None)
    status: str = _column("TEXT NOT NULL CHECK (status IN ('ok', 'failed'))", default="ok")
    error: Optional[str] = _column("TEXT", default=None)
    #: The image the prompt was decoded on: ``none``/0 = clean, else a sambench.inputs.corruptions name and 1..5.
    corruption: str = _column("TEXT NOT NULL DEFAULT 'none'", key=True, default="none")
    severity: int = _column("INTEGER NOT NULL DEFAULT 0", key=True, default=0)

    def values(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)


#: Every column, in table order.
COLUMNS = tuple(f.name for f in fields(Row))
#: The result key, in its one order: (model, dataset, image_id, object_id, protocol, level, draw,
#: corruption, severity).
KEY_COLUMNS = tuple(f.name for f in fields(Row) if f.metadata["key"])
#: A (model, dataset, protocol, level, corruption, severity) cell: what the summary table and ``compare``
#: aggregate over.
LEVEL_COLUMNS = tuple(c for c in KEY_COLUMNS if c not in ("image_id", "object_id", "draw"))
#: One object in one cell: the unit of averaging and of the bootstrap.
OBJECT_COLUMNS = LEVEL_COLUMNS + ("image_id", "object_id")
#: One realised prompt, whatever the model: (dataset, image_id, object_id, protocol, level, draw).
PROMPT_COLUMNS = tuple(c for c in KEY_COLUMNS if c != "model")
#: A row of one (model, dataset, image): what resume compares (:meth:`Store.done_keys`).
IMAGE_ROW_COLUMNS = tuple(c for c in KEY_COLUMNS if c not in ("model", "dataset", "image_id"))

RESULTS_TABLE = ("CREATE TABLE IF NOT EXISTS results (\n    "
                 + ",\n    ".join(f"{f.name} {f.metadata['sql']}" for f in fields(Row))
                 + f",\n    PRIMARY KEY ({', '.join(KEY_COLUMNS)})\n)")

#: The ``objects`` table's key: one (model, dataset, image, object, protocol, level, condition) group of rows,
#: the result key without ``draw``, in its order.
OBJECT_KEY_COLUMNS = tuple(c for c in KEY_COLUMNS if c != "draw")
#: What the ``objects`` table keeps per group: ``draws``, the number of ok masks the stability was computed
#: from, and :func:`sambench.metrics.stability` of them in draw order (NULL where it is NaN).
OBJECT_STAT_COLUMNS = ("draws", "stability_pairwise", "stability_union")
#: The ``objects`` table's columns, in table order: a stats tuple of :meth:`Store.write` has them in this order.
OBJECTS_COLUMNS = OBJECT_KEY_COLUMNS + OBJECT_STAT_COLUMNS
_SQL = {f.name: f.metadata["sql"] for f in fields(Row)}
OBJECTS_TABLE = ("CREATE TABLE IF NOT EXISTS objects (\n    "
                 + ",\n    ".join(f"{c} {_SQL[c]}" for c in OBJECT_KEY_COLUMNS)
                 + ",\n    draws INTEGER NOT NULL,\n    stability_pairwise REAL,\n    stability_union REAL"
                 + f",\n    PRIMARY KEY ({', '.join(OBJECT_KEY_COLUMNS)})\n)")
#: The ``tracks`` table (video protocols, docs/video.md "Runs and store"): one entry per ``results`` row of a video
#: protocol, same key (``image_id`` is the video id), holding what a track's one row cannot: the prompt frame,
#: the scored frames and their per-frame J and F packed as JSON lists (frame order), the DAVIS track scores of
#: :func:`sambench.metrics.video.track_scores`, and the per-frame predicted masks as COCO RLE (JSON list, frame
#: order, NULL unless the run keeps them). The ``results`` row keeps status/error, the prompt, ``iou`` = mean J
#: (J is region IoU) and ``biou`` NULL (F is not boundary IoU).
TRACK_VALUE_COLUMNS = ("prompt_frame", "direction", "frames", "j_frames", "f_frames", "j_mean", "f_mean", "jf",
                       "j_recall", "f_recall", "j_decay", "f_decay", "masks_rle")
_TRACK_SQL = {"prompt_frame": "INTEGER NOT NULL", "direction": "TEXT NOT NULL", "frames": "TEXT NOT NULL",
              "j_frames": "TEXT NOT NULL", "f_frames": "TEXT NOT NULL", "masks_rle": "TEXT"}
#: The ``tracks`` table's columns, in table order: a track tuple of :meth:`Store.write` has them in this order.
TRACKS_COLUMNS = KEY_COLUMNS + TRACK_VALUE_COLUMNS
TRACKS_TABLE = ("CREATE TABLE IF NOT EXISTS tracks (\n    "
                + ",\n    ".join(f"{c} {_SQL[c]}" for c in KEY_COLUMNS)
                + ",\n    " + ",\n    ".join(f"{c} {_TRACK_SQL.get(c, 'REAL')}" for c in TRACK_VALUE_COLUMNS)
                + f",\n    PRIMARY KEY ({', '.join(KEY_COLUMNS)})\n)")
SCHEMA = (RESULTS_TABLE + ";\n" + OBJECTS_TABLE + ";\n" + TRACKS_TABLE
          + ";\nCREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n")
#: Columns a store of an older schema version lacks, with the value its rows mean.
ADDED_COLUMNS = {2: {"corruption": "'none'", "severity": "0"}}
