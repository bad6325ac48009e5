"""What one studio user can send: uploads, numbers, labels, batch sizes, logins. Each hostile input is
answered with a message, costs bounded memory and time, and never loses the current design."""
import asyncio
import csv
import dataclasses
import json
import struct
import tracemalloc
import zlib

import pytest
import requests
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import serving

import editor.__main__ as studio_cli
import design.recipe as recipe_module
from editor.app import parse_strengths
from editor.exporting import export_batch
from design.recipe import MAX_UPLOAD_BYTES, RecipeError, read_recipe_upload
from editor.session import Session
from ganspace.export import export_directions
from design.recipe import RECIPE_KEY


def message_of(app, handler, *args):
    out = app.guarded(handler)(*args)
    return out.get(app.message, "")


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_text(text: str, width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header claims width x height, a recipe chunk, and almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", RECIPE_KEY.encode() + b"\0" + text.encode())
            + extra + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- point 9: uploads


def test_a_recipe_is_read_from_a_huge_or_animated_png_without_decoding_pixels(studio, tmp_path):
    recipe = studio.new_recipe(seed=42)
    frames = b"".join(chunk(b"fcTL", struct.pack(">I", 2 * i) + b"\0" * 22) + chunk(b"fdAT", struct.pack(">I", 2 * i + 1))
                      for i in range(3000))
    for name, data in [("huge.png", png_with_text(recipe.to_json(), 13000, 13000)),
                       ("400mp.png", png_with_text(recipe.to_json(), 20000, 20000)),
                       ("animated.png", png_with_text(recipe.to_json(), 64, 64, chunk(b"acTL", b"\0\0\x0b\xb8\0\0\0\0")
                                                      + frames))]:
        path = tmp_path / name
        path.write_bytes(data)
        tracemalloc.start()
        try:
            assert read_recipe_upload(path) == recipe, name
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, f"{name}: {peak / 2**20:.0f} MiB"


def test_compressed_text_chunks_are_read_and_bounded(studio, tmp_path):
    recipe = studio.new_recipe(seed=7)
    for kind in ("zTXt", "iTXt"):
        info = PngInfo()
        (info.add_text if kind == "zTXt" else info.add_itxt)(RECIPE_KEY, recipe.to_json(), zip=True)
        path = tmp_path / f"{kind}.png"
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
        assert kind.encode() in path.read_bytes()
        assert read_recipe_upload(path) == recipe
    bomb = tmp_path / "bomb.png"
    body = RECIPE_KEY.encode() + b"\0\0" + zlib.compress(b"{" + b" " * (50 << 20), 9)  # 50 KB -> 50 MB
    bomb.write_bytes(png_with_text("x", 8, 8).replace(chunk(b"tEXt", RECIPE_KEY.encode() + b"\0x"), chunk(b"zTXt", body)))
    with pytest.raises(RecipeError, match="too large"):
        read_recipe_upload(bomb)


def test_upload_size_is_checked_before_anything_is_read(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: 400 MB that take no disk
        f.write(b"{")
        f.truncate(400 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(RecipeError, match="at most 16 MB"):
            read_recipe_upload(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak / 2**20:.0f} MiB read before refusing"


def test_gradio_gets_an_upload_limit_and_cleans_its_cache(studio):
    with serving(studio) as (demo, url):
        assert demo.max_file_size == MAX_UPLOAD_BYTES
        frequency, age = demo.delete_cache
        assert 0 < frequency <= 3600 and 0 < age <= 3600


# ----------------------------------------------------------------------------- point 10: caps


def test_direction_labels_have_bounded_length_and_number(studio, monkeypatch):
    before = [d.name for d in studio.directions]
    with pytest.raises(RecipeError, match="description is 5000000 characters long"):
        studio.label_component(2, "fabric", "x" * 5_000_000, "+ = more")
    with pytest.raises(RecipeError, match="name is 200 characters"):
        studio.label_component(2, "n" * 200)
    monkeypatch.setattr(recipe_module, "MAX_LABELLED_DIRECTIONS", len(before))
    with pytest.raises(RecipeError, match=f"already holds {len(before)} labelled directions"):
        studio.label_component(2, "fabric")
    assert [d.name for d in studio.directions] == before


def test_a_batch_export_of_unbounded_size_is_refused_before_rendering(studio, monkeypatch):
    def render(*args, **kwargs):
        raise AssertionError("rendering started")

    monkeypatch.setattr("editor.exporting.export_directions", render)
    recipe = studio.new_recipe()
    with pytest.raises(RecipeError, match="asks for 42000 images"):
        export_batch(studio, recipe, list(range(1000)), [float(v) for v in range(-10, 11)])


# ----------------------------------------------------------------------------- point 11: numbers and text


@pytest.mark.parametrize("text", ["nan", "1, NaN", "inf", "-inf, 2", "1e400"])
def test_strengths_must_be_finite(text):
    with pytest.raises(RecipeError, match="between -100 and 100"):
        parse_strengths(text)


def test_browse_psi_pages_and_labels_give_messages_and_keep_the_design(app, studio):
    session = Session()
    session.apply(studio.new_recipe(seed=3))
    # Not a number: a message; out of range: clamped, and the message says so (the studio's typed-input rule).
    for page, psi, expected in [(float("inf"), 0.7, "Page needs a number"), (2, float("nan"), "Truncation ψ needs"),
                                (2, 50.0, "Truncation ψ goes from -1 to 1.5: set to 1.5")]:
        assert expected in message_of(app, app.on_browse, session, page, psi, None)
    assert "Page needs a number" in message_of(app, app.on_next, session, float("inf"), 0.7, None)
    assert "Label component needs a number" in message_of(app, app.on_label, session, float("-inf"), "x", "", "",
                                                          "all")
    assert session.recipe == studio.new_recipe(seed=3)


def test_deeply_nested_recipe_json_is_a_message(app, studio, tmp_path):
    session = Session()
    deep = "[" * 100_000 + "]" * 100_000
    assert "nested too deeply" in message_of(app, app.on_apply_recipe_text, session, deep)
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' + deep + "}")
    assert "nested too deeply" in message_of(app, app.on_upload, session, str(path))


def test_manifest_csv_cells_cannot_be_spreadsheet_formulas(studio, tmp_path):
    hostile = ['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)"]
    directions = [dataclasses.replace(studio.directions[0], name=name) for name in hostile]
    rows = export_directions(studio.private_generator(), dataclasses.replace(studio.directions_file,
                                                                               directions=directions),
                             [0], [-1.0], tmp_path, network_sha256=studio.network_sha256)
    assert [row["direction"] for row in rows] == hostile  # the JSON manifest keeps the real names
    with open(tmp_path / "manifest.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    assert [c["direction"] for c in cells] == ["'" + name for name in hostile]
    assert {c["strength"] for c in cells} == {"-1.0"}  # numbers stay numbers
    json.loads((tmp_path / "manifest.json").read_text())


# ----------------------------------------------------------------------------- point 12: logins


def test_credentials_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "auth.txt"
    secret.write_text("stylist:s3cret word\n")
    assert studio_cli.read_credentials(None, str(secret)) == ("stylist", "s3cret word")
    monkeypatch.setenv("AFRO_STUDIO_AUTH", "ada:lovelace")
    assert studio_cli.read_credentials(None, None) == ("ada", "lovelace")
    monkeypatch.delenv("AFRO_STUDIO_AUTH")
    assert studio_cli.read_credentials(None, None) is None


def test_login_guessing_is_throttled(monkeypatch):
    monkeypatch.setattr(studio_cli, "FAILED_LOGIN_DELAY_S", 0.0)
    now = [1000.0]
    check = studio_cli.throttled_login("stylist", "right", clock=lambda: now[0])

    async def attempts():
        guesses = [await check("stylist", f"guess{i}") for i in range(50)]
        return guesses, await check("stylist", "right")

    guesses, right_during_lockout = asyncio.run(attempts())
    assert not any(guesses) and not right_during_lockout  # 50 guesses in a burst: 5 checked, then refused
    now[0] += studio_cli.FAILED_LOGIN_WINDOW_S + 1
    assert asyncio.run(check("stylist", "right")) and not asyncio.run(check("stylist", "wrong"))


def test_gradio_awaits_the_throttled_login(studio):
    with serving(studio, auth=studio_cli.throttled_login("stylist", "right")) as (_, url):
        wrong = requests.post(f"{url}login", data={"username": "stylist", "password": "nope"}, timeout=30)
        right = requests.post(f"{url}login", data={"username": "stylist", "password": "right"}, timeout=30)
        assert wrong.status_code >= 400 and right.status_code == 200
