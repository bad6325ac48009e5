"""The compiled generator path: same pixels as eager, padded batches, the switch, and the eager fallback."""
import copy
import os
import sys

import numpy as np
import pytest
import torch

from conftest import assert_within_one_level, tiny_generator
from stylegan2 import compiled
from stylegan2.render import class_labels, seed_z, synthesize_uint8


def tiny_conditional_generator():
    G = tiny_generator(c_dim=3, channel_max=32, conv_clamp=256, noise_strength=0.3)  # noise strengths start at 0
    for name, buf in G.named_buffers():  # make noise visible
        if name.endswith("noise_const"):
            buf.normal_()
    return G.requires_grad_(False)


def render(G, seeds, psi=0.7):
    with torch.no_grad():
        ws = G.mapping(seed_z(G, seeds), class_labels(G, [s % 3 for s in seeds], len(seeds)), truncation_psi=psi)
        return ws, synthesize_uint8(G, ws)


@pytest.mark.slow
def test_compiled_renders_match_eager_and_smaller_batches_reuse_the_graph(one_thread, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold cache: a real compile
    eager = tiny_conditional_generator()
    G = copy.deepcopy(eager)
    assert compiled.compile_generator(G, compile=True) and compiled.is_compiled(G)
    ws_c, img_c = render(G, [0, 1, 2, 3])
    ws_e, img_e = render(eager, [0, 1, 2, 3])
    torch.testing.assert_close(ws_c, ws_e, rtol=1e-5, atol=1e-5)
    assert_within_one_level(img_c, img_e)
    assert G.synthesis.forward.ready == {4} and not G.synthesis.forward.failed
    # 3 rows are padded to the compiled 4 (no second compile); psi is not baked into the mapping graph.
    ws_c, img_c = render(G, [5, 6, 7], psi=0.5)
    ws_e, img_e = render(eager, [5, 6, 7], psi=0.5)
    assert G.synthesis.forward.ready == {4} and G.mapping.forward.ready == {4}
    torch.testing.assert_close(ws_c, ws_e, rtol=1e-5, atol=1e-5)
    assert_within_one_level(img_c, img_e)
    assert any((tmp_path / "inductor").rglob("*")), "nothing was written to the compile cache"


def failing_backend(gm, example_inputs):
    raise RuntimeError("simulated: the C++ compiler is broken\nsecond line of a long report")


def test_a_failing_compile_falls_back_to_eager_with_one_line(one_thread, monkeypatch, capsys):
    monkeypatch.setattr(compiled, "BACKEND", failing_backend)
    eager = tiny_conditional_generator()
    G = copy.deepcopy(eager)
    assert compiled.compile_generator(G, compile=True)
    _, img = render(G, [0, 1])
    _, again = render(G, [2])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err  # one line for the mapping, one for the synthesis, each once
    assert all(line.startswith("note: compiling the generator's") and "simulated: the C++ compiler is broken" in line
               and line.endswith("rendering without compilation") for line in err)
    assert G.synthesis.forward.failed and G.mapping.forward.failed
    np.testing.assert_array_equal(img, render(eager, [0, 1])[1])
    np.testing.assert_array_equal(again, render(eager, [2])[1])


def test_user_errors_are_not_mistaken_for_compile_failures(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", failing_backend)
    G = tiny_conditional_generator()
    compiled.compile_generator(G, compile=True)
    with torch.no_grad(), pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.zeros(1, 3, 16))


def test_changed_weights_reuse_the_graphs_and_render_the_new_weights(one_thread, recorded_graphs):
    """Between a training run's snapshots G_ema's weights change in place (EMA): its compiled graphs read
    them as inputs, so nothing traces again and the renders follow the new weights. (~6 s on 2 busy cores:
    dynamo traces both networks.)"""
    eager = tiny_conditional_generator()
    G = copy.deepcopy(eager)
    compiled.compile_generator(G, compile=True)
    render(G, [0, 1])
    traced = len(recorded_graphs)
    assert traced >= 2  # mapping and synthesis
    with torch.no_grad():
        for p, q in zip(G.parameters(), eager.parameters()):
            p.mul_(0.9).add_(0.05)
            q.copy_(p)
    ws_c, img_c = render(G, [0, 1])
    ws_e, img_e = render(eager, [0, 1])
    assert len(recorded_graphs) == traced
    torch.testing.assert_close(ws_c, ws_e, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(img_c, img_e)


def test_a_strided_view_reuses_the_graph_of_its_shape(one_thread, recorded_graphs):
    """ws[0::2] has the shape of a compiled batch but other strides, which dynamo guards on (even a size-1
    dim's): without the copy to a fresh tensor's strides it traced a graph of its own (~2 s at a studio
    start, 24 s on a cold cache)."""
    eager = tiny_conditional_generator()
    G = copy.deepcopy(eager)
    compiled.compile_generator(G, compile=True)
    ws, _ = render(G, [0, 1, 2, 3])
    traced = len(recorded_graphs)
    strided = ws.repeat_interleave(2, dim=0)[0::2]  # the same rows, every other one of a bigger tensor
    assert not strided.is_contiguous() and strided.shape == ws.shape
    row = strided[2:3]  # is_contiguous() says True (size-1 dim 0) but its stride is not a fresh tensor's
    assert row.is_contiguous() and row.stride() != torch.empty(row.shape).stride()
    with torch.no_grad():
        img = synthesize_uint8(G, strided)
        assert len(recorded_graphs) == traced
        synthesize_uint8(G, ws[:1])  # the batch-1 graph
        traced = len(recorded_graphs)
        one = synthesize_uint8(G, row)
        assert len(recorded_graphs) == traced
    np.testing.assert_array_equal(img, synthesize_uint8(eager, ws))
    np.testing.assert_array_equal(one, synthesize_uint8(eager, ws[2:3]))


def test_compiled_modules_go_to_the_project_cache_unless_the_user_chose_a_place(monkeypatch, tmp_path):
    """Importing torch._dynamo writes inductor's default into TORCHINDUCTOR_CACHE_DIR: that value is not
    a choice, so the project's cache replaces it (it did not, and modules went to /tmp)."""
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    ours = str(compiled.cache_dir() / "inductor")
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir, default_cache_dir
    for found in (None, default_cache_dir()):
        if found is None:
            monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", found)
        compiled._use_project_cache()
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == ours == inductor_cache_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    compiled._use_project_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_the_switch(monkeypatch, capsys):
    monkeypatch.delenv(compiled.COMPILE_ENV, raising=False)
    monkeypatch.delenv("CXX", raising=False)
    has_cxx = compiled.missing_toolchain("cpu") is None
    assert compiled.compile_wanted(None, "cpu") is has_cxx          # auto
    assert compiled.compile_wanted(False, "cpu") is False
    monkeypatch.setenv(compiled.COMPILE_ENV, "0")
    assert compiled.compile_wanted(None, "cpu") is False
    assert compiled.compile_wanted(True, "cpu") is has_cxx           # the argument beats the environment
    monkeypatch.setenv(compiled.COMPILE_ENV, "maybe")
    capsys.readouterr()
    assert compiled.compile_wanted(None, "cpu") is has_cxx
    assert "must be 1, 0 or auto, not 'maybe': using auto" in capsys.readouterr().err
    monkeypatch.setenv(compiled.COMPILE_ENV, "auto")
    assert compiled.compile_wanted(None, "cpu", images=compiled.AUTO_MIN_IMAGES - 1) is False  # too small a job
    assert compiled.compile_wanted(None, "cpu", images=compiled.AUTO_MIN_IMAGES) is has_cxx
    assert compiled.compile_wanted(True, "cpu", images=1) is has_cxx                           # asked for: compiles
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv(compiled.COMPILE_ENV, "auto")
    capsys.readouterr()
    assert compiled.compile_wanted(None, "cpu") is False and capsys.readouterr().err == ""  # auto: quietly eager
    monkeypatch.setenv(compiled.COMPILE_ENV, "1")
    assert compiled.compile_wanted(None, "cpu") is False                                    # forced: one line why
    assert capsys.readouterr().err.strip() == ("note: not compiling the generator: no C++ compiler "
                                               "(/nonexistent/c++) found; rendering without compilation")
    G = tiny_conditional_generator()
    assert not compiled.compile_generator(G) and not compiled.is_compiled(G)


def test_background_mode_renders_eager_until_warmed_up(monkeypatch):
    G = tiny_conditional_generator()
    eager = copy.deepcopy(G)
    compiled.compile_generator(G, compile=True, background=True)
    called = []
    for module in (G.mapping, G.synthesis):
        monkeypatch.setattr(module.forward, "static", lambda *a, **k: called.append(1))
    assert compiled.warming_up(G)
    np.testing.assert_array_equal(render(G, [4])[1], render(eager, [4])[1])
    assert called == []  # nothing compiled on the caller's thread
    duplicate = copy.deepcopy(G)  # e.g. the studio's private generator for batch exports
    assert not compiled.is_compiled(duplicate)
    np.testing.assert_array_equal(render(duplicate, [4])[1], render(eager, [4])[1])


@pytest.mark.slow
def test_batch_sizes_pad_to_a_compiled_graph_then_share_one_dynamic_graph(one_thread, monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "eager")  # dynamo's graphs without inductor: the policy, fast
    monkeypatch.setattr(compiled, "MAX_STATIC", 1)
    eager = tiny_conditional_generator()
    G = copy.deepcopy(eager)
    compiled.compile_generator(G, compile=True)
    synthesis = G.synthesis.forward
    for seeds, ready in (([0, 1], {2}), ([2], {2}), ([3, 4, 5, 6, 7], {2, "dynamic"}), ([8, 9, 10], {2, "dynamic"})):
        ws, img = render(G, seeds)
        assert synthesis.ready == ready, seeds
        assert_within_one_level(img, render(eager, seeds)[1])
    with torch.no_grad():  # 'random' noise is never padded: the draws would shift
        torch.manual_seed(5)
        a = synthesis(ws[:1], noise_mode="random")
        torch.manual_seed(5)
        b = eager.synthesis(ws[:1], noise_mode="random")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_damaged_module_in_the_cache_is_removed_and_compiled_again(tmp_path, monkeypatch, capsys):
    """A build killed half-way leaves a short .so that the graph cache points at: every start fell back."""
    monkeypatch.setenv("AFRO_FASHION_CACHE", str(tmp_path / "cache"))
    damaged = compiled.cache_dir() / "inductor" / "ab" / "cab.main.so"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"")
    outside = tmp_path / "elsewhere.main.so"
    outside.write_bytes(b"")

    def loading(path):  # what inductor raises: the loader's ImportError inside dynamo's wrapper
        def compiled_fn(x):
            if path.exists():
                raise RuntimeError("backend='inductor' raised") from ImportError(f"{path}: file too short")
            return x + 1
        return compiled_fn

    step = compiled.CompiledStep(lambda x: x * 0, "a test step")
    step.compiled = loading(damaged)
    assert step(torch.ones(2)).tolist() == [2, 2] and not step.failed and not damaged.exists()
    assert "removing a damaged compiled module" in capsys.readouterr().err
    outsider = compiled.CompiledStep(lambda x: x * 0, "a test step")  # a file outside our cache is left alone
    outsider.compiled = loading(outside)
    assert outsider(torch.ones(2)).tolist() == [0, 0] and outsider.failed and outside.exists()
    assert "compiling a test step failed (ImportError" in capsys.readouterr().err
    calls = []

    def always_damaged(x):  # a file that comes back damaged each time: a bounded number of tries, then eager
        calls.append(1)
        damaged.write_bytes(b"")
        raise RuntimeError("backend='inductor' raised") from ImportError(f"{damaged}: file too short")
    stubborn = compiled.CompiledStep(lambda x: x * 0, "a test step")
    stubborn.compiled = always_damaged
    assert stubborn(torch.ones(2)).tolist() == [0, 0] and stubborn.failed
    assert len(calls) == compiled.MAX_CACHE_REPAIRS + 1


def test_short_gil_turns_overlap_and_restore_the_interval_found():
    before = sys.getswitchinterval()
    first, second = compiled.short_gil_turns(), compiled.short_gil_turns()
    first.__enter__()
    second.__enter__()
    assert sys.getswitchinterval() == compiled.WARM_UP_SWITCH_S
    first.__exit__(None, None, None)
    assert sys.getswitchinterval() == compiled.WARM_UP_SWITCH_S     # the other is still inside
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before


def test_the_studio_compiles_in_the_background_and_renders_meanwhile(one_thread, monkeypatch):
    import threading

    import editor.studio
    from editor.network import random_demo_network
    from design.recipe import Recipe

    monkeypatch.setattr(compiled, "BACKEND", "eager")  # the thread's work without inductor: fast
    go = threading.Event()
    before = sys.getswitchinterval()

    def held_warm_up(G, sizes):  # hold the warm-up until the test has seen the studio during it
        go.wait(60)
        compiled.warm_up(G, sizes)
    monkeypatch.setattr(editor.studio, "warm_up", held_warm_up)
    studio = editor.studio.Studio(random_demo_network(16), compile=True)
    eager = editor.studio.Studio(random_demo_network(16), compile=False)
    assert studio.compiling and studio.warming_up and not eager.compiling
    assert sys.getswitchinterval() == compiled.WARM_UP_SWITCH_S  # short GIL turns while it traces
    recipe = Recipe(studio.network_sha256, seed=3)
    np.testing.assert_array_equal(studio.render(recipe), eager.render(recipe))  # eager while warming up
    go.set()
    (thread,) = [t for t in threading.enumerate() if t.name == "compile-warm-up"]
    thread.join(120)
    assert not studio.warming_up and studio.G.synthesis.forward.ready == {1, 8}
    assert sys.getswitchinterval() == before                      # and the interpreter's own afterwards
    images = studio.render_seeds([0, 1, 2, 3, 4], 0.7, None)  # padded up to the warmed-up 8
    assert_within_one_level(np.stack(images), np.stack(eager.render_seeds([0, 1, 2, 3, 4], 0.7, None)))
