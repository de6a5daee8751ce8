"""The `keras-ssl` command's front door: its options, checked before anything heavy loads.

This module imports the standard library only, so that `keras-ssl --help` and a
mistyped option answer at once (TensorFlow takes seconds to import). A command
that runs imports `keras_ssl.cli`, which holds the commands themselves.
"""

import argparse
import math
import os
import sys

# `keras_ssl.algorithms.names()`, listed here so that --help needs no import of
# Keras; tests/test_cli_options.py checks that the two agree.
ALGORITHMS = ("fixmatch", "flexmatch", "freematch", "mean_teacher", "self_training",
              "softmatch")
METHODS = ("supervised", "default") + ALGORITHMS

DESCRIPTION = """Semi-supervised learning for Keras from the command line.

  keras-ssl demo                                   supervised vs the default, on digits
  keras-ssl train LABELED --unlabeled UNLABELED --out RUN
  keras-ssl evaluate RUN/model.keras TEST_FOLDER   accuracy on a labeled folder
  keras-ssl predict RUN/model.keras IMAGES         a CSV of predicted classes

docs/cli.md describes every command and option."""


def _number(kind, low=None, high=None, low_open=False, high_open=False, what=""):
    """An argparse type: `kind` within the given bounds; one-line errors name the range."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}{what}; "
                f"received {text!r}") from None
        bad = ((low is not None and (value <= low if low_open else value < low))
               or (high is not None and (value >= high if high_open else value > high))
               or not math.isfinite(value))
        if bad:
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                bounds.append(f"{'<' if high_open else '<='} {high:g}")
            raise argparse.ArgumentTypeError(
                f"must be {' and '.join(bounds)}{what}; received {text}")
        return value

    return parse


def _list_of(kind, allowed=None):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list; received "
                                             f"{text!r}")
        try:
            items = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers; received {text!r}") from None
        if allowed is not None:
            unknown = [item for item in items if item not in allowed]
            if unknown:
                raise argparse.ArgumentTypeError(
                    f"unknown {', '.join(map(repr, unknown))}; choose from "
                    f"{', '.join(allowed)}")
        return items

    return parse


POSITIVE_INT = _number(int, low=1)
COUNT = _number(int, low=0)
MINUTES = _number(float, low=0, low_open=True, what=" (minutes)")
FRACTION = _number(float, low=0, high=1, low_open=True, high_open=True)
SIDE = _number(int, low=8, high=4096, what=" (pixels)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ssl", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="supervised vs the default algorithm on scikit-learn's digits (no "
                     "download); a table, a PNG and a JSON")
    demo.add_argument("--seeds", type=_list_of(int), default=[0, 1, 2],
                      help="comma-separated seeds (default 0,1,2)")
    demo.add_argument("--steps", type=POSITIVE_INT, default=1000,
                      help="training steps per run (default 1000)")
    demo.add_argument("--labels-per-class", type=POSITIVE_INT, default=2,
                      help="labeled images per class (default 2)")
    demo.add_argument("--methods", type=_list_of(str, METHODS),
                      default=["supervised", "default"],
                      help="comma-separated, from: " + ", ".join(METHODS)
                      + " (default supervised,default)")
    demo.add_argument("--threshold", type=FRACTION, default=0.95,
                      help="confidence threshold of the 'fixmatch' method (default 0.95)")
    demo.add_argument("--source", default="array",
                      choices=["array", "tfdata", "generator", "zipped"],
                      help="how fit gets the images: numpy arrays (default), tf.data "
                           "datasets, a generator of unlabeled batches, or one zipped "
                           "tf.data dataset")
    demo.add_argument("--out", default="results", help="folder for the PNG and JSON "
                                                       "(default results)")
    demo.add_argument("--verbose", type=COUNT, default=0,
                      help="Keras progress: 0 none (default), 1 bars, 2 a line per epoch")

    train = sub.add_parser(
        "train", help="train on a labeled folder (one sub-folder per class) and unlabeled "
                      "images; writes model.keras, report.md, charts and run.json")
    train.add_argument("labeled_dir", help="one sub-folder of images per class")
    train.add_argument("--unlabeled", metavar="DIR",
                       help="folder of unlabeled images (sub-folders are read too); "
                            "without it, supervised training only")
    train.add_argument("--out", required=True, metavar="DIR",
                       help="output folder: new or empty (or an interrupted run's, which "
                            "is continued), unless --overwrite; a checkpoint is kept in "
                            "DIR/.checkpoint each epoch while training")
    train.add_argument("--overwrite", action="store_true",
                       help="write into an --out folder that already holds files (an "
                            "interrupted run there starts over)")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --out (the same command "
                            "without it does too); an error if there is none")
    train.add_argument("--model", default="cnn",
                       help="cnn, mobilenet, efficientnet (built from scratch), or a .keras "
                            "file that takes raw 0-255 pixels (default cnn)")
    train.add_argument("--image-size", type=SIDE, metavar="N",
                       help="resize every image to N x N (default: the labeled images' "
                            "size, at most 128)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=MINUTES, metavar="M",
                        help="wall-time budget of the whole command (reading, training, "
                             "the baseline, writing)")
    budget.add_argument("--epochs", type=POSITIVE_INT, metavar="N",
                        help="upper bound on epochs (default 100; the plateaus end "
                             "training earlier)")
    train.add_argument("--baseline", action="store_true",
                       help="also train the supervised baseline (half of --minutes each)")
    train.add_argument("--algorithm", choices=ALGORITHMS, metavar="NAME",
                       help="one of " + ", ".join(ALGORITHMS)
                       + " (default: the library's default, self_training)")
    train.add_argument("--batch-size", type=POSITIVE_INT, metavar="N",
                       help="labeled images per step (default: from the data, at most 32)")
    train.add_argument("--unlabeled-ratio", type=POSITIVE_INT, metavar="N",
                       help="unlabeled images per labeled image in a step (default: from "
                            "the data, at most 3)")
    train.add_argument("--validation-split", type=FRACTION, default=0.2, metavar="F",
                       help="fraction of the labeled images held out to detect plateaus "
                            "and report on (default 0.2)")
    train.add_argument("--color-mode", default="auto", choices=["auto", "rgb", "grayscale"],
                       help="auto (default): grayscale when every labeled image is")
    train.add_argument("--no-flip", action="store_true",
                       help="no horizontal flips (text, digits, anything not symmetric)")
    train.add_argument("--seed", type=COUNT, default=0, help="random seed (default 0)")
    train.add_argument("--verbose", type=COUNT, default=1,
                       help="0 quiet, 1 progress (default: bars on a terminal, a line per "
                            "epoch otherwise), 2 one line per epoch, 3 also the "
                            "frameworks' own start-up lines")

    evaluate = sub.add_parser(
        "evaluate", help="accuracy, per class, and the confusion matrix of a trained model "
                         "on a labeled folder it never saw")
    evaluate.add_argument("model", help="model.keras written by keras-ssl train")
    evaluate.add_argument("labeled_dir", help="one sub-folder of images per class")
    evaluate.add_argument("--classes", help="comma-separated class names in the model's "
                                            "output order (default: class_names.json "
                                            "beside the model)")
    evaluate.add_argument("--out", metavar="FILE",
                          help="also write the scores and confusion matrix as JSON")

    predict = sub.add_parser(
        "predict", help="classify a folder of images with a trained model; writes a CSV")
    predict.add_argument("model", help="model.keras written by keras-ssl train")
    predict.add_argument("images", help="an image file, or a folder of images (sub-folders "
                                        "are read too)")
    predict.add_argument("--out", default="predictions.csv", metavar="FILE",
                         help="the CSV to write, or - for standard output (default "
                              "predictions.csv)")
    predict.add_argument("--top-k", type=POSITIVE_INT, default=1, metavar="K",
                         help="the K most probable classes of each image (default 1)")
    predict.add_argument("--classes", help="comma-separated class names in the model's "
                                           "output order (default: class_names.json "
                                           "beside the model)")
    return parser


def _import_quietly():
    """Import TensorFlow with the process's stderr closed: its C++ start-up lines
    (oneDNN, CUDA probing on a machine without a GPU) are written before any
    log level applies. Python errors still surface; later framework logs obey
    TF_CPP_MIN_LOG_LEVEL."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Framework start-up lines only with --verbose 3 (train) or more.
    if getattr(args, "verbose", 0) < 3 and "tensorflow" not in sys.modules:
        _import_quietly()
    from keras_ssl import cli

    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
