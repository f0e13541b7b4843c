"""Home: what the tool answers, and the chosen model's robustness in three numbers."""

from __future__ import annotations

import streamlit as st

from app import catalog, charts, labels, views
from engine import threat
from engine.evaluation import query
from ui import common, widgets
from ui.nav import PAGES

entry = common.current()

st.title("🛡️ RobustLens")
st.markdown(
    "**How easily can this image classifier be fooled by changes too small to see, "
    "and which input defences win the right answer back?** "
    "Precomputed curves over the whole test set sit next to a live lab where you "
    "attack and defend one image yourself."
)

if entry.model_dir is None and entry.results_dir is None:
    common.no_model(entry)
    st.stop()

loaded = common.results(entry)
attacks = query.attacked(loaded[0]) if loaded is not None else []
st.subheader(entry.title)
if loaded is None:
    st.info(
        "No precomputed recap curves for this model yet, so there are no headline numbers. "
        "The live lab works already."
    )
elif not attacks:
    st.info(widgets.NO_ATTACKED_ROWS)
else:
    df, manifest = loaded
    status = common.results_status(entry)
    if not status.ok:
        st.warning(status.message(), icon="⚠️")
    c_attack, c_eps = st.columns([1, 3])
    attack = c_attack.selectbox(
        "Attack", attacks, format_func=labels.attack_title, key="home_attack"
    )
    eps_choices = [e for e in query.eps_values(df, attack, query.NO_DEFENCE) if e > 0]
    eps = c_eps.select_slider(
        "Attack strength ε (0–255 pixel levels)",
        eps_choices,
        value=8.0 if 8.0 in eps_choices else eps_choices[len(eps_choices) // 2],
        key="home_eps",
        help="The largest change an attacker may make to any pixel, in 0–255 levels: "
        "ε = 8 changes each pixel by at most 8 of 255 levels, about 3 %.",
    )
    with common.friendly_errors("The headline numbers cannot be computed"):
        h = views.headline(df, attack=attack, eps=eps)
        a = h["adaptive"]
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Clean accuracy", f"{h['clean_accuracy']:.1%}")
        c1.caption(f"{h['n_images']} test images, no attack. Threat model: {threat.THREAT_CLEAN}.")
        c2.metric(
            f"Under {labels.attack_title(attack)}, ε = {h['eps']:g}",
            f"{h['attacked_accuracy']:.1%}",
            delta=f"{-100 * h['drop']:+.1f} points",
        )
        c2.caption(f"No defence. Threat model: {h['threat_model']['attacked']}.")
        if h["best_key"] is not None:
            holds = a is not None and a["holds"]
            chosen = "chosen by the adaptive number" if a is not None else "transfer only"
            c3.metric(
                f"{h['best_label']}: attacker unaware",
                "–" if h["best_accuracy"] != h["best_accuracy"] else f"{h['best_accuracy']:.1%}",
                delta=f"{100 * h['recovered']:+.1f} points recovered",
                delta_color="normal" if holds else "off",
                help="Best defence "
                + chosen
                + ". The attack is crafted on the undefended model and then "
                "passed through the defence.",
            )
            cost = 100 * h["best_clean_cost"]
            cost_text = (
                f"Costs {cost:.1f} points of clean accuracy. "
                if cost >= 0
                else f"Raises clean accuracy by {-cost:.1f} points. "
            )
            c3.caption(cost_text + f"Threat model: {h['threat_model']['attacked']}.")
            if a is not None:
                c4.metric(
                    f"{a['best_label']}: attacker knows it",
                    f"{a['accuracy']:.1%}",
                    delta=f"{100 * a['recovered']:+.1f} points recovered",
                    delta_color="normal" if holds else "off",
                    help="The attack is crafted through the defence (BPDA / EOT).",
                )
                conv = catalog.convergence(entry) if attack == "pgd" else None
                c4.caption(
                    f"{a['n_images']} images of the adaptive sweep. Threat model: "
                    f"{a['threat_model']}."
                    + (
                        f" PGD-{conv.steps} has not fully converged (up to "
                        f"{conv.largest_change:.1f} points lower with {conv.steps_more} "
                        "steps): an upper bound."
                        if conv is not None and not conv.converged
                        else ""
                    )
                )
            else:
                c4.metric("Attacker knows the defence", "not run")
                c4.caption(
                    "No attack crafted through the defences has been run for this model: "
                    "read the transfer number as an upper bound."
                )
                if entry.model_dir is not None:
                    with st.expander("Run the adaptive sweep"):
                        st.code(catalog.recap_command(entry, adaptive=True), language="bash")
            said = views.headline_sentences(h, labels.attack_title(attack))
            if said:
                box = st.success if holds else st.warning
                box(" ".join(said), icon="✅" if holds else "⚠️")
        st.plotly_chart(
            charts.metric_vs_eps(
                df,
                metric="accuracy",
                attack=attack,
                defence_keys=list(
                    dict.fromkeys(
                        [query.NO_DEFENCE]
                        + [k for k in (h["best_key"], h["transfer_best_key"]) if k]
                    )
                ),
            ),
            config=charts.chart_config(f"{entry.key}_{attack}_accuracy"),
            key="home_chart",
        )
        common.threat_badge(h["threat_model"]["attacked"])
        if a is not None:
            common.threat_badge(a["threat_model"])
    common.model_level(entry, attack, eps, key="home_zoo")

st.subheader("Where to go next")
cols = st.columns(len(PAGES) - 1)
for col, page in zip(cols, PAGES[1:], strict=True):
    with col:
        st.page_link(page.file, label=page.title, icon=page.icon)
        st.caption(page.blurb)
