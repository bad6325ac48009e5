"""A real browser (Debian's Chromium via Playwright) uses the studio: slider, image change, recipe restore.

Screenshots go to pytest's temp folder; AFRO_FASHION_SCREENSHOTS=docs refreshes the README's docs/studio-*.png.
"""
import os
import pathlib

import pytest

from conftest import REPO
from test_editor_app import free_port
from test_editor_studio import make_studio

CHROMIUM = pathlib.Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                 "(apt-get install -y chromium); .ci/run installs it")]


def test_stylist_moves_a_slider_and_restores_a_recipe(tmp_path):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import expect, sync_playwright

    from editor.app import launch

    studio = make_studio(tmp_path, resolution=32)
    demo, url = launch(studio, port=free_port(), block=False)
    shots = REPO / "docs" if os.environ.get("AFRO_FASHION_SCREENSHOTS") == "docs" else tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            image = page.locator("#studio-image img")
            image.wait_for(timeout=30_000)
            before = image.get_attribute("src")
            recipe_box = page.locator("#recipe-text")
            page.screenshot(path=str(shots / "studio-design.png"))

            slider = page.locator("#direction-0 input[type=range]")
            slider.fill("2.5")
            expect(image).not_to_have_attribute("src", before, timeout=20_000)
            moved = image.get_attribute("src")
            page.screenshot(path=str(shots / "studio-slider.png"))

            recipe_path = tmp_path / "recipe.json"
            recipe = studio.new_recipe(seed=0).replace(sliders={"sleeves": 2.5})
            assert studio.directions[0].name == "sleeves"
            recipe_path.write_text(recipe.replace(seed=5).to_json())
            page.get_by_role("tab", name="Recipe").click()
            page.locator("#recipe-upload input[type=file]").set_input_files(str(recipe_path))
            expect(page.locator("#studio-message")).to_contain_text("Recipe restored", timeout=20_000)
            expect(recipe_box).to_contain_text('"seed": 5', timeout=10_000)
            page.screenshot(path=str(shots / "studio-recipe.png"))
            page.get_by_role("tab", name="Design").click()
            expect(image).not_to_have_attribute("src", moved, timeout=20_000)

            page.get_by_role("tab", name="Browse").click()
            page.locator("#browse-gallery img").first.wait_for(timeout=20_000)
            page.screenshot(path=str(shots / "studio-browse.png"))
            browser.close()
    finally:
        demo.close()
