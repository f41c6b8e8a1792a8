"""Test-session isolation: never read or write the user's sambench caches or checkpoints."""

import os
import tempfile

_ROOT = tempfile.mkdtemp(prefix="sambench-tests-")
os.environ["SAMBENCH_HASH_CACHE"] = os.path.join(_ROOT, "checkpoint-hashes.json")
os.environ["SAMBENCH_CHECKPOINTS"] = os.path.join(_ROOT, "checkpoints")
os.environ.pop("SAMBENCH_CARDS", None)
