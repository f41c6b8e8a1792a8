"""Embedding cache, adapter state serialisation, batched encode and the encode stage."""

import logging
import os
import threading

import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.execution.cache import EmbeddingCache, image_hash, read_entry
from sambench.execution.encode import EncodeStage
from tests.sam_fixtures import mixed_prompts, synthetic_image


@pytest.fixture(scope="module")
def images():
    return [synthetic_image(60, 80, seed=1), synthetic_image(72, 48, seed=2)]


@pytest.fixture(scope="module")
def sam():
    return build_adapter("sam-tiny", device="cpu")


@pytest.fixture(scope="module")
def hq():
    return build_adapter("hq-sam-tiny", device="cpu")


@pytest.fixture(scope="module")
def sam_states(sam, images):
    return [sam.encode(im, "sam") for im in images]


def _predict(adapter, state, image, n=2):
    h, w = image.shape[:2]
    return adapter.predict(state, mixed_prompts(h, w)[1:1 + n])


@pytest.mark.slow
def test_state_round_trip_through_the_cache_gives_identical_predictions(tmp_path, images, sam, hq, sam_states):
    for adapter, prep, state in ((sam, "sam", sam_states[0]), (hq, "hq-sam-1024", hq.encode(images[0], "hq-sam-1024"))):
        cache = EmbeddingCache(tmp_path / adapter.name)
        key_hash = image_hash(images[0])
        assert cache.get(adapter, key_hash, prep) is None
        cache.put(adapter, key_hash, prep, state)
        again = cache.get(adapter, key_hash, prep)
        assert torch.equal(again.features, state.features)
        assert (again.original_size, again.input_size, again.preprocessing) == \
            (state.original_size, state.input_size, state.preprocessing)
        if adapter.hq:
            assert len(again.interm) == 1 and torch.equal(again.interm[0], state.interm[0])
        else:
            assert again.interm is None
        a, b = _predict(adapter, state, images[0]), _predict(adapter, again, images[0])
        assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)
        assert cache.stats.to_dict() == {"hits": 1, "misses": 1, "corrupt": 0, "writes": 1, "evicted": 0}


@pytest.mark.slow
def test_keys_separate_encoders_modes_images_and_storage(tmp_path, images, sam, hq):
    cache = EmbeddingCache(tmp_path)
    h0, h1 = image_hash(images[0]), image_hash(images[1])
    keys = {cache.key(sam.cache_signature(), "sam", h0), cache.key(hq.cache_signature(), "sam", h0),
            cache.key(sam.cache_signature(), "hq-sam-1024", h0), cache.key(sam.cache_signature(), "sam", h1),
            EmbeddingCache(tmp_path, storage="fp16").key(sam.cache_signature(), "sam", h0)}
    assert len(keys) == 5
    # Stable-SAM's plug-in sits in the decoder: it shares its base SAM's encoder entries
    stable = build_adapter("stable-sam-tiny", device="cpu")
    assert stable.cache_signature() == sam.cache_signature()
    # baselines are never cached
    assert build_adapter("box-fill").cache_signature() is None
    assert image_hash(images[0]) == image_hash(images[0].copy())
    assert image_hash(images[0]) != image_hash(images[0][:, :-1])


@pytest.mark.parametrize("damage", ["truncate", "flip", "swap"])
def test_a_bad_entry_is_reported_once_never_used_and_recomputed(tmp_path, images, sam, sam_states, damage, caplog):
    cache = EmbeddingCache(tmp_path)
    for image, state in zip(images, sam_states):
        cache.put(sam, image_hash(image), "sam", state)
    first = sam_states
    paths = sorted(e.path for e in cache.entries())
    assert len(paths) == 2
    target = cache.path(cache.key(sam.cache_signature(), "sam", image_hash(images[0])))
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        data[-5] ^= 0xFF  # one byte of tensor data
        target.write_bytes(bytes(data))
    else:  # a valid entry of another image under this key
        other = cache.path(cache.key(sam.cache_signature(), "sam", image_hash(images[1])))
        target.write_bytes(other.read_bytes())
    assert len(EmbeddingCache(tmp_path).verify()) == 1
    calls = sam.encoder_calls
    with caplog.at_level(logging.WARNING, logger="sambench.execution.cache"):
        stage2 = EncodeStage(sam, cache)
        second = stage2.encode(images, "sam")
        stage2.encode(images[:1], "sam")  # the rewritten entry is good again: no second report
    assert sam.encoder_calls == calls + 1  # only the bad entry was recomputed
    assert torch.equal(second[0].features, first[0].features)
    assert stage2.counters() == {"cache_hits": 2, "cache_misses": 1, "cache_corrupt": 1, "cache_writes": 1}
    reports = [r for r in caplog.records if "ignored and recomputed" in r.getMessage()]
    assert len(reports) == 1 and str(target) in reports[0].getMessage()
    assert EmbeddingCache(tmp_path).verify() == []


def test_fp16_storage_halves_the_file_and_keeps_dtype(tmp_path, images, sam, sam_states):
    s32, s16 = EmbeddingCache(tmp_path / "a"), EmbeddingCache(tmp_path / "b", storage="fp16")
    state = sam_states[0]
    h = image_hash(images[0])
    p32, p16 = s32.put(sam, h, "sam", state), s16.put(sam, h, "sam", state)
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    back = s16.get(sam, h, "sam")
    assert back.features.dtype == torch.float32
    assert torch.allclose(back.features, state.features, rtol=1e-3, atol=1e-3)
    tensors, info = read_entry(p16.read_bytes())
    assert tensors["features"].dtype == torch.float16 and info["dtypes"]["features"] == "float32"


def test_lru_eviction_keeps_the_limit_and_the_recently_used(tmp_path, sam, sam_states):
    imgs = [synthetic_image(32, 32, seed=s) for s in range(5)]
    state = sam_states[0]
    probe = EmbeddingCache(tmp_path / "probe")
    size = probe.put(sam, "x", "sam", state).stat().st_size
    cache = EmbeddingCache(tmp_path / "c", max_gb=3.5 * size / 1e9)  # room for 3 entries
    hashes = [image_hash(im) for im in imgs]
    for i, h in enumerate(hashes[:3]):
        cache.put(sam, h, "sam", state)
        os.utime(cache.path(cache.key(sam.cache_signature(), "sam", h)), (1000 + i, 1000 + i))
    assert cache.get(sam, hashes[0], "sam") is not None  # a hit makes entry 0 the most recent
    cache.put(sam, hashes[3], "sam", state)  # over the limit: evict down to 90 %
    cache.put(sam, hashes[4], "sam", state)
    assert cache.total_bytes() <= cache.max_bytes
    left = {h for h in hashes if cache.path(cache.key(sam.cache_signature(), "sam", h)).exists()}
    assert hashes[0] in left and hashes[4] in left and hashes[1] not in left
    assert cache.stats.evicted >= 2


def test_concurrent_writers_and_readers_never_see_a_partial_entry(tmp_path, images, sam, sam_states):
    cache_dir = tmp_path / "c"
    state = sam_states[0]
    h = image_hash(images[0])
    errors, seen = [], []
    writing = threading.Event()
    writing.set()

    def writer():
        c = EmbeddingCache(cache_dir)
        for _ in range(15):
            c.put(sam, h, "sam", state)

    def reader():
        c = EmbeddingCache(cache_dir)
        while writing.is_set() or not seen:
            got = c.get(sam, h, "sam")
            if got is not None:
                seen.append(1)
                if not torch.equal(got.features, state.features):
                    errors.append("different")
        if c.stats.corrupt:
            errors.append(f"corrupt {c.stats.corrupt}")

    writers = [threading.Thread(target=writer) for _ in range(2)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    for t in readers:
        t.join()
    assert not errors and seen
    assert [p.name for p in (cache_dir).rglob(".tmp-*")] == []


def test_encode_stage_batches_misses_and_attributes_a_failure(tmp_path, images, sam):
    bad = np.zeros((10, 10), dtype=np.uint8)  # not RGB: the adapter refuses it
    stage = EncodeStage(sam, EmbeddingCache(tmp_path), batch=2)
    out = stage.encode([images[0], bad, images[1]], "sam")
    assert isinstance(out[1], Exception) and "RGB uint8" in str(out[1])
    assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception)
    calls = sam.encoder_calls
    again = EncodeStage(sam, EmbeddingCache(tmp_path), batch=2).encode(images, "sam")
    assert sam.encoder_calls == calls  # both from the cache
    assert torch.equal(again[0].features, out[0].features)
    # without a cache, or for a baseline, the stage just encodes
    assert EncodeStage(build_adapter("box-fill"), EmbeddingCache(tmp_path)).counters() == {}


# ------------------------------------------------------------------------------------------ in a run


def _run_rows(run_dir):
    import sqlite3

    from sambench.store import COLUMNS

    con = sqlite3.connect(str(run_dir / "results.sqlite"))
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY model, image_id, object_id, protocol, "
                       "level, draw").fetchall()
    con.close()
    return rows


@pytest.mark.slow
def test_a_warm_run_makes_no_encoder_call_and_gives_identical_rows(tmp_path):
    """Cold run fills the cache; the same run elsewhere, another protocol and Stable-SAM (same base
    encoder) then make 0 encoder calls; a corrupted entry is reported, recomputed, and the rows are
    unchanged."""
    import json

    from sambench.datasets import DatasetSpec

    from sambench.execution import RunConfig, run

    cache = tmp_path / "cache"

    def cfg(out, **kw):
        base = dict(models=["sam-tiny"], protocols=["gt-box"], datasets=[DatasetSpec("grabcut-sample")],
                    out=tmp_path / out, limit=2, progress=False, device="cpu", cache_dir=str(cache))
        return RunConfig(**{**base, **kw})

    cold = run(cfg("cold"))
    assert cold.counters["sam-tiny"]["encoder_calls"] == 2 and cold.counters["sam-tiny"]["cache_writes"] == 2
    warm = run(cfg("warm"))
    assert warm.counters["sam-tiny"] == {"encoder_calls": 0, "decoded_prompts": 2, "cache_hits": 2,
                                         "cache_misses": 0, "cache_corrupt": 0, "cache_writes": 0}
    assert _run_rows(tmp_path / "warm") == _run_rows(tmp_path / "cold")
    manifest = json.loads((tmp_path / "warm" / "manifest.json").read_text())
    assert manifest["counters"]["sam-tiny"]["cache_hits"] == 2 and manifest["config"]["cache_dir"] == str(cache)
    other = run(cfg("other", protocols=["points"], levels=["1"], draws=1))
    assert other.counters["sam-tiny"]["encoder_calls"] == 0 and other.counters["sam-tiny"]["cache_hits"] == 2
    stable = run(cfg("stable", models=["stable-sam-tiny"]))
    assert stable.counters["stable-sam-tiny"]["encoder_calls"] == 0
    # corrupt one entry: detected, recomputed once, rows identical
    entry = EmbeddingCache(cache).entries()[0].path
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0x55
    entry.write_bytes(bytes(data))
    fixed = run(cfg("fixed"))
    c = fixed.counters["sam-tiny"]
    assert (c["encoder_calls"], c["cache_corrupt"], c["cache_hits"], c["cache_writes"]) == (1, 1, 1, 1)
    assert _run_rows(tmp_path / "fixed") == _run_rows(tmp_path / "cold")
    assert EmbeddingCache(cache).verify() == []
    # --no-cache (cache_dir None) neither reads nor writes
    none = run(cfg("none", cache_dir=None))
    assert none.counters["sam-tiny"] == {"encoder_calls": 2, "decoded_prompts": 2}


class _ArrayAdapter:
    """A minimal cacheable adapter: its 'state' is one array (exercises the cache without a model)."""

    def cache_signature(self):
        return {"family": "array", "variant": "test", "weights_sha256": "0" * 64, "dtype": "fp32"}

    def state_to_tensors(self, state):
        return {"x": state}, {"shape": list(state.shape)}

    def state_from_tensors(self, tensors, meta):
        return tensors["x"].numpy()


def test_cache_command_lists_sizes_verifies_and_clears(tmp_path):
    from click.testing import CliRunner

    from sambench.cli.main import main

    cache = EmbeddingCache(tmp_path)
    ad = _ArrayAdapter()
    for i in range(3):
        cache.put(ad, f"img{i}", "sam", np.full((4, 5), i, dtype=np.float32))
    assert np.array_equal(cache.get(ad, "img2", "sam"), np.full((4, 5), 2, dtype=np.float32))
    cli = CliRunner()
    ls = cli.invoke(main, ["cache", "ls", "--cache", str(tmp_path)])
    assert ls.exit_code == 0 and len(ls.output.splitlines()) == 3 and "array/test" in ls.output
    du = cli.invoke(main, ["cache", "du", "--cache", str(tmp_path)])
    assert "3 entries" in du.output
    assert cli.invoke(main, ["cache", "verify", "--cache", str(tmp_path)]).exit_code == 0
    bad = cache.path(cache.key(ad.cache_signature(), "sam", "img1"))
    bad.write_bytes(bad.read_bytes()[:-7])
    v = cli.invoke(main, ["cache", "verify", "--cache", str(tmp_path), "--remove"])
    assert v.exit_code == 1 and str(bad) in v.output and "1 bad" in v.output and not bad.exists()
    assert cli.invoke(main, ["cache", "clear", "--cache", str(tmp_path)]).output.strip().endswith("removed 2 entries")
    assert EmbeddingCache(tmp_path).entries() == []


@pytest.mark.slow
def test_fp16_storage_cold_and_warm_runs_agree_and_a_resume_must_keep_the_storage(tmp_path):
    from sambench.datasets import DatasetSpec
    from sambench.execution import RunConfig, run
    from sambench.types import SambenchError

    def cfg(out, **kw):
        base = dict(models=["sam-tiny"], protocols=["gt-box"], datasets=[DatasetSpec("grabcut-sample")],
                    out=tmp_path / out, limit=1, progress=False, device="cpu", cache_dir=str(tmp_path / "c16"),
                    cache_dtype="fp16")
        return RunConfig(**{**base, **kw})

    cold = run(cfg("cold"))
    warm = run(cfg("warm"))
    assert cold.counters["sam-tiny"]["encoder_calls"] == 1 and warm.counters["sam-tiny"]["encoder_calls"] == 0
    assert _run_rows(tmp_path / "warm") == _run_rows(tmp_path / "cold")  # the cold run decoded the fp16 copy
    with pytest.raises(SambenchError, match="embedding_storage"):
        run(cfg("cold", cache_dtype="fp32", limit=2))
