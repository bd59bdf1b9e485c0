"""The explorer's widgets (ipywidgets) and their layout; no behaviour beyond showing and hiding.

:class:`Controls` builds every widget once; :class:`lib.widgets.explorer.Explorer` connects them
to the computation. Tests set the widgets' ``value`` exactly as a user's click would.
"""

from __future__ import annotations

from typing import Sequence

import ipywidgets as w

from .images import SOURCES
from .state import MAX_TOPK, TARGET_MODES

__all__ = ["Controls", "SLOW_METHODS", "THRESHOLD_NOTE"]

SLOW_METHODS: frozenset[str] = frozenset({"scorecam", "groupcam", "ablationcam", "rise", "sacam"})
"""Methods that run many forward passes per image (seconds to minutes on a CPU)."""

THRESHOLD_NOTE = ("Threshold: map values below it are set to 0, in the overlays and in the map whose "
                  "AD / IC is reported (0 keeps the whole map).")

_STYLE = {"description_width": "72px"}


class Controls:
    """Every widget of the explorer.

    Inputs: ``source``, ``image``, ``upload``, ``model``, ``layer``, ``methods``, ``target_mode``,
    ``k``, ``class_search``, ``class_id``, ``threshold``; the ``stop`` button. Outputs: ``progress``,
    ``progress_label``, ``status``, ``maps`` (PNG image), ``probabilities`` and ``metrics`` (HTML).
    ``widget`` is the whole layout.
    """

    def __init__(self, models: Sequence[str], methods: Sequence[tuple[str, str]]) -> None:
        full = w.Layout(width="100%")
        self.source = w.ToggleButtons(options=list(SOURCES), description="source", style=_STYLE,
                                      layout=w.Layout(width="auto"))
        self.source.style.button_width = "104px"
        self.image = w.Dropdown(description="image", style=_STYLE, layout=full)
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload image",
                                   layout=w.Layout(width="160px", margin="2px 0 2px 76px"))
        self.model = w.Dropdown(options=list(models), description="model", style=_STYLE, layout=full)
        self.layer = w.Dropdown(description="layer", style=_STYLE, layout=full)
        self.methods = w.SelectMultiple(options=list(methods), rows=9, description="methods", style=_STYLE,
                                        layout=w.Layout(width="100%"))
        methods_hint = w.HTML("<span style='font-size:11px;color:#555'>ctrl / cmd-click to compare several; "
                              "(slow) methods show progress</span>", layout=w.Layout(margin="0 0 0 76px"))
        self.target_mode = w.ToggleButtons(options=list(TARGET_MODES), description="target", style=_STYLE)
        self.target_mode.style.button_width = "92px"
        self.k = w.BoundedIntText(value=3, min=1, max=MAX_TOPK, description="k", style=_STYLE,
                                  layout=w.Layout(width="140px"))
        self.class_search = w.Text(placeholder="type a class name, e.g. tabby", description="search",
                                   continuous_update=True, style=_STYLE, layout=full)
        self.class_id = w.Dropdown(description="class", style=_STYLE, layout=full)
        self.threshold = w.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="threshold",
                                       continuous_update=False, readout_format=".2f", style=_STYLE, layout=full)
        threshold_note = w.HTML(f"<span style='font-size:11px;color:#555'>{THRESHOLD_NOTE}</span>",
                                layout=w.Layout(margin="0 0 0 76px"))
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="260px"))
        self.progress_label = w.Label("")
        self.stop = w.Button(description="stop", icon="stop", tooltip="stop the running computation",
                             layout=w.Layout(width="72px"))
        self.status = w.HTML("")
        self.maps = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        self.probabilities = w.HTML("")
        self.metrics = w.HTML("")

        image_box = w.VBox([self.source, self.image, self.upload, self.model, self.layer],
                           layout=w.Layout(width="34%"))
        method_box = w.VBox([self.methods, methods_hint], layout=w.Layout(width="28%"))
        self._k_box = w.HBox([self.k])
        self._class_box = w.VBox([self.class_search, self.class_id])
        target_box = w.VBox([self.target_mode, self._k_box, self._class_box, self.threshold, threshold_note],
                            layout=w.Layout(width="38%"))
        self.widget = w.VBox([
            w.HBox([image_box, method_box, target_box], layout=w.Layout(width="100%")),
            w.HBox([self.progress, self.stop, self.progress_label]),
            self.status,
            w.HBox([self.maps, w.VBox([self.probabilities, self.metrics], layout=w.Layout(margin="8px 0 0 12px", width="480px"))],
                   layout=w.Layout(flex_flow="row wrap", align_items="flex-start")),
        ])
        self.show_target_inputs(self.target_mode.value)

    @property
    def inputs(self) -> dict[str, w.ValueWidget]:
        """The widgets whose value change triggers a new computation."""
        return {"image": self.image, "model": self.model, "layer": self.layer, "methods": self.methods,
                "target_mode": self.target_mode, "k": self.k, "class_id": self.class_id,
                "threshold": self.threshold}

    def show_target_inputs(self, mode: str) -> None:
        """Show ``k`` in top-k mode and the class search in class mode."""
        self._k_box.layout.display = "" if mode == "top-k" else "none"
        self._class_box.layout.display = "" if mode == "class" else "none"

    def close(self) -> None:
        """Close every widget of this explorer (their views disappear from the notebook)."""
        stack = [self.widget]
        while stack:
            widget = stack.pop()
            stack.extend(getattr(widget, "children", ()))
            widget.close()
