"""Live lab: attack one image, defend it, and watch the label flip and come back."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st

from app import catalog, charts, labels, views
from engine import attacks, datasets, defences, threat
from engine.datasets.synthetic import SPLIT_SIZES as SYNTHETIC_SPLIT_SIZES
from engine.errors import EngineError
from engine.evaluation import query
from engine.images import ALLOWED_FORMATS, decode_image, encode_png, wipe
from engine.lab import LiveAttacker
from engine.params import declaration
from ui import common, widgets

entry = common.current()
st.title("Live lab")
st.markdown(
    "Pick an image, an attack and a defence. The model sees the original, the attacked "
    "image and the attacked image after the defence; every change reruns in a fraction "
    "of a second."
)
if entry.model_dir is None:
    common.no_model(entry)
    st.stop()

meta = entry.meta
assert meta is not None  # an entry with a model has metadata
classes = list(meta.classes)
spec = datasets.REGISTRY[entry.dataset_id]

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]
PRESETS: dict[str, list[dict[str, Any]]] = {
    "Seed-000 chain: NLM → bilateral → guided": defences.to_spec(defences.SEED_CHAIN),
    "WebP + flip": [{"id": "webp_flip", "params": {}}],
    "JPEG": [{"id": "jpeg", "params": {}}],
    "Median blur": [{"id": "median", "params": {}}],
    "No defence": [],
}
ADAPTIVE_SWITCH = "The attacker knows the defence"
#: The recap's best defence at FGSM ε = 8 leads the presets when results exist.
DEMO_ATTACK, DEMO_EPS = "fgsm", 8.0


def _demo() -> tuple[str, list[dict[str, Any]], list[int]]:
    """The recap's best defence at FGSM ε 8 (preset label, chain) and the images it restores."""
    loaded = common.results(entry)
    if loaded is None:
        return "", [], []
    try:
        case = views.demo_case(loaded[0], common.per_image(entry), attack=DEMO_ATTACK, eps=DEMO_EPS)
    except EngineError:
        return "", [], []
    if case is None:
        return "", [], []
    spec_ = case.defence_spec
    members = spec_ if isinstance(spec_, list) else [spec_]
    return f"Best in the recap: {case.defence_label}", members, case.restored


DEMO_LABEL, DEMO_CHAIN, DEMO_IMAGES = _demo()
if DEMO_LABEL:
    PRESETS = {DEMO_LABEL: DEMO_CHAIN, **PRESETS}


@st.cache_data(show_spinner=False, max_entries=64)
def _test_image(dataset_id: str, i: int) -> np.ndarray:
    index = common.test_split(dataset_id)
    assert index is not None
    return index.image(i)


def _apply_preset() -> None:
    """Set the chain and every member's sliders to the chosen preset."""
    members = PRESETS[st.session_state.get("lab_preset", next(iter(PRESETS)))]
    st.session_state["lab_chain"] = [m["id"] for m in members]
    for pos, m in enumerate(members):
        cls = defences.REGISTRY[m["id"]]
        for p in cls.PARAMS:
            value = m["params"].get(p.name, p.default)
            st.session_state[f"lab_def_{pos}_{m['id']}_{p.name}"] = p.kind(value)


# --------------------------------------------------------------------------- image source
def pick_image() -> tuple[np.ndarray | None, int | None, str]:
    """The image to attack, its true class (or None) and a caption."""
    index = common.test_split(entry.dataset_id)
    sources = (["Test image"] if index is not None else []) + ["Upload", "Synthetic shape"]
    source = st.radio("Image", sources, horizontal=True, key="lab_source")
    if source == "Test image":
        assert index is not None
        demo = f"flipped by FGSM ε={DEMO_EPS:g}, restored by the best defence"
        choices = ([demo] if DEMO_IMAGES else []) + ["any class", *classes]
        which = st.selectbox(
            "From",
            choices,
            format_func=lambda c: c if c in (demo, "any class") else f"class {spec.class_title(c)}",
            key="lab_class",
            help="The first choice lists test images that the recap run saw flip under "
            "FGSM and come back with the best defence.",
        )
        if which == demo:
            pool = np.asarray(DEMO_IMAGES)
        elif which == "any class":
            pool = np.arange(len(index))
        else:
            pool = np.flatnonzero(index.labels == classes.index(which))
        n = st.number_input(f"Image number (1–{len(pool)})", 1, len(pool), 1, key="lab_number")
        i = int(pool[int(n) - 1])
        label = int(index.labels[i])
        return (
            _test_image(entry.dataset_id, i),
            label,
            f"test image {i} · true class {classes[label]}",
        )
    if source == "Upload":
        up = st.file_uploader(
            "PNG, JPEG, WebP, BMP or TIFF (kept in memory only, never written to disk)",
            type=UPLOAD_TYPES,
            key="lab_upload",
        )
        if up is None:
            if index is None:
                st.info(
                    f"The {spec.title} images are not on this machine, so upload one "
                    "or try a synthetic shape."
                )
            return None, None, ""
        try:
            image = decode_image(up.getvalue())
        except EngineError as exc:
            st.error(f"This file cannot be used: {exc}")
            return None, None, ""
        truth = st.selectbox(
            "True class (if you know it)",
            [None, *range(len(classes))],
            format_func=lambda i: "unknown" if i is None else classes[i],
            key="lab_upload_label",
        )
        return image, truth, f"upload {up.name} ({image.shape[1]}×{image.shape[0]})"
    last = SYNTHETIC_SPLIT_SIZES["test"] - 1
    n = st.number_input(f"Shape number (0–{last})", 0, last, 0, key="lab_synth")
    image, synth_label = datasets.render_synthetic(0, "test", int(n))
    same = entry.dataset_id == "synthetic"
    if not same:
        st.caption(
            "A generated shape, not a medical image: the model will answer something, "
            "which shows how it behaves far from its training data."
        )
    return image, (int(synth_label) if same else None), f"synthetic shape {n}"


# --------------------------------------------------------------------------- controls
def pick_attack() -> tuple[str, dict[str, Any]]:
    ids = list(attacks.REGISTRY)
    attack = st.selectbox(
        "Attack",
        ids,
        format_func=lambda a: attacks.REGISTRY[a].title,
        key="lab_attack",
        help="\n\n".join(f"**{a.title}**: {a.summary}" for a in attacks.REGISTRY.values()),
    )
    info = attacks.REGISTRY[attack]
    params: dict[str, Any] = {
        "eps": widgets.param_widget(
            declaration(info.params_cls, "eps"),
            key="lab_eps",
            label="ε: largest change per pixel (0–255 levels)",
            help="Fine steps at the low end: ε = 1 is one grey level (0.4 %), ε = 8 is about 3 %.",
        )
    }
    with st.expander(f"{info.title} settings"):
        params |= widgets.declared_params(
            info.params_cls.PARAMS, key=f"lab_{attack}", skip=("eps",), classes=classes
        )
        st.caption(info.paper)
    return attack, params


def pick_defence() -> list[dict[str, Any]]:
    if "lab_chain" not in st.session_state:
        _apply_preset()
    st.selectbox("Defence preset", list(PRESETS), key="lab_preset", on_change=_apply_preset)
    ids = [d for d in defences.REGISTRY if d != "none"]
    chain = st.multiselect(
        "Defence chain (applied in this order)",
        ids,
        key="lab_chain",
        format_func=lambda d: defences.REGISTRY[d].TITLE,
    )
    members = []
    for pos, d in enumerate(chain):
        cls = defences.REGISTRY[d]
        with st.expander(f"{pos + 1}. {cls.TITLE}"):
            params = widgets.declared_params(cls.PARAMS, key=f"lab_def_{pos}_{d}")
        members.append({"id": d, "params": params})
    return members


def pick_attacker(chain: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the attacker knows the defence, and its EOT draws when the defence is random."""
    switch = declaration(LiveAttacker, "adaptive")
    adaptive = bool(widgets.param_widget(switch, key="lab_adaptive", label=ADAPTIVE_SWITCH))
    if not (adaptive and any(defences.REGISTRY[m["id"]].randomised for m in chain)):
        return {"adaptive": adaptive, "eot_samples": None}
    draws = declaration(LiveAttacker, "eot_samples")
    eot = widgets.param_widget(draws, key="lab_eot", label="EOT draws per step")
    return {"adaptive": True, "eot_samples": int(eot)}


@st.cache_data(show_spinner=False, max_entries=64)
def _run_lab(
    model_dir: str,
    stamp: str,
    image: np.ndarray,
    label: int | None,
    attack: str,
    params: dict[str, Any],
    chain: list[dict[str, Any]],
    attacker: dict[str, Any],
) -> Any:
    spec_arg: Any = chain if len(chain) > 1 else (chain[0] if chain else None)
    kwargs = {"label": label, "attack": attack, "attack_params": params, "defence": spec_arg}
    return common.worker().lab(model_dir, image, **kwargs, **attacker)


# --------------------------------------------------------------------------- results
def verdict(res: Any) -> None:
    clean, adv, dfd = res.pred_clean, res.pred_adv, res.pred_defended
    name = res.classes
    if res.adaptive and res.defence != "None":  # aimed at the defended model, not the bare one
        held = dfd.label == clean.label
        (st.success if held else st.error)(
            f"The attacker knew the defence ({res.defence_title}) and attacked through it: "
            f"after the defence the model says **{name[dfd.label]}**"
            + (" as before: it held." if held else f", not {name[clean.label]}: it did not hold.")
        )
    elif not res.flipped:
        st.info(
            f"The attack did **not** change the prediction ({name[clean.label]}) at "
            f"ε = {res.attack_params.get('eps', 0):g}. Try a larger ε or PGD."
        )
    elif res.restored:
        st.success(
            f"The attack flipped **{name[clean.label]} → {name[adv.label]}**; the defence "
            f"({res.defence_title}) **restored {name[dfd.label]}**."
        )
    else:
        st.error(
            f"The attack flipped **{name[clean.label]} → {name[adv.label]}**; after the "
            f"defence ({res.defence_title}) the model says **{name[dfd.label]}**: not restored."
        )
    if res.true_label is not None and clean.label != res.true_label:
        st.warning(
            f"The model already gets this image wrong without any attack "
            f"(true class {name[res.true_label]})."
        )
    common.threat_badge(res.threat_model)


_UNAWARE = "against an attacker who does not know the defence"
_AWARE = "Against one who knows it: **{:.0%}** ({} images of the adaptive sweep)."


def recap_context(res: Any) -> None:
    """How often this attack and defence work across the test set: the precomputed curve."""
    loaded = common.results(entry)
    if loaded is None:
        return
    df = loaded[0]
    if res.adaptive and "adaptive" not in query.threats(df):
        st.info(
            "The result above is for an attacker who knows the defence; the precomputed curve "
            "below is for one who does not (transfer): the defence looks stronger there."
        )
    if res.attack not in query.attacked(df):
        st.caption(f"No precomputed curve for {res.attack_title} on this model.")
        return
    key, note = views.setting_for(df, res.defence_spec or None, attack=res.attack)
    st.subheader("How often does this work across the test set?")
    keys = [query.NO_DEFENCE] + ([key] if key and key != query.NO_DEFENCE else [])
    eps = float(res.attack_params.get("eps", 0))
    fig = charts.metric_vs_eps(df, metric="accuracy", attack=res.attack, defence_keys=keys)
    fig.add_vline(
        x=eps,
        line={"color": "#c51b7d", "dash": "dot", "width": 2},
        annotation_text=f"this image: ε {eps:g}",
        annotation_position="top",
    )
    c1, c2 = st.columns([3, 2])
    with c1:
        widgets.chart(fig, key="lab_recap_chart", filename=f"{entry.key}_{res.attack}_lab")
    with c2:
        used, eps_note = query.resolve_eps(df, res.attack, eps, query.NO_DEFENCE)
        plain = query.find_row(df, res.attack, used, query.NO_DEFENCE)
        lines: list[str] = []
        adaptive_labels: list[str] = []
        if plain is not None:
            lines.append(
                f"Across **{int(plain['n_images'])}** test images, {res.attack_title} at "
                f"ε = {used:g} leaves **{plain['accuracy']:.0%}** of them correct without "
                "a defence."
            )
        if key is None:
            lines.append(f"No precomputed curve for this defence: {note}.")
        elif key != query.NO_DEFENCE:
            row = query.find_row(df, res.attack, used, key)
            name = labels.setting_label(key)
            if row is not None:
                lines.append(f"With **{name}**: **{row['accuracy']:.0%}** {_UNAWARE}.")
            known = query.find_row(df, res.attack, used, key, threat="adaptive")
            if known is not None and threat.is_adaptive(str(known["threat_model"])):
                adaptive_labels.append(str(known["threat_model"]))
                lines.append(_AWARE.format(known["accuracy"], known["n_images"]))
            if note:
                lines.append(f"(Nearest precomputed setting: {note}.)")
        if eps_note:
            lines.append(f"({eps_note}.)")
        st.markdown("\n\n".join(lines))
        common.threat_badge(threat.THREAT_TRANSFER)
        for label in adaptive_labels:
            common.threat_badge(label)


def show(res: Any, caption: str, round_trip_ms: float) -> None:
    verdict(res)
    name = res.classes

    def label_of(p: Any) -> str:
        return f"{name[p.label]} {p.confidence:.0%}"

    cols = st.columns(4)
    cols[0].image(res.original, caption=f"Original · {label_of(res.pred_clean)}", width="stretch")
    gain = f"Perturbation ×{res.perturbation_gain:g}"
    cols[1].image(res.perturbation_view, caption=gain, width="stretch")
    how = "through the defence" if res.adaptive else "on the undefended model"
    cols[2].image(
        res.adversarial, caption=f"Attacked {how} · {label_of(res.pred_adv)}", width="stretch"
    )
    mirror_note = (
        " · mirrored left-right by the defence, as the model sees it (the comparisons "
        "below flip it back to line up with the original)"
        if res.mirrored
        else ""
    )
    cols[3].image(
        res.defended,
        caption=f"Defended · {label_of(res.pred_defended)}{mirror_note}",
        width="stretch",
    )
    st.caption(
        f"{caption} · shown at the model's input size "
        f"({res.original.shape[1]}×{res.original.shape[0]}, from "
        f"{res.original_size[1]}×{res.original_size[0]}). Perturbation: {res.perturbation_scale}."
    )

    preds = (res.pred_clean, res.pred_adv, res.pred_defended)
    titles = ("Original", "Attacked", "Defended")
    for col, pred, title in zip(st.columns(3), preds, titles, strict=True):
        with col:
            st.plotly_chart(
                charts.topk_bars(pred.probs, name, k=3, title=title, true_label=res.true_label),
                config={"displayModeBar": False},
                key=f"lab_bars_{title}",
            )

    with common.friendly_errors("The precomputed curve cannot be shown"):
        recap_context(res)

    st.subheader("Before / after")
    c1, c2, _ = st.columns([1, 1.4, 0.6])
    pair = c1.radio(
        "Compare",
        ["original | defended", "original | attacked", "attacked | defended"],
        key="lab_pair",
    )
    pos = c1.slider("Split position", 0, 100, 50, key="lab_wipe")
    # like with like: a mirrored defended image is flipped back to line up with the others
    images = dict(original=res.original, attacked=res.adversarial, defended=res.defended_aligned)
    left, right = (s.strip() for s in pair.split("|"))
    c2.image(
        wipe(images[left], images[right], pos / 100),
        caption=f"left: {left}, right: {right}",
        width="stretch",
    )
    if res.mirrored and "defended" in (left, right):
        c2.caption(
            "The defence mirrors the image left-right; it is flipped back here so that both "
            "sides line up (the model saw it mirrored)."
        )

    m = st.columns(5)
    m[0].metric("L∞ change", f"{res.linf:g} levels")
    m[1].metric("L2 change", f"{res.l2:.0f}")
    m[2].metric("Pixels changed", f"{res.l0_share:.0%}")
    m[3].metric(
        "Attacked vs original",
        f"{res.psnr_adv:.1f} dB",
        f"SSIM {res.ssim_adv:.3f}",
        delta_color="off",
        delta_arrow="off",
        help="PSNR (higher = closer) and SSIM (1 = identical) against the original.",
    )
    m[4].metric(
        "Defended vs original",
        f"{res.psnr_defended:.1f} dB",
        f"SSIM {res.ssim_defended:.3f}",
        delta_color="off",
        delta_arrow="off",
        help="The defence also changes the image: how far it moved from the original."
        + (
            " The defence mirrors the image, so it is flipped back before it is compared "
            "(a mirror alone would look like a large change)."
            if res.mirrored
            else ""
        ),
    )
    t = res.timings
    st.caption(
        "Time: "
        + " · ".join(f"{k} {t[k]:.0f} ms" for k in ("resize", "attack", "defence", "predict"))
        + f" · total {t['total']:.0f} ms in the model worker, {round_trip_ms:.0f} ms "
        "round trip (cached results return instantly)."
    )
    eps_text = f"eps{res.attack_params.get('eps', 0):g}"
    for col, (what, image) in zip(
        st.columns(2),
        (("attacked", res.adversarial), ("defended", res.defended)),
        strict=True,
    ):
        col.download_button(
            f"Download the {what} image (PNG, lossless)",
            encode_png(image),
            file_name=f"{entry.key}_{res.attack}_{eps_text}_{what}.png",
            mime="image/png",
            key=f"lab_dl_{what}",
        )
    st.caption(
        "Accepted uploads: " + ", ".join(ALLOWED_FORMATS) + ". The recap curves say how "
        "often this works across the test set."
    )


@st.fragment
def lab_panel() -> None:
    left, right = st.columns([1, 3], gap="large")
    with left:
        image, label, caption = pick_image()
        attack, params = pick_attack()
        chain = pick_defence()
        attacker = pick_attacker(chain)
        live = st.toggle(
            "Update as I move the controls",
            True,
            key="lab_live",
            help="Off: nothing runs until you click the button (for slow attacks such as "
            "PGD with many steps).",
        )
        clicked = st.button("⚡ Attack and defend", type="primary", key="lab_run", width="stretch")
    with right:
        if image is None:
            st.info("Choose or upload an image to start.")
            return
        if not (live or clicked):
            if "lab_last" in st.session_state:
                st.caption("Showing the last result: click **Attack and defend** to update it.")
                show(*st.session_state["lab_last"])
            else:
                st.info("Click **Attack and defend** to run.")
            return
        with common.friendly_errors("The live attack failed"):
            with st.spinner("Loading the model in the worker (about 10 s the first time)…"):
                common.ensure_loaded(entry.model_dir)
            t0 = time.perf_counter()
            res = _run_lab(
                str(entry.model_dir),
                meta.model_sha256,
                image,
                label,
                attack,
                params,
                chain,
                attacker,
            )
            st.session_state["lab_last"] = (res, caption, 1000 * (time.perf_counter() - t0))
            show(*st.session_state["lab_last"])


lab_panel()
st.caption(
    f"Model: {entry.title} ({meta.input_size} px). "
    f"{threat.TRANSFER.title}: {threat.TRANSFER.explanation} "
    f"{threat.ADAPTIVE.title}: {threat.ADAPTIVE.explanation} "
    f"To train another backbone: `{catalog.train_command(entry.dataset_id, 'mobilenet_v3_small')}`."
)
