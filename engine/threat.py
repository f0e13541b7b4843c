"""Threat-model labels: who knew what when an adversarial image was made.

Every robustness number the project shows carries one of these labels
(house rule: honesty is a feature). A defence that looks strong against
attacks crafted on the undefended model can fall to an adaptive attack that
knows it (Athalye, Carlini and Wagner, 2018).
"""

from __future__ import annotations

__all__ = ["THREAT_ADAPTIVE", "THREAT_CLEAN", "THREAT_TRANSFER", "explain"]

THREAT_CLEAN = "clean (no attack)"
THREAT_TRANSFER = "crafted on the undefended model, tested through the defence"
THREAT_ADAPTIVE = "adaptive (through the defence)"

_EXPLAIN = {
    THREAT_CLEAN: "Unmodified test images: the price a defence costs when nobody attacks.",
    THREAT_TRANSFER: (
        "The attacker knows the model but not the defence: the adversarial image is made "
        "on the undefended model and then passed through the defence. An attacker who "
        "knows the defence (adaptive attack) usually does better, so read these numbers "
        "as an upper bound on what the defence achieves."
    ),
    THREAT_ADAPTIVE: (
        "The attacker knows the defence and attacks through it (BPDA gradient stand-ins "
        "for non-differentiable filters): the honest test of a defence."
    ),
}


def explain(label: str) -> str:
    """A plain-language sentence for a threat-model label (empty if unknown)."""
    return _EXPLAIN.get(label, "")
