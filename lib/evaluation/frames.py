"""The rows of :mod:`lib.evaluation` in the wide per-image shapes the notebooks' tables use."""

from __future__ import annotations

import pandas as pd

from lib.metrics import FRAME_COLUMNS

from .suite import parse_protocol

__all__ = ["with_protocol", "ad_ic_frame"]


def with_protocol(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with one column per key of their ``protocol`` (values as strings; missing keys NaN)."""
    parts = pd.DataFrame([parse_protocol(p) for p in rows["protocol"]], index=rows.index)
    return pd.concat([rows, parts], axis=1)


def ad_ic_frame(rows: pd.DataFrame, convention: str = "image") -> pd.DataFrame:
    """The ``ad_ic`` rows of one masking convention as :func:`lib.metrics.to_frame` gives them: one row
    per (image, method, mask) with columns :data:`lib.metrics.FRAME_COLUMNS` (``original`` repeated on
    every mask of the image), in the rows' method and image order, soft masks before binary ones."""
    rows = with_protocol(rows[rows.metric.isin(["drop", "increase", "score", "original"])])
    rows = rows[rows.convention == convention]
    if rows.empty:
        raise ValueError(f"no ad_ic rows for convention {convention!r}. Fix: evaluate the ad_ic group.")
    original = rows[rows.metric == "original"].set_index(["method", "image_id"]).value.rename("original")
    masks = rows[rows.metric != "original"]
    wide = masks.pivot_table(index=["method", "image_id", "mask", "fraction"], columns="metric", values="value",
                             sort=False).reset_index()
    wide = wide.join(original, on=["method", "image_id"])
    wide["binary"] = wide.pop("mask") == "binary"
    wide["fraction"] = wide.fraction.astype(float)
    methods = {m: k for k, m in enumerate(rows.method.unique())}
    images = {i: k for k, i in enumerate(rows.image_id.unique())}
    order = {"method": methods, "image_id": images}
    wide = wide.sort_values(["method", "image_id", "binary"], kind="stable",
                            key=lambda c: c.map(order[c.name]) if c.name in order else c)
    return wide[list(FRAME_COLUMNS)].reset_index(drop=True)
