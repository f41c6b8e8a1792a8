"""The results store: what a run keeps on disk, one SQLite file and one manifest JSON per run directory.

This package is the only owner of both formats and holds every SQL statement of sambench:

* :mod:`~sambench.store.table`: the result key and the row columns, declared once by :class:`Row`; the
  ``objects`` table of per-object stability derived from them.
* :mod:`~sambench.store.sqlite`: connections whose errors are one line naming the file (a full disk, a
  corrupt or read-only database).
* :mod:`~sambench.store.results`: :class:`Store`, the ``results.sqlite`` of one run directory: rows written
  an image per transaction, resume, and the identity and invocation ledger of its ``info`` table.
* :mod:`~sambench.store.manifest`: ``manifest.json``: read, write, one more invocation merged in
  (:func:`updated_manifest`), several runs' manifests merged (:func:`merge_manifests`).
* :mod:`~sambench.store.runs`: reading runs back, one or several merged (:func:`load_runs`), and their
  stored per-object stability (:func:`load_objects`).

Reports, ``compare`` and merges read only these two files. The names below are the ones other stages
import (``from sambench.store import Store, Row, KEY_COLUMNS, ...``).
"""

from sambench.store.manifest import (MANIFEST_NAME, MERGED_DATASET_FIELDS, Invocation, add_timings, git_commit,
                                     library_versions, manifest_invocations, merge_manifests, read_manifest,
                                     rounded_timings, sum_scoring, updated_manifest, write_manifest)
from sambench.store.results import (CORRUPTION_IDENTITY, DATASET_IDENTITY, MODEL_IDENTITY, PROTOCOL_IDENTITY,
                                    Store)
from sambench.store.runs import (as_loaded, load_objects, load_runs, load_tracks, merge_rows, read_rows,
                                 run_manifest)
from sambench.store.sqlite import database_error
from sambench.store.table import (ADDED_COLUMNS, COLUMNS, DB_NAME, IMAGE_ROW_COLUMNS, KEY_COLUMNS, LEVEL_COLUMNS,
                                  OBJECT_COLUMNS, OBJECT_KEY_COLUMNS, OBJECT_STAT_COLUMNS, OBJECTS_COLUMNS,
                                  OBJECTS_TABLE, PROMPT_COLUMNS, RESULTS_TABLE, SCHEMA, SCHEMA_VERSION, TRACK_VALUE_COLUMNS,
                                  TRACKS_COLUMNS, TRACKS_TABLE, Row)

__all__ = [
    # table
    "Row", "COLUMNS", "KEY_COLUMNS", "LEVEL_COLUMNS", "OBJECT_COLUMNS", "PROMPT_COLUMNS", "IMAGE_ROW_COLUMNS",
    "DB_NAME", "SCHEMA_VERSION", "RESULTS_TABLE", "SCHEMA", "ADDED_COLUMNS",
    "OBJECT_KEY_COLUMNS", "OBJECT_STAT_COLUMNS", "OBJECTS_COLUMNS", "OBJECTS_TABLE",
    "TRACK_VALUE_COLUMNS", "TRACKS_COLUMNS", "TRACKS_TABLE",
    # the store of one run
    "Store", "MODEL_IDENTITY", "PROTOCOL_IDENTITY", "DATASET_IDENTITY", "CORRUPTION_IDENTITY", "database_error",
    # manifest
    "MANIFEST_NAME", "MERGED_DATASET_FIELDS", "Invocation", "read_manifest", "write_manifest", "updated_manifest",
    "manifest_invocations", "merge_manifests", "git_commit", "library_versions", "sum_scoring", "add_timings",
    "rounded_timings",
    # reading runs back
    "read_rows", "run_manifest", "load_runs", "load_objects", "load_tracks", "as_loaded", "merge_rows",
]
