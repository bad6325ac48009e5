"""Number inputs whose value reaches the studio's handlers exactly as typed.

Why: gr.Slider and gr.Number check the range (and choke on an empty box or a lone '-' on its way to
'-2') in Gradio's own preprocessing, before any handler runs, and answer with an error overlay on every
output. These pass the payload through; `design.recipe.parse_number` then clamps it or says what to
type. Subclasses, not instance patches: Gradio rebuilds a component from its class when it is updated.
(Gradio writes a typing stub, typed_inputs.pyi, beside any module that subclasses a component; it is
ignored by git.)
"""
from __future__ import annotations

import gradio as gr


class TypedSlider(gr.Slider):
    def get_block_name(self) -> str:
        return "slider"  # the browser draws it as an ordinary slider

    def preprocess(self, payload):
        return payload


class TypedNumber(gr.Number):
    def get_block_name(self) -> str:
        return "number"

    def preprocess(self, payload):
        return payload
