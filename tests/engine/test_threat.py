"""engine.threat: the threat-model vocabulary, its stored labels and their explanations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from engine import threat
from engine.errors import ParamError
from engine.threat import (
    ADAPTIVE,
    CLEAN,
    THREAT_MODELS,
    TRANSFER,
    AdaptiveAttacker,
    adaptive_label,
    explain,
    is_adaptive,
    parse,
    parse_adaptive,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "assets" / "results").glob("*/results.csv"))


def test_stored_labels_never_change():
    # the shipped tables hold these strings: changing them would orphan every row
    assert threat.THREAT_CLEAN == "clean (no attack)"
    assert threat.THREAT_TRANSFER == "crafted on the undefended model, tested through the defence"
    assert threat.THREAT_ADAPTIVE == "adaptive: crafted through the defence"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_every_shipped_label_parses_to_a_known_threat_model(path):
    labels = set(pd.read_csv(path, usecols=["threat_model", "eps"])["threat_model"])
    assert labels  # the scan finds what it looks for
    assert {parse(label).id for label in labels} <= set(THREAT_MODELS)
    manifest = json.loads((path.parent / "manifest.json").read_text())
    for key, label in manifest["threat_models"].items():
        if key == "adaptive":  # a variant's sweep: both threat models, one entry per attack
            found = [lab for entry in label for lab in entry["labels"].values()]
            assert found and {parse(lab).id for lab in found} == {"adaptive"}
        else:
            assert parse(label) in THREAT_MODELS.values()


def test_shipped_rows_clean_at_eps_zero_transfer_above():
    df = pd.read_csv(SHIPPED[0], usecols=["threat_model", "eps"])
    ids = [parse(label).id for label in df["threat_model"]]
    assert all((i == "clean") == (e == 0) for i, e in zip(ids, df["eps"], strict=True))
    assert set(ids) == {"clean", "transfer"}


def test_records_round_trip_and_have_words():
    assert list(THREAT_MODELS) == ["clean", "transfer", "adaptive", "black_box"]
    for model in THREAT_MODELS.values():
        assert parse(model.label) is model
        assert explain(model.label) == model.explanation
        assert model.title and model.description
        # one plain sentence for stakeholders
        assert model.explanation.endswith(".")
        assert ". " not in model.explanation.rstrip(".")
    assert TRANSFER.title == "Transfer" and ADAPTIVE.title == "Adaptive"


@pytest.mark.parametrize(
    ("backward", "eot", "label"),
    [
        ("BPDA identity", 8, "adaptive: crafted through the defence (BPDA identity, EOT 8)"),
        ("exact", 1, "adaptive: crafted through the defence (exact)"),
        (
            "exact → BPDA identity",
            1,
            "adaptive: crafted through the defence (exact → BPDA identity)",
        ),
        ("Gaussian stand-in, sigma 1", 4, None),
        ("bpda-identity", 8, "adaptive: crafted through the defence (bpda-identity, EOT 8)"),
        ("bpda-identity+gaussian", 1, None),  # a chain's kinds, as engine.defences joins them
        # the Gaussian stand-in of engine.attacks.adaptive.StandIn
        ("bpda-gaussian σ1", 1, "adaptive: crafted through the defence (bpda-gaussian σ1)"),
        (
            "bpda-gaussian σ0.5",
            8,
            "adaptive: crafted through the defence (bpda-gaussian σ0.5, EOT 8)",
        ),
        ("", 1, "adaptive: crafted through the defence"),
    ],
)
def test_adaptive_label_round_trips(backward, eot, label):
    made = adaptive_label(backward, eot=eot)
    if label is not None:
        assert made == label
    assert parse(made) is ADAPTIVE
    assert is_adaptive(made)
    assert parse_adaptive(made) == AdaptiveAttacker(backward, eot)
    assert explain(made) == ADAPTIVE.explanation


def test_every_defence_names_a_backward_pass_a_label_can_carry():
    from engine.defences import REGISTRY, seed_chain

    for cls in REGISTRY.values():
        backward = getattr(cls, "backward", "")
        if isinstance(backward, str) and backward:
            assert parse_adaptive(adaptive_label(backward, eot=4)) == AdaptiveAttacker(backward, 4)
    chain = seed_chain()
    assert parse_adaptive(adaptive_label(chain.backward)) == AdaptiveAttacker(chain.backward)
    # and so does every stand-in an adaptive attacker may choose
    from engine.attacks.adaptive import STAND_INS, StandIn, threat_label

    for name in STAND_INS:
        for sigma in (0.1, 1.0, 2.5):
            stand_in = StandIn(stand_in=name, stand_in_sigma=sigma)
            label = threat_label(chain, 1, stand_in)
            assert parse(label) is ADAPTIVE
            assert parse_adaptive(label) == AdaptiveAttacker(stand_in.backward)


def test_non_adaptive_labels_are_not_adaptive():
    for label in (CLEAN.label, TRANSFER.label, threat.THREAT_BLACK_BOX, "white box"):
        assert not is_adaptive(label)
        assert parse_adaptive(label) is None
    assert not is_adaptive(ADAPTIVE.label + " (BPDA identity")  # unbalanced: not a label


def test_unknown_label():
    assert explain("white box") == ""
    assert explain(None) == ""  # type: ignore[arg-type]
    with pytest.raises(ParamError, match=r"Unknown threat-model label 'white box'; known: "):
        parse("white box")


@pytest.mark.parametrize(
    ("backward", "eot", "match"),
    [
        ("BPDA (identity)", 1, r"'backward' must be a string without parentheses"),
        ("BPDA, EOT 3", 1, r"without parentheses, ', EOT'"),
        ("BPDA identity", 0, r"'eot' must be a positive integer; got 0"),
        ("BPDA identity", True, r"'eot' must be a positive integer; got True"),
        ("", 8, r"EOT samples need a named backward pass"),
    ],
)
def test_adaptive_label_rejects_what_cannot_round_trip(backward, eot, match):
    with pytest.raises(ParamError, match=match):
        adaptive_label(backward, eot=eot)
