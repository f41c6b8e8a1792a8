"""Checkpoint discovery, verification, loading errors and the resumable download (local HTTP server)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sambench.cli.main import main
from sambench.adapters import build_adapter
from sambench.config import load_model_card, parse_model_card
from sambench.adapters.sam.nets import VARIANTS, inspect_state_dict
from sambench.adapters.sam.weights import check_state_dict
from sambench.adapters.weights import (download_checkpoint, file_digests, find_checkpoint, name_hash_prefix,
                                       read_state_dict, verify_checkpoint_file)
from sambench.types import SambenchError

try:
    from sam_fixtures import save_tiny_checkpoint
except ImportError:  # tests/ imported as a package
    from tests.sam_fixtures import save_tiny_checkpoint


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMBENCH_CHECKPOINTS", str(tmp_path / "ckpts"))


@pytest.fixture(scope="module")
def tiny_sd_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_sd")
    return {"sam": save_tiny_checkpoint(d, hq=False), "hq": save_tiny_checkpoint(d, hq=True)}


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------------------------ shipped cards


OFFICIAL = {
    # file, size (bytes), sha256 prefix, as published for Meta's release
    "sam-vit-b": ("sam_vit_b_01ec64.pth", 375042383, "ec2df627"),
    "sam-vit-l": ("sam_vit_l_0b3195.pth", 1249524607, "3adcc431"),
    "sam-vit-h": ("sam_vit_h_4b8939.pth", 2564550879, "a7bf3b02"),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_meta_cards_name_the_official_files(name):
    card = load_model_card(name)
    file, size, sha = OFFICIAL[name]
    assert card.adapter == "sam" and card.options["variant"] == "vit_" + name[-1]
    assert card.checkpoint.file == file and card.checkpoint.size == size
    assert card.checkpoint.url == f"https://dl.fbaipublicfiles.com/segment_anything/{file}"
    assert card.checkpoint.sha256.startswith(sha) and card.checkpoint.hash_prefix == file[10:16]


@pytest.mark.parametrize("v", ["b", "l", "h"])
def test_hq_cards_name_the_official_files(v):
    card = load_model_card(f"hq-sam-vit-{v}")
    assert card.adapter == "hq-sam" and card.options["variant"] == f"vit_{v}"
    assert card.options["hq_token_only"] is False
    assert card.checkpoint.file == f"sam_hq_vit_{v}.pth"
    assert card.checkpoint.url == f"https://huggingface.co/lkeab/hq-sam/resolve/main/sam_hq_vit_{v}.pth"
    assert len(card.checkpoint.hash_prefix) == 32  # full MD5


def test_tiny_cards_need_no_checkpoint():
    for name, kind in (("sam-tiny", "sam"), ("hq-sam-tiny", "hq-sam")):
        card = load_model_card(name)
        assert card.adapter == kind and card.checkpoint is None and card.options["variant"] == "tiny"
        assert find_checkpoint(card) is None


# ---------------------------------------------------------------------------------------- discovery


def test_missing_card_checkpoint_says_where_it_looked_and_how_to_get_it(tmp_path):
    card = load_model_card("sam-vit-b")
    with pytest.raises(SambenchError) as exc:
        find_checkpoint(card)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "sam_vit_b_01ec64.pth not found in " + str(tmp_path / "ckpts") in msg
    assert "sambench download sam-vit-b" in msg and card.checkpoint.url in msg
    with pytest.raises(SambenchError, match="sambench download sam-vit-b"):
        build_adapter("sam-vit-b", device="cpu")


def test_checkpoint_found_in_env_dir_and_explicit_path(tmp_path):
    card = load_model_card("sam-vit-b")
    d = tmp_path / "ckpts"
    d.mkdir()
    (d / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert find_checkpoint(card) == d / "sam_vit_b_01ec64.pth"
    other = tmp_path / "mine.pth"
    other.write_bytes(b"y")
    assert find_checkpoint(card, str(other)) == other
    with pytest.raises(SambenchError, match="nope.pth: checkpoint file not found"):
        find_checkpoint(card, tmp_path / "nope.pth")


# ------------------------------------------------------------------------------------- verification


def test_name_hash_prefix():
    assert name_hash_prefix("sam_vit_b_01ec64.pth") == "01ec64"
    assert name_hash_prefix("sam_hq_vit_b.pth") is None and name_hash_prefix("mine.pth") is None


def test_bad_hash_prefix_in_file_name_is_rejected(tmp_path, tiny_sd_files):
    data = tiny_sd_files["sam"].read_bytes()
    assert not _md5(data).startswith("000000") and not _sha(data).startswith("000000")
    bad = tmp_path / "sam_vit_b_000000.pth"
    bad.write_bytes(data)
    with pytest.raises(SambenchError, match=r"sam_vit_b_000000.pth: corrupt or renamed checkpoint: its name says hash 000000"):
        build_adapter("sam-tiny", device="cpu", checkpoint=str(bad))


@pytest.mark.parametrize("digest", ["md5", "sha256"])
def test_matching_hash_prefix_in_file_name_is_accepted(tmp_path, tiny_sd_files, digest):
    data = tiny_sd_files["sam"].read_bytes()
    prefix = (_md5 if digest == "md5" else _sha)(data)[:6]
    good = tmp_path / f"sam_vit_t_{prefix}.pth"
    good.write_bytes(data)
    ad = build_adapter("sam-tiny", device="cpu", checkpoint=str(good))
    assert ad.signature()["weights_sha256"] == _sha(data)


def test_card_size_and_sha256_are_checked_for_the_cards_file(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abcdef")
    ok = parse_model_card({"name": "m", "adapter": "sam", "checkpoint": {"file": "w.pth", "size": 6,
                                                                           "sha256": _sha(b"abcdef")}}, tmp_path / "m.yaml")
    assert verify_checkpoint_file(f, ok.checkpoint).sha256 == _sha(b"abcdef")
    wrong_size = parse_model_card({"name": "m", "adapter": "sam", "checkpoint": {"file": "w.pth", "size": 7}},
                                  tmp_path / "m.yaml")
    with pytest.raises(SambenchError, match="6 bytes, but w.pth has 7"):
        verify_checkpoint_file(f, wrong_size.checkpoint)
    wrong_sha = parse_model_card({"name": "m", "adapter": "sam", "checkpoint": {"file": "w.pth", "sha256": "0" * 64}},
                                 tmp_path / "m.yaml")
    with pytest.raises(SambenchError, match="does not match the model card"):
        verify_checkpoint_file(f, wrong_sha.checkpoint)
    md5_card = parse_model_card({"name": "m", "adapter": "sam", "checkpoint": {"file": "w.pth",
                                                                                 "hash_prefix": _md5(b"abcdef")}},
                                tmp_path / "m.yaml")
    verify_checkpoint_file(f, md5_card.checkpoint)
    # Another file name: the card's hashes are not the user's file's business.
    g = tmp_path / "finetuned.pth"
    g.write_bytes(b"zz")
    verify_checkpoint_file(g, wrong_sha.checkpoint)


def test_digests_are_cached_by_size_and_mtime(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"hello")
    d1 = file_digests(f)
    assert (d1.md5, d1.sha256, d1.size) == (_md5(b"hello"), _sha(b"hello"), 5)
    cache_file = Path(os.environ["SAMBENCH_HASH_CACHE"])
    cache = json.loads(cache_file.read_text())
    key = str(f.resolve())
    assert cache[key]["sha256"] == _sha(b"hello")
    # A doctored entry with the same size and mtime is trusted (proves the file is not re-read) ...
    cache[key]["sha256"] = "f" * 64
    cache_file.write_text(json.dumps(cache))
    assert file_digests(f).sha256 == "f" * 64
    # ... and a changed mtime invalidates it.
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file_digests(f).sha256 == _sha(b"hello")


# ------------------------------------------------------------------------------------- state dicts


def test_hq_checkpoint_given_to_sam_adapter(tiny_sd_files):
    with pytest.raises(SambenchError) as exc:
        build_adapter("sam-tiny", device="cpu", checkpoint=str(tiny_sd_files["hq"]))
    msg = str(exc.value)
    assert "\n" not in msg and "has HQ-SAM keys (mask_decoder.hf_token.weight, … 25 in all)" in msg
    assert "this is an HQ-SAM checkpoint, use hq-sam-tiny" in msg


def test_sam_checkpoint_given_to_hq_adapter(tiny_sd_files):
    with pytest.raises(SambenchError, match="missing the HQ decoder layers .*this is a plain SAM checkpoint, use sam-tiny"):
        build_adapter("hq-sam-tiny", device="cpu", checkpoint=str(tiny_sd_files["sam"]))


def _fake_encoder_sd(embed_dim: int, depth: int) -> dict:
    """Only the keys the variant detector reads (no multi-GB model needed)."""
    sd = {"image_encoder.pos_embed": torch.zeros(1, 64, 64, embed_dim)}
    for i in range(depth):
        sd[f"image_encoder.blocks.{i}.norm1.weight"] = torch.zeros(embed_dim)
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    return sd


def test_variant_is_detected_from_pos_embed_and_blocks():
    for name, cfg in VARIANTS.items():
        info = inspect_state_dict(_fake_encoder_sd(cfg.embed_dim, cfg.depth))
        assert (info.variant, info.embed_dim, info.depth, info.hq) == (name, cfg.embed_dim, cfg.depth, False)
    assert inspect_state_dict(_fake_encoder_sd(512, 7)).variant is None


def test_vit_l_weights_given_to_vit_b_model(tmp_path):
    path = tmp_path / "vitl.pth"
    torch.save(_fake_encoder_sd(1024, 24), path)
    with pytest.raises(SambenchError, match=r"holds vit_l weights \(image encoder: 24 blocks of width 1024\) but model "
                                            r"'sam-vit-b' is vit_b \(12 blocks of width 768\); use sam-vit-l"):
        build_adapter("sam-vit-b", device="cpu", checkpoint=str(path))


def test_tiny_weights_given_to_vit_b_model(tiny_sd_files):
    with pytest.raises(SambenchError, match="holds tiny weights .* but model 'sam-vit-b' is vit_b"):
        build_adapter("sam-vit-b", device="cpu", checkpoint=str(tiny_sd_files["sam"]))


def test_unknown_encoder_shape(tmp_path):
    sd = _fake_encoder_sd(640, 5)
    with pytest.raises(SambenchError, match="holds an unknown variant weights .*5 blocks of width 640"):
        check_state_dict(sd, variant="vit_b", hq=False, path=tmp_path / "x.pth", model="sam-vit-b")


def test_decoder_only_file_is_not_a_full_checkpoint(tmp_path):
    path = tmp_path / "sam_vit_b_maskdecoder.pth"
    torch.save({"iou_token.weight": torch.zeros(1, 256)}, path)
    with pytest.raises(SambenchError, match="not a full SAM checkpoint: no image_encoder.pos_embed"):
        build_adapter("sam-tiny", device="cpu", checkpoint=str(path))


def test_missing_key_is_summarised_in_one_line(tmp_path, tiny_sd_files):
    sd = torch.load(tiny_sd_files["sam"], weights_only=True)
    del sd["mask_decoder.iou_token.weight"]
    sd["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(SambenchError) as exc:
        build_adapter("sam-tiny", device="cpu", checkpoint=str(path))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "does not fit model 'sam-tiny': 1 missing key(s) (e.g. mask_decoder.iou_token.weight); " \
           "1 unexpected key(s) (e.g. extra.weight)" in msg


def test_containers_and_ddp_prefix_are_unwrapped(tmp_path, tiny_sd_files):
    sd = torch.load(tiny_sd_files["sam"], weights_only=True)
    for i, obj in enumerate(({"model": sd, "epoch": 3}, {"state_dict": {"module." + k: v for k, v in sd.items()}})):
        path = tmp_path / f"wrapped{i}.pth"
        torch.save(obj, path)
        out = read_state_dict(path)
        assert set(out) == set(sd) and all(torch.equal(out[k], sd[k]) for k in sd)
    ad = build_adapter("sam-tiny", device="cpu", checkpoint=str(tmp_path / "wrapped1.pth"))
    assert torch.equal(ad.model.state_dict()["mask_decoder.iou_token.weight"], sd["mask_decoder.iou_token.weight"])


class _Pickled:
    """A class torch.load(weights_only=True) must refuse to rebuild."""

    def __init__(self):
        self.w = torch.zeros(2)


def test_non_state_dict_files(tmp_path):
    cases = {
        "list.pth": ([torch.zeros(1)], "not a state dict \\(torch.load returned list"),
        "scalar.pth": ({"a": torch.zeros(1), "step": 3}, "not a state dict \\(entry 'step' holds a int"),
        "empty.pth": ({}, "not a state dict \\(torch.load returned an empty dict"),
    }
    for name, (obj, pattern) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(SambenchError, match=pattern):
            read_state_dict(tmp_path / name)
    (tmp_path / "text.pth").write_text("hello, not a checkpoint")
    with pytest.raises(SambenchError, match="text.pth: not a PyTorch checkpoint \\(torch.load failed"):
        build_adapter("sam-tiny", device="cpu", checkpoint=str(tmp_path / "text.pth"))


def test_pickle_refused_by_weights_only(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"model": _Pickled()}, path)
    with pytest.raises(SambenchError) as exc:
        build_adapter("sam-tiny", device="cpu", checkpoint=str(path))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "refused by torch.load(weights_only=True)" in msg and "_Pickled" in msg and "state_dict()" in msg


# ---------------------------------------------------------------------------------------- download


PAYLOAD = bytes((i * 7 + 3) % 251 for i in range(300_000))


class _Server:
    """A local HTTP server for one file, with switchable behaviour, recording the Range headers it sees."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.ranges: list = []
        self.honour_range = True
        self.truncate_at = None  # send only this many bytes of the body, then close
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                data, start = outer.payload, 0
                if rng and outer.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.truncate_at is not None:
                    self.wfile.write(body[:outer.truncate_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sam_vit_b_test.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server(PAYLOAD)
    yield s
    s.close()


def _card(tmp_path, url, **ck):
    ck.setdefault("size", len(PAYLOAD))
    ck.setdefault("sha256", _sha(PAYLOAD))
    data = {"name": "dl-test", "adapter": "sam", "options": {"variant": "tiny"},
            "checkpoint": {"file": "weights.pth", "url": url, **ck}}
    return parse_model_card(data, tmp_path / "dl-test.yaml")


def test_download_streams_verifies_and_renames(tmp_path, server):
    dest = tmp_path / "dest"
    path = download_checkpoint(_card(tmp_path, server.url), dest_dir=dest, progress=False)
    assert path == dest / "weights.pth" and path.read_bytes() == PAYLOAD
    assert not (dest / "weights.pth.part").exists()
    assert server.ranges == [None]
    # Already there and verified: no second request.
    assert download_checkpoint(_card(tmp_path, server.url), dest_dir=dest, progress=False) == path
    assert server.ranges == [None]


def test_download_resumes_a_truncated_partial_file(tmp_path, server):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "weights.pth.part").write_bytes(PAYLOAD[:123_456])
    path = download_checkpoint(_card(tmp_path, server.url), dest_dir=dest, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=123456-"]


def test_download_restarts_when_the_server_ignores_range(tmp_path, server):
    server.honour_range = False
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "weights.pth.part").write_bytes(b"garbage" * 10)
    path = download_checkpoint(_card(tmp_path, server.url), dest_dir=dest, progress=False)
    assert path.read_bytes() == PAYLOAD and server.ranges == ["bytes=70-"]


def test_interrupted_download_keeps_the_part_and_resumes(tmp_path, server):
    dest = tmp_path / "dest"
    server.truncate_at = 100_000
    with pytest.raises(SambenchError, match="run the same command again to resume"):
        download_checkpoint(_card(tmp_path, server.url), dest_dir=dest, progress=False)
    part = dest / "weights.pth.part"
    assert part.read_bytes() == PAYLOAD[:100_000]
    assert not (dest / "weights.pth").exists()
    server.truncate_at = None
    path = download_checkpoint(_card(tmp_path, server.url), dest_dir=dest, progress=False)
    assert path.read_bytes() == PAYLOAD and server.ranges == [None, "bytes=100000-"]


def test_download_hash_mismatch_deletes_the_part(tmp_path, server):
    dest = tmp_path / "dest"
    with pytest.raises(SambenchError, match="failed verification and was deleted.*does not match the model card"):
        download_checkpoint(_card(tmp_path, server.url, sha256="0" * 64), dest_dir=dest, progress=False)
    assert not (dest / "weights.pth.part").exists() and not (dest / "weights.pth").exists()
    with pytest.raises(SambenchError, match="failed verification"):
        download_checkpoint(_card(tmp_path, server.url, sha256=None, hash_prefix="abcdef0"), dest_dir=dest,
                            progress=False)
    download_checkpoint(_card(tmp_path, server.url, sha256=None, hash_prefix=_md5(PAYLOAD)[:8]), dest_dir=dest,
                        progress=False)


def test_download_size_mismatch_is_reported(tmp_path, server):
    with pytest.raises(SambenchError, match=f"the server has {len(PAYLOAD)} bytes but the model card expects 10"):
        download_checkpoint(_card(tmp_path, server.url, size=10), dest_dir=tmp_path / "d", progress=False)


def test_download_errors(tmp_path):
    with pytest.raises(SambenchError, match="has no checkpoint to download"):
        download_checkpoint("sam-tiny", dest_dir=tmp_path)
    bad = "http://127.0.0.1:9/none.pth"  # discard port: connection refused
    with pytest.raises(SambenchError, match="none.pth: download failed"):
        download_checkpoint(_card(tmp_path, bad), dest_dir=tmp_path / "d", progress=False)


def test_download_command(tmp_path, server):
    card_file = tmp_path / "dl-test.yaml"
    card_file.write_text(f"name: dl-test\nadapter: sam\noptions: {{variant: tiny}}\ncheckpoint:\n"
                         f"  file: weights.pth\n  url: http://invalid.example/x\n  size: {len(PAYLOAD)}\n"
                         f"  sha256: {_sha(PAYLOAD)}\n")
    res = CliRunner().invoke(main, ["download", str(card_file), "--dest", str(tmp_path / "out"), "--url", server.url, "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "weights.pth").read_bytes() == PAYLOAD
    assert res.output.strip() == str(tmp_path / "out" / "weights.pth")
    res = CliRunner().invoke(main, ["download", "sam-tiny", "-q"])
    assert res.exit_code == 2 and "error: " in res.output and "has no checkpoint to download" in res.output
