"""Plotly figures of the dashboard, built from results tables.

Every builder returns a :class:`plotly.graph_objects.Figure` that the pages
show with ``st.plotly_chart(fig, config=CHART_CONFIG)``. The figures carry
what a reader needs to trust them:

* axis titles with units (budgets in ``ε (L∞, 0–255 pixel levels)``, the
  engine's one pixel convention);
* hover text with the exact value, the number of images, the defence
  setting and the threat model of the point;
* the threat model as the figure's subtitle: recap attacks are crafted on the
  *undefended* model and tested through the defence; an attacker who knows
  the defence does better (Athalye et al. 2018);
* one colour per defence family (:data:`FAMILY_COLOURS`), with "no defence"
  always near-black so that it stands out.

Nothing here imports TensorFlow or Streamlit; the data logic lives in
:mod:`engine.evaluation.query` and :mod:`app.views`, the names and formats in
:mod:`app.labels`.

Modules
-------
:mod:`app.charts.style`
    colours, fonts, titles, axes, hover text and download configs;
:mod:`app.charts.curves`
    metrics against attack strength (both threat models), the live overlay;
:mod:`app.charts.param`
    a metric against one defence parameter at a fixed budget;
:mod:`app.charts.tradeoff`
    clean cost against accuracy recovered, per defence setting;
:mod:`app.charts.gap`
    each setting's accuracy against both threat models (transfer, adaptive);
:mod:`app.charts.model`
    confusion matrices, top-k bars, training curves, class counts.

Downloads
---------
:data:`CHART_CONFIG` makes the modebar's camera button save a PNG at twice
the on-screen resolution; :data:`CHART_CONFIG_SVG` saves an SVG instead
(vector, for papers). :func:`chart_config` sets the file name. Outside the
browser, ``fig.write_html(path, config=CHART_CONFIG)`` keeps the same
buttons; ``fig.write_image`` needs the optional ``kaleido`` package.
"""

from app.charts.curves import metric_vs_eps, overlay_live, two_panel
from app.charts.gap import threat_gap
from app.charts.model import (
    PATIENT_CLASSES,
    class_counts,
    confusion_heatmap,
    topk_bars,
    training_curves,
)
from app.charts.param import metric_vs_param
from app.charts.style import (
    CHART_CONFIG,
    CHART_CONFIG_SVG,
    FAMILY_COLOURS,
    LIVE_COLOUR,
    chart_config,
    family_colour,
    metric_axis_title,
)
from app.charts.tradeoff import tradeoff

__all__ = [
    "CHART_CONFIG",
    "CHART_CONFIG_SVG",
    "FAMILY_COLOURS",
    "LIVE_COLOUR",
    "PATIENT_CLASSES",
    "chart_config",
    "class_counts",
    "confusion_heatmap",
    "family_colour",
    "metric_axis_title",
    "metric_vs_eps",
    "metric_vs_param",
    "overlay_live",
    "threat_gap",
    "topk_bars",
    "tradeoff",
    "training_curves",
    "two_panel",
]
