"""The words of :mod:`engine.evaluation.sanity`'s findings, one function per check.

Each function returns ``(message, explanation)``: the message for researchers
(cells, numbers, likely cause, remedy), the explanation in plain language for
stakeholders, both with the exact numbers. Names arrive already formatted
(``a``: the attack, ``s``: the defence setting, ``tm``: the threat model's
one-word title), so the checks stay about numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.attacks import REGISTRY as ATTACKS
from engine.evaluation.keys import NO_DEFENCE
from engine.params import format_number

__all__ = [
    "adaptive_text",
    "attack_name",
    "chance_text",
    "collapse_text",
    "eps_list",
    "iterative_text",
    "majority_text",
    "monotone_text",
    "no_large_eps_text",
    "pct",
    "setting_name",
]

Text = tuple[str, str]


def pct(x: float) -> str:
    """A share as a percentage with one decimal: ``0.4936`` -> ``"49.4 %"``."""
    return f"{100 * x:.1f} %"


def _e(eps: float) -> str:
    return format_number(float(eps))


def eps_list(values: Iterable[float]) -> str:
    """Budgets for a sentence: ``"1, 2, 4"``."""
    return ", ".join(map(_e, values))


def setting_name(key: str) -> str:
    """A defence setting's name where the caller gives none: its key, or "no defence"."""
    return "no defence" if key == NO_DEFENCE else key


def attack_name(attack: str) -> str:
    """An attack's title from :data:`engine.attacks.REGISTRY` (upper-cased id if unknown)."""
    info = ATTACKS.get(attack)
    return info.title if info is not None else attack.upper()


def monotone_text(
    a: str, s: str, tm: str, low: tuple[float, float], high: tuple[float, float], single: bool
) -> Text:
    """Accuracy ``low = (eps, acc)`` rises to ``high`` on one curve."""
    (e_lo, lo), (e_hi, hi) = low, high
    cure = (
        "a single step overshoots, or leaks the label, at large ε: use PGD"
        if single
        else "the attack has not converged (more steps, restarts, a smaller step) or the "
        "gradient is masked"
    )
    message = (
        f"{a}, {s}, {tm}: accuracy rises from {pct(lo)} at ε = {_e(e_lo)} to {pct(hi)} at "
        f"ε = {_e(e_hi)} (+{100 * (hi - lo):.1f} points). A larger budget contains every "
        f"smaller one, so the attack failed: {cure}."
    )
    explanation = (
        f"With {s}, the {a} attack leaves {pct(hi)} of the images correct at strength "
        f"{_e(e_hi)} but only {pct(lo)} at strength {_e(e_lo)}. A stronger attack cannot really "
        "do less harm, so the higher number shows a flaw of the attack, not protection"
        + (": trust the many-step attack (PGD) instead." if single else ".")
    )
    return message, explanation


def iterative_text(
    a: str, b: str, s: str, tm: str, cells: str, worst: tuple[str, str, str], expected: bool
) -> Text:
    """Iterative attack ``a`` is weaker than single-step ``b``; ``worst = (eps, acc_a, acc_b)``."""
    e, acc, acc_b = worst
    message = f"{a} is weaker than {b} ({s}, {tm}) {cells}. " + (
        "Expected of transfer attacks through a defence: iterative examples fit the undefended "
        "model and transfer worse (Kurakin, Goodfellow & Bengio 2017); only the adaptive attack "
        "tests the defence."
        if expected
        else "An iterative attack must beat one step: check its steps and step size, add "
        "restarts, or look for gradient masking."
    )
    explanation = (
        f"With {s}, the many-step attack {a} should do at least as much harm as the one-step "
        f"{b}, but at strength {e} it leaves {acc} of the images correct against {acc_b}. "
        + (
            "Both attacks were made without knowing the defence, and many-step attacks carry "
            "over to a defence less well, so this is expected; neither number shows how strong "
            "the defence really is."
            if expected
            else "The stronger attack was not run well enough, so its numbers flatter the model."
        )
    )
    return message, explanation


def adaptive_text(a: str, s: str, backward: str, cells: str, worst: tuple[str, str, str]) -> Text:
    """The adaptive ``a`` (through ``backward``) is weaker than the transfer one."""
    e, acc, acc_t = worst
    message = (
        f"{a} adaptive ({backward}) is weaker than {a} transfer with {s} {cells}. An attacker "
        "who knows the defence can always use the transfer images, so the adaptive attack has "
        "not converged: try another gradient stand-in, more steps or more EOT samples."
    )
    explanation = (
        f"With {s}, an attacker who knows the defence should do at least as much harm as one "
        f"who does not, but at strength {e} leaves {acc} of the images correct against "
        f"{acc_t}: until that attack is improved, the lower number is the one to believe."
    )
    return message, explanation


def no_large_eps_text(top: float, large: float) -> Text:
    """The table's largest budget ``top`` is below ``large``."""
    message = (
        f"The largest ε in the table is {_e(top)}, below {_e(large)}: no budget is large enough "
        "to test for gradient masking (a very large ε must bring accuracy to chance)."
    )
    explanation = (
        "The table stops at attacks too weak to show whether an attack could always win given "
        "enough strength, so gradient masking cannot be ruled out."
    )
    return message, explanation


def chance_text(
    a: str, s: str, tm: str, eps: float, acc: float, base: tuple[float, int], why: list[str]
) -> Text:
    """At the largest ``eps`` accuracy ``acc`` stays above ``base = (no-skill rate, classes)``."""
    rate, k = base
    message = (
        f"{a}, {s}, {tm}: at the largest ε = {_e(eps)} accuracy is still {pct(acc)}, above the "
        f"no-skill rate {pct(rate)} (majority class; chance with {k} classes is {pct(1 / k)}): "
        + "; ".join(why)
        + "."
    )
    explanation = (
        f"Even at strength {_e(eps)}, where the attacker may change the image a lot, "
        f"{pct(acc)} of the images stay correct with {s}: more than the {pct(rate)} a model "
        "scores by always giving the most common answer. An attack this strong should win; when "
        "it does not, it is usually blocked from the model's weak spots rather than the model "
        "being safe."
    )
    return message, explanation


def majority_text(images: str, name: str, count: int, n: int, k: int) -> Text:
    """``count`` of the ``n`` ``images`` (e.g. ``"test images"``) are of class ``name``."""
    rate = pct(count / n)
    message = (
        f"Majority-class rate of the {n} {images}: {rate} ({name}, {count} of {n}); chance with "
        f"{k} classes is {pct(1 / k)}. An accuracy at or below {rate} shows no skill."
    )
    explanation = (
        f"{rate} of the {images} are {name}, so a model that always answers “{name}” scores "
        f"{rate} without looking at the image: only accuracy above that line shows skill."
    )
    return message, explanation


def collapse_text(
    s: str,
    name: str,
    attacked: tuple[str, str, tuple[float, ...]] | None,
    numbers: tuple[float, float, float],
    undefended: bool,
) -> Text:
    """Predictions collapse onto class ``name``: on clean images (``attacked=None``) or under
    ``attacked = (attack, threat-model title, budgets)``; ``numbers = (share predicted,
    accuracy, majority-class rate)``."""
    share, acc, rate = (pct(x) for x in numbers)
    if attacked is None:
        where, when = "on clean images", "when nobody attacks"
    else:
        a, tm, eps = attacked
        where = f"under {a} ({tm}) at ε = {eps_list(eps)}"
        when = f"under the {a} attack at strength {eps_list(eps)}"
    lost = (
        "the attack has pushed every answer to one class"
        if undefended
        else "the defence has not protected the model, it has stopped it from looking"
    )
    message = (
        f"{s} {where}: up to {share} of the predictions are {name} (accuracy {acc}, "
        f"majority-class rate {rate}): the confusion matrix has collapsed onto one class, so "
        "the accuracy measures no skill."
    )
    explanation = (
        f"With {s}, the model answers “{name}” for {share} of the images {when}, so its "
        f"{acc} accuracy is what always saying “{name}” earns: {lost}."
    )
    return message, explanation
