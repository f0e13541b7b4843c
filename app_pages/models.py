"""Models & data: model cards, dataset cards, and how each precomputed result was made."""

from __future__ import annotations

import streamlit as st

from app import cards, catalog, charts
from engine import threat
from engine.images import thumbnail
from ui import common

entry = common.current()
st.title("Models & data")
st.markdown(
    "Where every number in this dashboard comes from: the model and how it was trained, "
    "the data and its licence, and the run that produced the recap curves."
)

tab_model, tab_data, tab_results, tab_all = st.tabs(
    ["Model card", "Dataset card", "How the results were made", "All models"]
)

# --------------------------------------------------------------------------- model card
with tab_model:
    if entry.model_dir is None:
        common.no_model(entry)
    else:
        with common.friendly_errors("The model card cannot be shown"):
            meta = entry.meta
            history = cards.read_history(entry.model_dir)
            left, right = st.columns([3, 2])
            with left:
                st.markdown(cards.model_card(entry.model_dir))
            with right:
                cm = meta.clean_metrics.get("confusion") if meta else None
                if cm:
                    st.plotly_chart(
                        charts.confusion_heatmap(
                            cm, meta.classes, title="Clean test set: confusion matrix"
                        ),
                        config=charts.CHART_CONFIG,
                        key="models_cm",
                    )
                cmb = meta.clean_metrics.get("confusion_binary") if meta else None
                if cmb:
                    st.plotly_chart(
                        charts.confusion_heatmap(
                            cmb, ["healthy", "sick"], title="Patient view (healthy vs sick)"
                        ),
                        config=charts.CHART_CONFIG,
                        key="models_cmb",
                    )
            if history:
                st.plotly_chart(
                    charts.training_curves(history),
                    config=charts.CHART_CONFIG,
                    key="models_curves",
                )


# --------------------------------------------------------------------------- dataset card
@st.cache_data(show_spinner="Indexing the dataset…", max_entries=16)
def _card(dataset_id: str) -> cards.DatasetCard:
    return cards.dataset_card(dataset_id)


@st.cache_data(show_spinner="Reading sample images…", max_entries=8)
def _samples(dataset_id: str, per_class: int) -> dict[str, list]:
    index = common.test_split(dataset_id)
    assert index is not None  # only called when the dataset card found the data
    picks = cards.sample_refs(index, per_class=per_class)
    return {name: [thumbnail(index.image(i), 112) for i in idx] for name, idx in picks.items()}


with tab_data, common.friendly_errors("The dataset card cannot be shown"):
    card = _card(entry.dataset_id)
    spec = card.spec
    st.subheader(spec.title)
    st.markdown(spec.description)
    if spec.caveat:
        st.warning(spec.caveat, icon="⚠️")
    c1, c2 = st.columns(2)
    c1.markdown(f"**Licence:** {spec.licence or 'not stated'}")
    c1.markdown(f"**Credit:** {spec.attribution or 'not stated'}")
    if spec.positive:
        c2.markdown(
            "**Patient view:** sick = "
            + ", ".join(spec.class_title(c) for c in spec.positive)
            + "; every other class counts as healthy."
        )
    if card.present:
        c2.markdown(f"**Found at:** `{card.location}`")
        st.plotly_chart(
            charts.class_counts(card.counts, spec), config=charts.CHART_CONFIG, key="ds_counts"
        )
        per_class = st.slider("Samples per class", 1, 8, 4, key="models_per_class")
        grid = _samples(entry.dataset_id, per_class)
        for name, images in grid.items():
            st.caption(spec.class_title(name))
            st.image(images, width=112)
        st.caption(
            "Images are read from your local copy of the data; none is shipped with the project."
        )
    else:
        st.info(card.location)
    st.markdown("**How to get it**")
    st.code(card.how_to_get, language="bash" if "python -m" in card.how_to_get else None)

# --------------------------------------------------------------------------- provenance
with tab_results:
    status = common.results_status(entry)
    loaded = common.results(entry)
    if loaded is None:
        st.info("No precomputed recap results for this model.")
        if entry.model_dir is not None:
            st.code(catalog.recap_command(entry), language="bash")
    else:
        _, manifest = loaded
        if status.ok:
            st.success(status.message(), icon="✅")
        else:
            st.warning(status.message(), icon="⚠️")
            st.markdown("Recompute (resumes where it stopped):")
            st.code(catalog.recap_command(entry), language="bash")
        model = manifest.get("model", {})
        data = manifest.get("data", {})
        git = manifest.get("git", {})
        spec = manifest.get("spec", {})
        st.markdown(
            "\n".join(
                [
                    f"- **Status:** {manifest.get('status')} "
                    f"({manifest.get('rows')} rows), {manifest.get('started')} → "
                    f"{manifest.get('ended')}, {manifest.get('elapsed_s', 0) / 60:.0f} min",
                    f"- **Engine:** {manifest.get('engine_version')}, commit "
                    f"`{str(git.get('commit', ''))[:10]}`"
                    + (" (uncommitted changes)" if git.get("dirty") else ""),
                    f"- **Model:** `{model.get('path')}`, SHA-256 "
                    f"`{str(model.get('model_sha256', ''))[:16]}…`",
                    f"- **Data:** {data.get('dataset_id', '')} / {data.get('split', '')}, "
                    f"{data.get('n_images', '')} images, split fingerprint "
                    f"`{data.get('fingerprint', '')}`",
                    f"- **Spec:** `{spec.get('path', '')}` (SHA-256 "
                    f"`{str(spec.get('sha256', ''))[:16]}…`)",
                    f"- **Seeds:** {manifest.get('seeds')}",
                ]
            )
        )
        for label in manifest.get("threat_models", {}).values():
            common.threat_badge(label)
        extra = manifest.get("adaptive_sweep")
        if extra:
            e_data, e_spec, e_git = (
                extra.get("data", {}),
                extra.get("spec", {}),
                extra.get("git", {}),
            )
            st.markdown(
                "\n".join(
                    [
                        "**Adaptive sweep** (attacks crafted through each defence, in "
                        "`adaptive/` beside the tables above):",
                        f"- **Status:** {extra.get('status')} ({extra.get('rows')} rows), "
                        f"{extra.get('elapsed_s', 0) / 60:.0f} min, commit "
                        f"`{str(e_git.get('commit', ''))[:10]}`",
                        f"- **Images:** {e_data.get('n_images', '')} of "
                        f"{e_data.get('split_size', '')} "
                        f"{e_data.get('split', '')} images, a seeded stratified subset "
                        f"(seed {extra.get('seeds', {}).get('image_subset', '')}; the "
                        "positions are in its manifest)",
                        f"- **Spec:** `{e_spec.get('path', '')}`",
                    ]
                )
            )
            entries = extra.get("threat_models", {}).get("adaptive") or []
            found = [lab for e in entries for lab in (e.get("labels") or {}).values()]
            for label in dict.fromkeys(found):
                common.threat_badge(str(label))
        with st.expander("Full manifest (JSON)"):
            st.json(manifest, expanded=False)
        with st.expander("Spec file"):
            st.code(spec.get("text", ""), language="toml")

# --------------------------------------------------------------------------- all models
with tab_all:
    rows = []
    for e in catalog.entries():
        m = e.meta.clean_metrics if e.meta else {}
        rows.append(
            {
                "model": e.title,
                "training": e.variant_title,
                "where": "shipped" if e.shipped else "trained here",
                "weights": e.meta.weights if e.meta else None,
                "input px": e.meta.input_size if e.meta else None,
                "clean accuracy": m.get("accuracy"),
                "macro recall": m.get("macro_recall"),
                "specificity": m.get("specificity"),
                "test images": m.get("n_images"),
                "recap results": common.results_status(e).state,
            }
        )
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            "clean accuracy": st.column_config.ProgressColumn(format="percent", max_value=1),
            "macro recall": st.column_config.ProgressColumn(format="percent", max_value=1),
            "specificity": st.column_config.ProgressColumn(
                format="percent",
                max_value=1,
                help="Healthy images called healthy (the patient view; empty where the "
                "dataset has no sick classes).",
            ),
        },
    )
    st.caption(threat.explain(threat.THREAT_CLEAN))
