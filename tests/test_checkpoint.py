"""Our safetensors checkpoints: bit-exact round trips, fp16 storage, atomic writes, no pickle on load,
clear errors for wrong files, load_model dispatch (path / URL / name) and the convert CLI."""
import functools
import hashlib
import http.server
import json
import pickle
import resource
import threading
import zipfile

import pytest
import safetensors.torch
import torch
from click.testing import CliRunner

import fashion_models.registry
import stylegan2.checkpoint as checkpoint
from conftest import OFFICIAL, require
from fashion_models import NAMED_NETWORKS, load_model
from stylegan2.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_metadata, save_checkpoint
from stylegan2.convert import main as convert_main
from stylegan2.legacy import LegacyFormatError, NetworkLoadError
from stylegan2.networks import Discriminator, Generator

G_KWARGS = dict(z_dim=8, c_dim=2, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1),
                synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256))
D_KWARGS = dict(c_dim=2, img_resolution=8, img_channels=3, channel_base=64, channel_max=8,
                epilogue_kwargs=dict(mbstd_group_size=2))


def randomized(module, seed):
    """Every parameter and buffer random, so a wrong or dropped tensor cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            t.copy_(torch.randn(t.shape, generator=gen))
    return module.eval()


@pytest.fixture(scope="module")
def nets():
    return dict(G=randomized(Generator(**G_KWARGS), 1), D=randomized(Discriminator(**D_KWARGS), 2),
                G_ema=randomized(Generator(**G_KWARGS), 3))


def assert_same_state(a, b, exact_dtype=True):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert (sa[key].dtype == sb[key].dtype or not exact_dtype) and torch.equal(sa[key], sb[key]), key


def test_portrait_network_round_trips_with_its_shape(tmp_path):
    """The base shape travels in the constructor kwargs and the metadata says [height, width]."""
    G = randomized(Generator(**G_KWARGS, base_shape=(4, 3)), 4)
    D = randomized(Discriminator(**D_KWARGS, base_shape=(4, 3)), 5)
    path = save_checkpoint(tmp_path / "portrait.safetensors", G=G, D=D, G_ema=G)
    assert read_checkpoint_metadata(path)["img_shape"] == [8, 6]
    bundle = load_checkpoint(path)
    assert bundle.G_ema.img_shape == bundle.D.img_shape == (8, 6)
    assert_same_state(bundle.G_ema, G)
    assert_same_state(bundle.D, D)
    z, c = torch.randn(2, 8), torch.eye(2)
    with torch.no_grad():
        assert torch.equal(bundle.G_ema(z, c, noise_mode="const"), G(z, c, noise_mode="const"))


def test_round_trip_is_bit_exact_with_metadata(nets, tmp_path):
    meta = {"kimg": 12.5, "augment_p": 0.125, "augment_kwargs": {"xflip": 1, "scale": 1},
            "training_set_kwargs": {"path": "fashion.zip", "resolution": 8}, "note": "first run"}
    path = save_checkpoint(tmp_path / "run" / "snap.safetensors", **nets, meta=meta)

    bundle = load_checkpoint(path)

    for name, module in nets.items():
        assert_same_state(getattr(bundle, name), module)
        assert getattr(bundle, name).init_kwargs == module.init_kwargs
    assert bundle.augment_p == 0.125 and bundle.augment_kwargs == meta["augment_kwargs"]
    assert bundle.training_set_kwargs == meta["training_set_kwargs"]
    assert bundle.meta["kimg"] == 12.5 and bundle.meta["note"] == "first run"
    assert bundle.meta["img_resolution"] == 8 and bundle.meta["c_dim"] == 2 and bundle.meta["dtype"] == "float32"
    assert bundle.meta["img_shape"] == [8, 8]
    assert bundle.meta["nets"]["D"]["num_params"] == sum(p.numel() for p in nets["D"].parameters())
    assert bundle.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and bundle.source == str(path)
    z, c = torch.randn(3, 8), torch.eye(2)[[0, 1, 0]]
    with torch.no_grad():
        assert torch.equal(bundle.G_ema(z, c, noise_mode="const"), nets["G_ema"](z, c, noise_mode="const"))
        img = torch.randn(2, 3, 8, 8)
        assert torch.equal(bundle.D(img, c[:2]), nets["D"](img, c[:2]))
    assert read_checkpoint_metadata(path) == bundle.meta
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp files left behind


def test_loading_never_unpickles(nets, tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "g.safetensors", G_ema=nets["G_ema"])

    def forbidden(*args, **kwargs):
        raise AssertionError("checkpoint loading must not use pickle")

    for target, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(target, name, forbidden)
    assert_same_state(load_model(path).G_ema, nets["G_ema"])


def test_g_ema_only_and_fp16_storage(nets, tmp_path):
    full = save_checkpoint(tmp_path / "full.safetensors", G_ema=nets["G_ema"])
    half = save_checkpoint(tmp_path / "half.safetensors", G_ema=nets["G_ema"], dtype=torch.float16)

    bundle = load_checkpoint(half)

    assert bundle.G is None and bundle.D is None and bundle.meta["dtype"] == "float16"
    ref = nets["G_ema"].state_dict()
    saved_bytes = full.stat().st_size - half.stat().st_size
    assert abs(saved_bytes - sum(t.numel() * 2 for t in ref.values())) < 64  # 2 of 4 bytes per value; header ~equal
    for key, value in bundle.G_ema.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, ref[key].half().float()), key
    stored = safetensors.torch.load_file(half)
    assert set(stored) == {f"G_ema.{k}" for k in ref} and all(t.dtype == torch.float16 for t in stored.values())


def test_failed_write_keeps_the_previous_file(nets, tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "snap.safetensors", G_ema=nets["G_ema"], meta={"kimg": 1})
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, G_ema=nets["G"], meta={"kimg": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["snap.safetensors"]


def test_bad_arguments_are_refused_before_writing(nets, tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match="plain JSON"):
        save_checkpoint(path, G_ema=nets["G_ema"], meta={"tensor": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="needs G_ema"):
        save_checkpoint(path, G=nets["G"])
    with pytest.raises(CheckpointError, match="dtype"):
        save_checkpoint(path, G_ema=nets["G_ema"], dtype=torch.bfloat16)
    with pytest.raises(CheckpointError, match="init_kwargs"):
        save_checkpoint(path, G_ema=torch.nn.Linear(2, 2))
    assert not list(tmp_path.iterdir())


def test_corrupted_weights_are_detected(nets, tmp_path):
    path = save_checkpoint(tmp_path / "snap.safetensors", G_ema=nets["G_ema"])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one bit in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) - 100]))  # an interrupted copy
    with pytest.raises(CheckpointError, match="damaged .safetensors file"):
        load_checkpoint(path)


def test_wrong_files_say_what_was_expected(tmp_path):
    text = tmp_path / "notes.pkl"
    text.write_text("hello\n")
    with pytest.raises(CheckpointError, match="neither a .safetensors checkpoint nor an official"):
        load_model(text)
    archive = tmp_path / "model.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data.pkl", b"x")
    with pytest.raises(CheckpointError, match="zip archive"):
        load_model(archive)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="without our 'afro_fashion_gan' metadata"):
        load_model(foreign)
    no_nets = tmp_path / "no_nets.pkl"
    no_nets.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(LegacyFormatError, match="'G_ema' network"):
        load_model(no_nets)
    with pytest.raises(CheckpointError, match="cannot find network '.*nope'.*ffhq256"):
        load_model(tmp_path / "nope")


def test_named_networks_resolve_to_official_urls_and_registered_paths(nets, tmp_path, monkeypatch):
    assert NAMED_NETWORKS["ffhq256"] == ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
                                         "transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl")
    assert {"ffhq512", "ffhq1024", "celebahq256", "lsundog256"} <= set(NAMED_NETWORKS)
    local = save_checkpoint(tmp_path / "g.safetensors", G_ema=nets["G_ema"])
    fetched = []

    def fake_download(url, cache_dir=None, **kwargs):
        fetched.append((url, cache_dir))
        return local

    monkeypatch.setattr(fashion_models.registry, "download", fake_download)
    assert_same_state(load_model("ffhq256", cache_dir=tmp_path).G_ema, nets["G_ema"])
    assert fetched == [(NAMED_NETWORKS["ffhq256"], tmp_path)]

    monkeypatch.setitem(NAMED_NETWORKS, "default", str(local))
    assert load_model("default").sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    monkeypatch.setitem(NAMED_NETWORKS, "missing", "models/not-there.safetensors")
    with pytest.raises(CheckpointError, match="registered as .*models/not-there.safetensors"):
        load_model("missing")


def test_url_is_downloaded_into_the_cache_and_loaded(nets, tmp_path):
    served = tmp_path / "served"
    save_checkpoint(served / "g.safetensors", G_ema=nets["G_ema"])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/g.safetensors"
        bundle = load_model(url, cache_dir=tmp_path / "cache")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_same_state(bundle.G_ema, nets["G_ema"])
    assert bundle.source.startswith(str(tmp_path / "cache"))


def test_official_pickle_bundle():
    path = require(OFFICIAL / "tiny32c.pkl")
    bundle = load_model(path)
    assert bundle.G is not None and bundle.D is not None and bundle.G_ema.c_dim == 3
    assert bundle.augment_p == 0.25 and bundle.augment_kwargs["rotate90"] == 1
    assert bundle.training_set_kwargs["path"] == "fashion.zip"
    assert bundle.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert bundle.meta["format"] == "official-stylegan2-ada-pickle" and bundle.meta["img_resolution"] == 32


def test_convert_cli_full_and_small(tmp_path):
    src = require(OFFICIAL / "tiny32c.pkl")
    reference = load_model(src)
    runner = CliRunner()

    result = runner.invoke(convert_main, [str(src), str(tmp_path / "full.safetensors")])
    assert result.exit_code == 0, result.output
    assert "networks: G, D, G_ema" in result.output and "augment p: 0.2500" in result.output
    full = load_model(tmp_path / "full.safetensors")
    for name in ("G", "D", "G_ema"):
        assert_same_state(getattr(full, name), getattr(reference, name))
    assert full.augment_p == 0.25 and full.training_set_kwargs == reference.training_set_kwargs
    assert full.meta["converted_from"]["sha256"] == reference.sha256

    result = runner.invoke(convert_main, [str(src), str(tmp_path / "small.safetensors"), "--fp16", "--g-ema-only"])
    assert result.exit_code == 0, result.output
    small = load_model(tmp_path / "small.safetensors")
    assert small.G is None and small.D is None and "float16" in result.output
    assert json.loads(json.dumps(small.meta))["dtype"] == "float16"


def test_convert_cli_refuses_to_overwrite_or_misname(tmp_path):
    src = require(OFFICIAL / "tiny16.pkl")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    runner = CliRunner()
    result = runner.invoke(convert_main, [str(src), str(out)])
    assert result.exit_code != 0 and "--overwrite" in result.output and out.read_bytes() == b"keep me"
    result = runner.invoke(convert_main, [str(src), str(tmp_path / "out.pkl")])
    assert result.exit_code != 0 and "should end in .safetensors" in result.output
    result = runner.invoke(convert_main, [str(tmp_path / "missing.pkl"), str(tmp_path / "o.safetensors")])
    assert result.exit_code != 0 and "cannot find network" in result.output
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(b"\x80\x02cos\nsystem\n(Vtouch " + str(tmp_path / "pwned").encode() + b"\ntR.")
    result = runner.invoke(convert_main, [str(hostile), str(tmp_path / "o.safetensors")])
    assert result.exit_code == 1 and "refusing to load global 'os.system'" in result.output
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o.safetensors").exists()


# ----------------------------------------------------------------------------- hostile checkpoints


def raw_checkpoint(path, tensors, nets_doc, **extra):
    """A checkpoint written without save_checkpoint, so its JSON can say what a hostile file says."""
    doc = {"format": checkpoint.FORMAT, "nets": nets_doc, "weights_sha256": checkpoint.weights_sha256(tensors), **extra}
    path.write_bytes(safetensors.torch.save(tensors, metadata={checkpoint.METADATA_KEY: json.dumps(doc)}))
    return path


def test_absurd_kwargs_in_a_tiny_checkpoint_are_refused_before_allocating(nets, tmp_path):
    tensors = {"G_ema.mapping.w_avg": torch.zeros(8)}
    for change, message in [({"w_dim": 16000}, "w_dim=16000 is outside"),
                            ({"img_resolution": 1 << 30}, "img_resolution"),
                            ({"mapping_kwargs": {"num_layers": 100_000}}, "num_layers")]:
        spec = {"class_name": "Generator", "init_kwargs": {**G_KWARGS, **change}}
        path = raw_checkpoint(tmp_path / "bomb.safetensors", tensors, {"G_ema": spec})
        assert path.stat().st_size < 2000
        with pytest.raises(NetworkLoadError, match=message):  # NetworkLoadError
            load_checkpoint(path)
    # in range but far larger than the file's tensors: compared on the meta device, never allocated
    spec = {"class_name": "Generator", "init_kwargs": {**G_KWARGS, "w_dim": 4096, "mapping_kwargs": {"num_layers": 8}}}
    path = raw_checkpoint(tmp_path / "big.safetensors", tensors, {"G_ema": spec})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(NetworkLoadError, match="missing"):
        load_checkpoint(path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200


def test_a_checkpoint_whose_g_ema_is_a_discriminator_is_refused(nets, tmp_path):
    tensors = {f"G_ema.{k}": v.contiguous() for k, v in nets["D"].state_dict().items()}
    path = raw_checkpoint(tmp_path / "swapped.safetensors", tensors,
                          {"G_ema": {"class_name": "Discriminator", "init_kwargs": D_KWARGS}})
    with pytest.raises(NetworkLoadError, match="G_ema is a Discriminator; G_ema must be a Generator"):
        load_model(path)


def test_malformed_headers_are_checkpoint_errors(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    for metadata in [deep, json.dumps([1]), json.dumps({"format": checkpoint.FORMAT, "nets": {"G_ema": 3}})]:
        path = tmp_path / "odd.safetensors"
        path.write_bytes(safetensors.torch.save({"w": torch.zeros(1)}, metadata={checkpoint.METADATA_KEY: metadata}))
        with pytest.raises(CheckpointError):
            load_model(path)


def test_cli_tools_print_one_line_for_a_hostile_or_unreachable_network(nets, tmp_path):
    import generate

    tensors = {f"G_ema.{k}": v.contiguous() for k, v in nets["D"].state_dict().items()}
    swapped = raw_checkpoint(tmp_path / "swapped.safetensors", tensors,
                             {"G_ema": {"class_name": "Discriminator", "init_kwargs": D_KWARGS}})
    dead_url = "http://127.0.0.1:9/nothing-listens-here.pkl"  # the discard port: connection refused
    for spec, message in [(str(swapped), "G_ema must be a Generator"), (dead_url, "could not download")]:
        result = CliRunner().invoke(generate.main, ["--network", spec, "--seeds", "0", "--outdir", str(tmp_path / "o")],
                                    env={"AFRO_FASHION_CACHE": str(tmp_path / "cache")})
        assert result.exit_code == 1 and message in result.output, result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
