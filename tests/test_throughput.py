"""GPU-throughput paths, run on the CPU: batched encoder, loader thread, decoder chunks sized to memory."""

import time

import numpy as np
import pytest
import torch

from sambench.adapters import build_adapter
from sambench.adapters.sam.adapter import CPU_CHUNK_SIZE, decode_chunk_size
from sambench.execution.loader import prefetch
from tests.sam_fixtures import mixed_prompts, synthetic_image


@pytest.fixture(scope="module")
def images():
    return [synthetic_image(60, 80, seed=1), synthetic_image(72, 48, seed=2)]


def _predict(adapter, state, image, n=1):
    h, w = image.shape[:2]
    return adapter.predict(state, mixed_prompts(h, w)[1:1 + n])


@pytest.mark.slow
def test_batched_encode_gives_the_per_image_results(images):
    """A batch of two images (different sizes) through one encoder pass equals encoding each alone."""
    for name, prep in (("sam-tiny", "sam"), ("hq-sam-tiny", "hq-sam-1024")):
        adapter = build_adapter(name, device="cpu")
        singles = [adapter.encode(im, prep) for im in images]
        calls = adapter.encoder_calls
        batched = adapter.encode_batch(images, prep)
        assert adapter.encoder_calls == calls + 2
        for image, b, single in zip(images, batched, singles):
            assert b.original_size == single.original_size and b.input_size == single.input_size
            assert torch.allclose(b.features, single.features, atol=1e-5, rtol=1e-4)
            if adapter.hq:
                assert torch.allclose(b.interm[0], single.interm[0], atol=1e-5, rtol=1e-4)
            pb, ps = _predict(adapter, b, image, n=1), _predict(adapter, single, image, n=1)
            assert (pb.masks == ps.masks).mean() > 0.999 and np.allclose(pb.scores, ps.scores, atol=1e-4)




def test_auto_decoder_chunks_follow_free_device_memory():
    cuda = torch.device("cuda")
    assert decode_chunk_size(torch.device("cpu")) == CPU_CHUNK_SIZE == 8
    assert decode_chunk_size(cuda, free_bytes=7 * 10**9) == 69  # 3.5 GB / 48 MiB
    assert decode_chunk_size(cuda, hq=True, free_bytes=7 * 10**9) == 34
    assert decode_chunk_size(cuda, free_bytes=40 * 10**9) == 256  # capped
    assert decode_chunk_size(cuda, free_bytes=10**6) == 1
    assert build_adapter("sam-tiny", device="cpu", options={"chunk_size": "auto"}).chunk_size == 8


def test_prefetch_keeps_order_loads_ahead_and_hands_back_errors():
    started = []

    def load(k):
        started.append(k)
        if k == 2:
            raise ValueError("bad image 2")
        return k * 10

    it = prefetch(range(6), load, depth=2)
    assert next(it) == (0, 0)
    time.sleep(0.3)  # the consumer works on image 0: images 1 and 2 load meanwhile, not 3
    assert started == [0, 1, 2]
    rest = list(it)
    assert [k for k, _ in rest] == [1, 2, 3, 4, 5]
    assert rest[0][1] == 10 and isinstance(rest[1][1], ValueError) and rest[4][1] == 50
    assert list(prefetch([1, 2], lambda k: k, depth=0)) == [(1, 1), (2, 2)]


@pytest.mark.slow
def test_a_run_with_encode_batch_2_gives_the_rows_of_single_encodes(tmp_path):
    """The serial engine with --encode-batch 2 (one encoder pass for two images, loader thread ahead)
    gives the per-image rows: same keys and prompts, masks within float rounding of batched products."""
    from sambench.datasets import DatasetSpec
    from sambench.execution import RunConfig, run

    def go(name, batch):
        cfg = RunConfig(models=["sam-tiny"], protocols=["gt-box"], datasets=[DatasetSpec("grabcut-sample")],
                        out=tmp_path / name, limit=3, progress=False, device="cpu", encode_batch=batch)
        res = run(cfg)
        return res, res.rows.sort_values(["image_id", "protocol", "level", "draw"]).reset_index(drop=True)

    one, rows1 = go("one", 1)
    two, rows2 = go("two", 2)
    assert one.counters["sam-tiny"]["encoder_calls"] == two.counters["sam-tiny"]["encoder_calls"] == 3
    assert len(rows1) == len(rows2) == 3 and (rows2.status == "ok").all()
    assert list(rows1.prompt_hash) == list(rows2.prompt_hash)
    assert np.allclose(rows1.iou, rows2.iou, atol=1e-3) and np.allclose(rows1.score, rows2.score, atol=1e-4)
