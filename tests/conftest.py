"""Test-session isolation: never read or write the user's sambench caches or checkpoints."""

import os
import tempfile

import pytest

_ROOT = tempfile.mkdtemp(prefix="sambench-tests-")
os.environ["SAMBENCH_HASH_CACHE"] = os.path.join(_ROOT, "checkpoint-hashes.json")
os.environ["SAMBENCH_CHECKPOINTS"] = os.path.join(_ROOT, "checkpoints")
os.environ["SAMBENCH_CACHE"] = os.path.join(_ROOT, "embeddings")
os.environ.pop("SAMBENCH_CARDS", None)


@pytest.fixture(autouse=True)
def _fresh_embedding_cache(tmp_path_factory, monkeypatch):
    """Each test (and every `sambench` subprocess it starts) gets an empty embedding cache, so encoder
    counts never depend on which tests ran before."""
    monkeypatch.setenv("SAMBENCH_CACHE", str(tmp_path_factory.mktemp("embeddings")))


@pytest.fixture(scope="module", autouse=True)
def _private_hash_cache(tmp_path_factory):
    """Each test module gets its own empty checkpoint-hash cache (``SAMBENCH_HASH_CACHE``), so no digest cached
    by another module's weights (same path, size and mtime) is trusted here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAMBENCH_HASH_CACHE", str(tmp_path_factory.mktemp("hashcache") / "hashes.json"))
        yield
