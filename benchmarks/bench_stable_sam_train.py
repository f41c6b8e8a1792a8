"""Stable-SAM training throughput on CPU: tiny vs ViT-B-sized base (random-init weights).

For each base it runs a few real training steps of ``train_stable_sam`` (flip + large-scale jitter on,
so the frozen image encoder runs for every image, batch size 1, GrabCut sample) and prints images/s and
seconds per step, plus the split of one step into the encoder (no grad) and the decoder with the plug-in
(forward + backward of one prompt). Also prints the decoder overhead of the plug-in (inference, plug-in
vs bare decoder). Not a test: run

    python benchmarks/bench_stable_sam_train.py [--steps-tiny 6] [--steps-vit-b 2] [--threads N]

Numbers depend on the machine and its load; the ratios are the portable part.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sambench.adapters.stable_sam.base import load_base, resolve_base_card
from sambench.training.decode import decode_logits, encode_images
from sambench.adapters.stable_sam.inject import inject_plugin
from sambench.adapters.stable_sam.modules import StableSamPlugin
from sambench.training.train import train_stable_sam


def _timed(fn, n: int, warmup: bool = True) -> float:
    """Median wall time of ``n`` calls (after one untimed warm-up call when ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench(card: str, steps: int, extra: dict, reps: int) -> dict:
    c, _ = resolve_base_card(card)
    base = load_base(c, None, {**c.options, **extra}, where=card)
    sam = base.model
    img = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)) * 255
    cheap = base.signature.variant == "tiny"
    t_enc = _timed(lambda: encode_images(sam, img), reps if cheap else 1, warmup=cheap)
    emb, interm = encode_images(sam, img)
    box = torch.tensor([[200.0, 150.0, 700.0, 800.0]])

    def dec():
        with torch.no_grad():
            decode_logits(sam, emb, interm, boxes=box)

    t_dec_base = _timed(dec, reps)
    plugin = StableSamPlugin()
    inj = inject_plugin(sam, plugin)
    t_dec_plug = _timed(dec, reps)

    def fwd_bwd():
        low, _ = decode_logits(sam, emb, interm, boxes=box)
        low.float().pow(2).mean().backward()

    t_fb = _timed(fwd_bwd, reps)
    inj.remove()
    with tempfile.TemporaryDirectory() as d:
        res = train_stable_sam(card, None, ["grabcut-sample"], out=Path(d) / "p.pt", device="cpu", batch_size=1,
                               max_steps=steps, augment=True, progress=False, base=base, base_options=extra,
                               objects_per_image=1)
    return {"card": card, "steps": res.steps, "images_per_s": res.samples_per_s, "s_per_step": res.seconds / res.steps,
            "encoder_s": t_enc, "decoder_fwd_bwd_s": t_fb, "decoder_s": t_dec_base, "decoder_plugin_s": t_dec_plug}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-tiny", type=int, default=6)
    ap.add_argument("--steps-vit-b", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the decoder timings")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--skip-vit-b", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), CPU")
    rows = [bench("sam-tiny", args.steps_tiny, {}, args.reps)]
    if not args.skip_vit_b:
        rows.append(bench("sam-vit-b", args.steps_vit_b, {"random_init": True}, args.reps))
    hdr = f"{'base':<10} {'steps':>5} {'img/s':>8} {'s/step':>8} {'encoder s':>10} {'dec f+b s':>10} {'dec s':>7} {'dec+plug s':>10} {'plug overhead':>13}"
    print(hdr)
    for r in rows:
        print(f"{r['card']:<10} {r['steps']:>5} {r['images_per_s']:>8.3f} {r['s_per_step']:>8.2f} {r['encoder_s']:>10.2f} "
              f"{r['decoder_fwd_bwd_s']:>10.2f} {r['decoder_s']:>7.3f} {r['decoder_plugin_s']:>10.3f} "
              f"{r['decoder_plugin_s'] / r['decoder_s']:>12.2f}x")
    if len(rows) == 2:
        print(f"vit-b / tiny seconds per training step: {rows[1]['s_per_step'] / rows[0]['s_per_step']:.1f}x; "
              f"encoder share of a vit-b step (timed parts): "
              f"{rows[1]['encoder_s'] / (rows[1]['encoder_s'] + rows[1]['decoder_fwd_bwd_s']):.0%}")


if __name__ == "__main__":
    main()
