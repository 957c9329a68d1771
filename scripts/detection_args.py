"""The detector options the mask scripts share (``real_label_precision.py``, ``largest_components.py``,
``mask_coverage.py``): which weights, threshold and verifier, and the runtime, as ``restore`` would run them."""

from __future__ import annotations

import argparse
import dataclasses

from oldphoto.errors import ConfigError
from oldphoto.restore.scratches import ScratchDetection, load_scratch_detection
from oldphoto.runtime import Runtime, make_runtime


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="scratch-unet safetensors file (default: the installed, verified ones)")
    parser.add_argument("--threshold", type=float, help="detector threshold (default: the registry's for the chosen verification)")
    parser.add_argument("--verifier-weights", help="scratch-verifier safetensors file (default: the installed, verified ones)")
    parser.add_argument("--min-score", type=float, help="verifier score a mark needs to be kept (default: the registry's)")
    parser.add_argument(
        "--keep-width", type=float, help="lines at most this thick (px) are kept without being judged (default: the registry's)"
    )
    parser.add_argument(
        "--no-straight-lines", action="store_true", help="without the registry's rule for straight scene-like lines (for a before/after)"
    )
    parser.add_argument(
        "--no-colour-rule", action="store_true", help="without the registry's rule for marks more colourful than their surroundings"
    )
    parser.add_argument(
        "--no-sparse-rule", action="store_true", help="without the registry's rule for photos that show little damage"
    )
    parser.add_argument("--no-verify", action="store_true", help="keep every mark (as restore --no-scratch-verify)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16 (restore's default: auto)")
    parser.add_argument("--threads", type=int, default=1)


def detection_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[ScratchDetection, Runtime]:
    """The loaded detection and its runtime; a setting out of range exits through ``parser.error``."""
    runtime = make_runtime(args.device, args.precision, threads=args.threads)  # sets torch's threads
    try:
        detection = load_scratch_detection(
            runtime,
            verify=not args.no_verify,
            threshold=args.threshold,
            min_score=args.min_score,
            keep_width=args.keep_width,
            straight_lines=not args.no_straight_lines,
            colour=not args.no_colour_rule,
            sparse=not args.no_sparse_rule,
            detector_weights=args.weights,
            verifier_weights=args.verifier_weights,
        )
    except ConfigError as error:
        parser.error(str(error))
    return detection, runtime


def describe(detection: ScratchDetection, args: argparse.Namespace, runtime: Runtime) -> str:
    verifier = (
        "none"
        if detection.verifier is None
        else f"{args.verifier_weights or 'installed'} (score >= {detection.rules.min_score:g}, lines <= {detection.rules.keep_width:g} px kept, "
        f"{line_rule_description(detection)})"
    )
    return (
        f"weights {args.weights or 'installed'}; threshold {detection.threshold:g}, dilation {detection.dilation}; "
        f"verifier {verifier}; {runtime.describe()}"
    )


def line_rule_description(detection: ScratchDetection) -> str:
    rule = detection.rules.straight_lines
    lines = "no straight-line rule" if rule is None else f"straight lines of {rule.min_length:g} px and more need {rule.min_score:g}"
    colour = "no colour rule" if detection.rules.colour is None else f"marks {detection.rules.colour.ratio:g}x as saturated as around them dropped"
    sparse_rule = detection.rules.sparse
    sparse = (
        "no sparse-damage rule"
        if sparse_rule is None
        else f"marks need {sparse_rule.min_score:g}, thin lines {sparse_rule.line_score:g}, on photos whose kept marks "
        f"cover under {sparse_rule.coverage * 100:g}%"
    )
    return f"{lines}, {colour}, {sparse}"


def line_rule_record(detection: ScratchDetection) -> dict | None:
    """The straight-line rule's settings for a script's JSON record (None: the rule was off)."""
    return None if detection.rules.straight_lines is None else dataclasses.asdict(detection.rules.straight_lines)


def colour_rule_record(detection: ScratchDetection) -> dict | None:
    """The colour rule's settings for a script's JSON record (None: the rule was off)."""
    return None if detection.rules.colour is None else dataclasses.asdict(detection.rules.colour)


def sparse_rule_record(detection: ScratchDetection) -> dict | None:
    """The sparse-damage rule's settings for a script's JSON record (None: the rule was off)."""
    return None if detection.rules.sparse is None else dataclasses.asdict(detection.rules.sparse)
