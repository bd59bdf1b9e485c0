"""Rendering an :class:`lib.widgets.compute.ExplorerResult`: the maps figure (PNG bytes) and HTML tables.

The figure is a :class:`matplotlib.figure.Figure` drawn with the Agg canvas, not through
``pyplot``: it can be drawn in the explorer's background thread and is never shown inline by the
notebook's matplotlib backend. Layout: one column for the image, then one column per method
(side by side), one row per target class. FM-G-CAM (``"fmgcam"``), when several classes are
explained, is drawn as its fused multi-colour overlay with a legend
(:func:`lib.plotting.fused_overlay`), one panel for all classes.
"""

from __future__ import annotations

import html
import io

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..plotting import overlay
from .compute import ExplorerResult, method_label
from .state import JOINT_METHODS, normalize_method

__all__ = ["DPI", "FUSED_METHODS", "maps_figure", "figure_png", "probabilities_html", "metrics_html", "message_html"]

DPI = 96
"""Resolution of the explorer's figure: a 2.1-inch panel is 202 pixels."""

FUSED_METHODS: frozenset[str] = JOINT_METHODS
"""Methods whose K maps are one explanation, drawn as one fused overlay (when lib.plotting has it)."""


def _fused_renderer():
    """``(fused_overlay, fused_legend)`` from :mod:`lib.plotting`, or ``None`` when it has no fused renderer."""
    try:
        from ..plotting import fused_legend, fused_overlay
    except ImportError:
        return None
    return fused_overlay, fused_legend


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def _percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.001 else f"{100 * p:.2g}%"


def maps_figure(result: ExplorerResult, cell: float = 2.1) -> Figure:
    """The explorer's figure: image column, then each method's thresholded maps (rows: target classes)."""
    ids = result.target_ids.tolist()
    k = len(ids)
    methods = list(result.selection.methods)
    cols = 1 + len(methods)
    fig = Figure(figsize=(cell * cols, cell * k + 0.5 * (k == 1)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(k, cols, squeeze=False)
    thresholded = result.thresholded
    probs = result.probabilities
    metrics = result.metrics.set_index(["method", "target"]) if len(result.metrics) else None
    fused = _fused_renderer()
    for row, cls in enumerate(ids):
        axes[row, 0].imshow(_hwc(result.image))
        axes[row, 0].set_ylabel(f"{result.categories[cls]}\n({_percent(float(probs[cls]))})", fontsize=8)
    axes[0, 0].set_title("image", fontsize=9)
    for col, method in enumerate(methods, start=1):
        label = method_label(method)
        if method not in thresholded:
            for row in range(k):
                axes[row, col].axis("off")
            error = result.errors.get(method, "no map")
            axes[0, col].text(0.5, 0.5, _wrap(error, 28), ha="center", va="center", fontsize=7, color="#b00020",
                              transform=axes[0, col].transAxes)
            axes[0, col].set_title(label, fontsize=9)
            continue
        maps = thresholded[method]
        if normalize_method(method) in FUSED_METHODS and k > 1 and fused is not None:
            fused_overlay, fused_legend = fused
            axes[0, col].imshow(fused_overlay(result.image, maps))
            axes[0, col].set_title(f"{label} (fused)", fontsize=9)
            fused_legend(axes[0, col], [result.categories[c] for c in ids], probs[ids])
            for row in range(1, k):
                axes[row, col].axis("off")
            continue
        for row in range(k):
            ax = axes[row, col]
            ax.imshow(_overlay(result.image, maps[row], result.selection.threshold))
            if metrics is not None:
                m = metrics.loc[(method, row + 1)]
                ax.set_xlabel(f"AD {m['AD']:.1f}%  IC {'yes' if m['IC'] > 0 else 'no'}", fontsize=7)
        axes[0, col].set_title(label, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if result.selection.threshold > 0:
        fig.suptitle(f"map values below {result.selection.threshold:.2f} set to 0", fontsize=8, y=0.995)
    fig.tight_layout()
    return fig


def _overlay(image: torch.Tensor, cam: torch.Tensor, threshold: float) -> np.ndarray:
    """:func:`lib.plotting.overlay`; with a threshold, the pixels it zeroed show the image itself."""
    blended = overlay(image, cam)
    if threshold <= 0:
        return blended
    keep = (cam.detach().cpu() >= threshold).numpy()[..., None]
    return np.where(keep, blended, _hwc(image))


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:8])


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """PNG bytes of a figure drawn with the Agg canvas (safe outside the main thread)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


_TABLE = ("<table style='border-collapse:collapse;font-size:12px'>{head}{rows}</table>")
_CELL = "padding:1px 8px;text-align:{align}"


def _table(columns: list[str], rows: list[list[str]], aligns: list[str], bold: list[bool] | None = None) -> str:
    head = "<tr>" + "".join(f"<th style='{_CELL.format(align=a)}'>{html.escape(c)}</th>"
                            for c, a in zip(columns, aligns)) + "</tr>"
    body = []
    for i, row in enumerate(rows):
        weight = "font-weight:bold;" if bold and bold[i] else ""
        body.append("<tr>" + "".join(f"<td style='{weight}{_CELL.format(align=a)}'>{v}</td>"
                                     for v, a in zip(row, aligns)) + "</tr>")
    return _TABLE.format(head=head, rows="".join(body))


def probabilities_html(result: ExplorerResult, n: int = 5) -> str:
    """The ``n`` most probable classes and every target class (bold), with bars of their probability."""
    top = result.top(n)
    ids = top["class_id"].tolist()
    targets = result.target_ids.tolist()
    ids += [c for c in targets if c not in ids]
    rows, bold = [], []
    for c in ids:
        p = float(result.probabilities[c])
        rank = int((result.probabilities > result.probabilities[c]).sum()) + 1
        bar = (f"<div style='display:inline-block;height:9px;width:{max(1, round(120 * p))}px;"
               "background:#4c72b0'></div>")
        rows.append([str(rank), html.escape(result.categories[c]), str(c), _percent(p), bar])
        bold.append(c in targets)
    return ("<b>Class probabilities</b> (softmax of the unmasked image; bold: explained classes)"
            + _table(["rank", "class", "id", "p", ""], rows, ["right", "left", "right", "right", "left"], bold))


def metrics_html(result: ExplorerResult) -> str:
    """AD / IC of each method's current (thresholded) map, per target class."""
    if not len(result.metrics):
        return "<i>No map, so no AD / IC.</i>"
    rows = []
    for r in result.metrics.itertuples(index=False):
        rows.append([html.escape(method_label(r.method)), html.escape(r[3]), _percent(r.original / 100),
                     _percent(r.score / 100), f"{r.AD:.1f}", "yes" if r.IC > 0 else "no", f"{100 * r.kept:.0f}%"])
    note = (f"<br><span style='font-size:11px;color:#555'>Explanation image = image x map, with map values below "
            f"the threshold ({result.selection.threshold:.2f}) set to 0. Y: p(class | image), O: p(class | "
            "explanation). AD = 100 max(0, Y - O) / Y; IC: whether O > Y (for one image IC is 0 or 100). "
            "kept: share of non-zero map pixels.</span>")
    return ("<b>Average Drop / Increase in Confidence of the current map</b>"
            + _table(["method", "class", "Y", "O", "AD %", "IC", "kept"], rows,
                     ["left", "left", "right", "right", "right", "center", "right"]) + note)


def message_html(text: str, kind: str = "info") -> str:
    """A status line: ``kind`` ``"info"``, ``"busy"``, ``"error"`` or ``"warning"`` (colour)."""
    colour = {"info": "#2e7d32", "busy": "#555", "error": "#b00020", "warning": "#a15c00"}.get(kind, "#555")
    return f"<div style='color:{colour};font-size:12px;white-space:pre-wrap'>{html.escape(text)}</div>"
