"""Recap curves: every metric against attack strength, for every defence setting."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import catalog, charts, labels, views
from engine import threat
from engine.evaluation import query, sanity
from engine.evaluation.results import ADAPTIVE_DIR
from engine.images import thumbnail
from engine.threat import is_adaptive
from ui import common, widgets

entry = common.current()
st.title("Recap curves")
st.markdown(
    "How the chosen model's metrics fall as the attack gets stronger, and how much each "
    "input defence wins back, measured on the whole test set. Hover a point for the exact "
    "value and image count."
)

loaded = common.results(entry)
if loaded is None:
    if entry.model_dir is None:
        common.no_model(entry)
    else:
        st.info("No recap curves are precomputed for this model yet. Compute them with:")
        st.code(catalog.recap_command(entry), language="bash")
    st.stop()

df, manifest = loaded
status = common.results_status(entry)
if not status.ok:
    st.warning(status.message(), icon="⚠️")

classes = list(manifest.get("model", {}).get("classes") or [])
if not query.attacked(df):
    st.info(widgets.NO_ATTACKED_ROWS)
    st.stop()
findings: list[sanity.Finding] = []
with common.friendly_errors("The sanity checks could not run on this table"):
    findings = sanity.check(
        df, classes=classes, setting_name=labels.setting_phrase, attack_name=labels.attack_title
    )


def sanity_notes(chart: str, **shown: Any) -> int:
    """The sanity findings about the chart above (Carlini et al. 2019), in plain words."""
    notes = [f for f in findings if f.concerns(chart, **shown)]
    for f in notes:
        box = st.warning if f.severity == "warning" else st.info
        box(f"**{sanity.CHECKS[f.check].title}.** {f.explanation}", icon="🔎")
    return len(notes)


top = st.columns([1, 1, 2])
attack = top[0].selectbox(
    "Attack", query.attacked(df), format_func=labels.attack_title, key="recap_attack"
)
metric_ids = [m for m in labels.METRICS if m in df.columns and df[m].notna().any()]
metric = top[1].selectbox(
    "Metric",
    metric_ids,
    format_func=lambda m: labels.METRICS[m].label,
    key="recap_metric",
    help="\n\n".join(
        f"**{labels.METRICS[m].label}**: {labels.METRICS[m].help}" for m in metric_ids
    ),
)
with top[2]:
    widgets.chart_format_choice()

tabs = st.tabs(
    [
        "Metric vs ε",
        "Model & patient view",
        "Against a defence parameter",
        "Trade-off",
        "Confusion matrices",
        "Which images flip",
        "Attacker knows the defence",
    ]
)

with tabs[0], common.friendly_errors("This chart cannot be drawn"):
    table = views.settings_table(df)
    keys = list(table["defence_key"])
    default = [k for k in (query.NO_DEFENCE, "nlm+bilateral+guided") if k in keys]
    best = views.headline(df, attack=attack, eps=8).get("best_key")
    if best and best not in default:
        default.append(best)
    chosen = st.multiselect(
        "Defence settings (one line each)",
        keys,
        default=default,
        format_func=labels.setting_label,
        key="recap_keys",
    )
    if not chosen:
        st.info("Pick at least one defence setting.")
    else:
        widgets.chart(
            charts.metric_vs_eps(df, metric=metric, attack=attack, defence_keys=chosen),
            key="recap_eps_chart",
            filename=f"{entry.key}_{attack}_{metric}_vs_eps",
        )
        if attack == "fgsm":
            st.caption(
                "FGSM takes a single step of size ε, so a large ε can overshoot the "
                "region where the model is wrong and accuracy may rise again; iterative "
                "PGD does not give up that way. A curve that climbs at large ε is a "
                "weakness of the attack, not robustness of the model."
            )
        st.markdown("**Sanity checks of this chart** (on accuracy; Carlini et al. 2019)")
        if not sanity_notes(sanity.CHART_EPS, attack=attack, defence_keys=chosen):
            st.caption("The checks find nothing to flag on these curves.")
        with st.expander(f"For researchers: all {len(findings)} findings on this table"):
            st.dataframe(sanity.findings_table(findings), hide_index=True)
        shown = df[(df["attack"] == attack) & df["defence_key"].isin(chosen)]
        st.download_button(
            "Download these rows (CSV)",
            shown.to_csv(index=False).encode(),
            file_name=f"{entry.key}_{attack}_{metric}.csv",
            mime="text/csv",
            key="recap_dl_rows",
        )

with tabs[1], common.friendly_errors("This chart cannot be drawn"):
    st.caption(
        "The view of seed 001: model performance on the left; on the right, what it means "
        "for patients (a missed pneumonia is a false negative)."
    )
    family, params = widgets.defence_picker(df, key="recap_two")
    row, note = query.nearest_setting(
        df, attack=attack, eps=0, defence_family=family, params=params
    )
    if note:
        st.info(f"Nearest precomputed setting: {note}.")
    widgets.chart(
        charts.two_panel(df, attack=attack, defence_key=row["defence_key"], manifest=manifest),
        key="recap_two_chart",
        filename=f"{entry.key}_{attack}_two_panel",
    )

with tabs[2], common.friendly_errors("This chart cannot be drawn"):
    if not widgets.tunable_families(df):
        st.info(f"No chart here: {widgets.NOTHING_TUNABLE}.")
    else:
        fam, param, eps_used = widgets.param_picker(df, attack, key="recap_param")
        widgets.chart(
            charts.metric_vs_param(
                df, metric=metric, attack=attack, eps=eps_used, family=fam, param=param
            ),
            key="recap_param_chart",
            filename=f"{entry.key}_{attack}_{fam}_{param}",
        )

with tabs[3], common.friendly_errors("This chart cannot be drawn"):
    eps_req = widgets.eps_slider(df, attack, key="recap_trade_eps")
    eps_used, eps_note = query.resolve_eps(df, attack, eps_req)
    if eps_note:
        st.info(eps_note)
    widgets.chart(
        charts.tradeoff(df, attack=attack, eps=eps_used),
        key="recap_trade_chart",
        filename=f"{entry.key}_{attack}_tradeoff_eps{eps_used:g}",
    )
    with st.expander("The numbers behind the chart"):
        for threat_id in query.threats(df):
            numbers = views.tradeoff_table(df, attack=attack, eps=eps_used, threat=threat_id)
            st.caption(f"Threat model: {threat_id}")
            st.dataframe(numbers, hide_index=True)

with tabs[4], common.friendly_errors("This cell cannot be shown"):
    c1, c2 = st.columns([1, 2])
    with c1:
        eps_req = widgets.eps_slider(df, attack, key="recap_cm_eps")
        family, params = widgets.defence_picker(df, key="recap_cm")
    row, note = query.nearest_setting(
        df, attack=attack, eps=eps_req, defence_family=family, params=params
    )
    if note:
        c2.info(f"Nearest precomputed cell: {note}.")
    adaptive_row = query.find_row(
        df, attack, float(row["eps"]), str(row["defence_key"]), threat="adaptive"
    )
    if (
        adaptive_row is not None
        and float(row["eps"]) > 0
        and row["defence_key"] != query.NO_DEFENCE
        and is_adaptive(str(adaptive_row["threat_model"]))
        and c1.toggle(
            "The attacker knows the defence",
            key="recap_cm_adaptive",
            help="Show the cell of the attack crafted through the defence (adaptive sweep) "
            "instead of the one crafted on the undefended model.",
        )
    ):
        row = adaptive_row
    title = (
        f"{labels.attack_title(attack)} ε={row['eps']:g} · "
        f"{labels.setting_label(row['defence_key'])}"
    )
    c2.caption(f"{title} · {int(row['n_images'])} images · threat model: {row['threat_model']}")
    left, right = st.columns(2)
    with left:
        widgets.chart(
            charts.confusion_heatmap(row["confusion"], classes, title=f"Classes · {title}"),
            key="recap_cm_chart",
            filename=f"{entry.key}_confusion",
        )
    if query.has_patient_view(df) and isinstance(row.get("confusion_binary"), list):
        with right:
            widgets.chart(
                charts.confusion_heatmap(row["confusion_binary"], title=f"Patient view · {title}"),
                key="recap_cmb_chart",
                filename=f"{entry.key}_confusion_patient",
            )
    sanity_notes(
        sanity.CHART_CONFUSION, attack=attack, defence_keys=[row["defence_key"]], eps=row["eps"]
    )


with tabs[5], common.friendly_errors("The per-image records cannot be shown"):
    per_image = common.per_image(entry)
    if per_image is None:
        st.info("This run kept no per-image records.")
    else:
        c1, c2 = st.columns([1, 2])
        with c1:
            eps_req = widgets.eps_slider(df, attack, key="recap_flip_eps")
            keys = sorted(set(per_image["defence_key"]), key=list(df["defence_key"]).index)
            key = st.selectbox(
                "Defence", keys, format_func=labels.setting_label, key="recap_flip_key"
            )
        flips = query.flipped_images(
            per_image, attack=attack, eps=eps_req, defence_key=key, classes=classes
        )
        n_subset = per_image["image_index"].nunique()
        with c2:
            if flips.attrs.get("note"):
                st.info(flips.attrs["note"])
            restored = int(flips["restored"].fillna(False).astype(bool).sum())
            st.markdown(
                f"Of a fixed, stratified subset of **{n_subset}** test images, the attack at "
                f"ε = {flips.attrs.get('eps', eps_req):g} flips **{len(flips)}** that the model "
                f"got right; **{labels.setting_label(key)}** restores **{restored}** of them."
            )
        index = common.test_split(entry.dataset_id)
        if index is not None and len(flips):
            shown = flips.head(12)
            st.image(
                [thumbnail(index.read(ref), 128) for ref in shown["ref"]],
                caption=[
                    f"{r.true_name} → {r.attacked_name}" + (" → restored" if r.restored else "")
                    for r in shown.itertuples()
                ],
                width=128,
            )
            st.caption(
                f"The first {len(shown)} of {len(flips)} flipped images: clean images from "
                "your local copy of the data (none is shipped)."
            )
        if len(flips):
            table = flips.rename(
                columns={
                    "image_index": "test image",
                    "true_name": "true class",
                    "attacked_name": "attacked: predicted",
                    "confidence_attacked": "attacked: confidence",
                    "defended_name": "defended: predicted",
                    "confidence_defended": "defended: confidence",
                    "restored": "restored",
                }
            )
            st.dataframe(
                table[[c for c in table.columns if " " in c or c == "restored"]],
                hide_index=True,
                column_config={
                    "attacked: confidence": st.column_config.ProgressColumn(
                        format="percent", max_value=1
                    ),
                    "defended: confidence": st.column_config.ProgressColumn(
                        format="percent", max_value=1
                    ),
                },
            )

with tabs[6], common.friendly_errors("This chart cannot be drawn"):
    if "adaptive" not in query.threats(df):
        st.info(
            "No attack crafted through the defences has been run for this model, so every "
            "number here is for an attacker who does not know the defence: an upper bound. "
            "The command to run the adaptive sweep:"
        )
        if entry.model_dir is not None:
            st.code(catalog.recap_command(entry, adaptive=True), language="bash")
    else:
        eps_req = widgets.eps_slider(df, attack, key="recap_gap_eps")
        widgets.chart(
            charts.threat_gap(df, attack=attack, eps=eps_req),
            key="recap_gap_chart",
            filename=f"{entry.key}_{attack}_threat_gap",
        )
        sanity_notes(sanity.CHART_EPS, attack=attack)
        conv = catalog.convergence(entry)
        if conv is not None and not conv.converged:
            cells = ", ".join(
                f"{labels.setting_label(k)} at ε {e:g} ({d:+.1f})" for k, e, d in conv.worst[:4]
            )
            st.warning(
                f"**The adaptive PGD has not fully converged.** Re-run with {conv.steps_more} "
                f"steps instead of {conv.steps}, accuracy falls by up to "
                f"{conv.largest_change:.1f} points ({cells}): read these adaptive numbers as "
                "upper bounds (Carlini et al. 2019, §4.2; `python -m bench.convergence`).",
                icon="🔎",
            )
        elif conv is not None:
            st.caption(
                f"Convergence checked: {conv.steps_more} PGD steps instead of {conv.steps} change "
                f"no accuracy by 1 point or more (largest {conv.largest_change:.1f})."
            )

st.divider()
st.download_button(
    "Download the whole results table (CSV)",
    (entry.results_dir / "results.csv").read_bytes(),
    file_name=f"{entry.key}_results.csv",
    mime="text/csv",
    key="recap_dl_all",
)
adaptive_csv = entry.results_dir / ADAPTIVE_DIR / "results.csv"
if adaptive_csv.is_file():
    st.download_button(
        "Download the adaptive sweep's table (CSV)",
        adaptive_csv.read_bytes(),
        file_name=f"{entry.key}_adaptive_results.csv",
        mime="text/csv",
        key="recap_dl_adaptive",
    )
for label in dict.fromkeys(str(t) for t in df["threat_model"] if str(t) != threat.THREAT_CLEAN):
    common.threat_badge(label)
