"""Input components whose validation errors name the knob (Gradio's own messages do not).

Gradio checks slider ranges and dropdown choices on the server, also for API calls; these subclasses
only prefix the component's label, e.g. "Temperature: Value 9 is greater than maximum value 2.0."
"""
from __future__ import annotations

import html

import gradio as gr


def plain(text: object) -> str:
    """Text for a toast (gr.Warning / gr.Info / gr.Error) or Markdown, HTML-escaped: Gradio renders those as
    HTML, so a value echoed from a URL (a share link) must not become markup (a link, a form, an image)."""
    return html.escape(str(text), quote=False)


class _NamedErrors:
    label: str | None

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)  # type: ignore[misc]
        except gr.Error as err:
            raise gr.Error(f"{self.label}: {err.message}") from None
        except Exception:  # Gradio's own TypeError/ValueError would reach the client without a message
            shown = repr(payload) if len(repr(payload)) <= 40 else repr(payload)[:37] + "..."
            raise gr.Error(f"{self.label}: invalid value {shown}") from None


class Dropdown(_NamedErrors, gr.Dropdown):
    pass


class Radio(_NamedErrors, gr.Radio):
    pass


class Number(_NamedErrors, gr.Number):
    """Also refuses what Gradio would turn into a number silently: a boolean (True → 1) and, for a whole-number
    field (precision 0, e.g. a seed), a fraction (1.5 → 2)."""

    def preprocess(self, payload):
        if isinstance(payload, bool):
            raise gr.Error(f"{self.label}: must be a number; got bool {payload}")
        if self.precision == 0 and isinstance(payload, float) and not payload.is_integer():
            raise gr.Error(f"{self.label}: must be a whole number; got {payload:g}")
        return super().preprocess(payload)


class Slider(_NamedErrors, gr.Slider):
    """A boolean is refused (Gradio compares True as 1)."""

    def preprocess(self, payload):
        if isinstance(payload, bool):
            raise gr.Error(f"{self.label}: must be a number; got bool {payload}")
        return super().preprocess(payload)


class Textbox(_NamedErrors, gr.Textbox):
    pass


ADAPTER_PICKER = "adapter-picker"  # elem_classes of every adapter dropdown: refreshed when an adapter is trained


def adapter_pickers(demo: gr.Blocks) -> list[gr.Dropdown]:
    """The adapter dropdowns of every tab (marked with ADAPTER_PICKER), in the order they were built."""
    return [b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and ADAPTER_PICKER in (b.elem_classes or [])]


class TranscriptEvent(gr.EventData):
    """What a link in the transcript asked for (its js_on_load sends `{action, column, turn}` with the event).

    Gradio builds the event-data class a handler's annotation names with (target, data), as for its own
    `SelectData`, so the handler reads typed fields, not Gradio's private `_data`. Missing fields are None;
    the handler checks them (the browser's message is user input)."""

    def __init__(self, target, data) -> None:
        super().__init__(target, data)
        data = data if isinstance(data, dict) else {}
        self.action, self.column, self.turn = data.get("action"), data.get("column"), data.get("turn")
