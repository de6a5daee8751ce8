"""Command line: `keras-ssl demo` (no download needed), `keras-ssl train` and
`keras-ssl predict` (folders of your own images)."""

import argparse
import json
import os
import sys


def _demo(args):
    from keras_ssl import demo

    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    data_by_seed = {s: demo.load_digits_split(args.labels_per_class, s) for s in seeds}
    n_lab, n_unl = len(data_by_seed[seeds[0]][0]), len(data_by_seed[seeds[0]][2])
    print(f"keras-ssl demo: digits 8x8, {n_lab} labeled + {n_unl} unlabeled, "
          f"{len(data_by_seed[seeds[0]][4])} test images; {args.steps} steps per run; "
          f"methods {methods}; seeds {seeds}", flush=True)
    results = []
    for seed in seeds:
        for method in methods:
            r = demo.train_digits(method, args.labels_per_class, args.steps, seed,
                                  threshold=args.threshold, data=data_by_seed[seed],
                                  verbose=args.verbose, source=args.source)
            print(f"  seed {seed} {method:>12}: test accuracy {r['accuracy']:.3f} "
                  f"in {r['seconds']:.1f} s", flush=True)
            results.append(r)
    table = demo.summarize(results)
    print()
    print(demo.markdown_table(table))
    os.makedirs(args.out, exist_ok=True)
    stem = "demo_digits" + ("" if args.source == "array" else f"_{args.source}")
    png = demo.bar_chart(table, os.path.join(args.out, f"{stem}.png"),
                         f"digits, {n_lab} labels, {args.steps} steps")
    out_json = os.path.join(args.out, f"{stem}.json")
    with open(out_json, "w") as f:
        json.dump({"table": table, "runs": results, "args": vars(args)}, f, indent=2)
    print(f"\nwrote {png} and {out_json}")
    return 0


def _train(args):
    from keras_ssl import runner

    image_size = None if args.image_size is None else int(args.image_size)
    runner.train_from_folders(
        args.labeled_dir, args.unlabeled, args.out, model=args.model, image_size=image_size,
        epochs=args.epochs, minutes=args.minutes, baseline=args.baseline,
        algorithm=args.algorithm, batch_size=args.batch_size,
        unlabeled_ratio=args.unlabeled_ratio, validation_split=args.validation_split,
        color_mode=args.color_mode, flip=not args.no_flip, seed=args.seed,
        verbose=args.verbose,
    )
    return 0


def _predict(args):
    from keras_ssl import runner

    names = None if args.classes is None else args.classes.split(",")
    count = runner.predict_folder(args.model, args.images_dir, args.out, class_names=names)
    print(f"keras-ssl predict: {count} images classified; wrote {args.out}")
    return 0


def _evaluate(args):
    from keras_ssl import runner

    names = None if args.classes is None else args.classes.split(",")
    scores = runner.evaluate_folder(args.model, args.labeled_dir, class_names=names)
    print(f"keras-ssl evaluate: accuracy {scores['accuracy']:.4f} on {scores['images']} "
          f"images of {args.labeled_dir}")
    for name, value in scores["per_class"].items():
        print(f"  {name:>20}: " + ("no images" if value is None else f"{value:.4f}"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(scores, f, indent=1)
        print(f"wrote {args.out}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-ssl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="supervised vs the default SSL algorithm on scikit-learn's digits")
    demo.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    demo.add_argument("--steps", type=int, default=1000, help="training steps per run")
    demo.add_argument("--labels-per-class", type=int, default=2)
    demo.add_argument("--methods", default="supervised,default",
                      help="comma-separated: supervised, default (the library's "
                           "default algorithm) and names of keras_ssl.algorithms.names()")
    demo.add_argument("--threshold", type=float, default=0.95,
                      help="threshold of the 'fixmatch' method (not of 'default')")
    demo.add_argument("--source", default="array",
                      choices=["array", "tfdata", "generator", "zipped"],
                      help="how fit gets the images: numpy arrays (default), tf.data "
                           "datasets, a generator of unlabeled batches, or one zipped "
                           "tf.data dataset")
    demo.add_argument("--out", default="results", help="folder for the PNG and JSON")
    demo.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity")
    train = sub.add_parser(
        "train", help="train on a labeled folder (one sub-folder per class) + unlabeled "
                      "images; writes model.keras, report.md, charts and run.json")
    train.add_argument("labeled_dir")
    train.add_argument("--unlabeled", help="folder of unlabeled images (sub-folders read too)")
    train.add_argument("--model", default="cnn",
                       help="cnn, mobilenet, efficientnet (from scratch) or a .keras file "
                            "taking raw 0-255 pixels (default cnn)")
    train.add_argument("--image-size", type=int,
                       help="resize images to N x N (default: their size, at most 128)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-time budget")
    budget.add_argument("--epochs", type=int, help="upper bound on epochs (default 100)")
    train.add_argument("--baseline", action="store_true",
                       help="also train the supervised baseline at the same budget")
    train.add_argument("--algorithm", help="an algorithm name (default: the library's)")
    train.add_argument("--batch-size", type=int, help="labeled images per step")
    train.add_argument("--unlabeled-ratio", type=int, help="unlabeled per labeled image")
    train.add_argument("--validation-split", type=float, default=0.2)
    train.add_argument("--color-mode", default="auto", choices=["auto", "rgb", "grayscale"])
    train.add_argument("--no-flip", action="store_true",
                       help="no horizontal flips (text, digits, anything not symmetric)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--verbose", type=int, default=1)
    train.add_argument("--out", required=True, help="output folder")
    predict = sub.add_parser("predict", help="classify a folder of images with a trained "
                                             "model; writes a CSV")
    predict.add_argument("model", help="model.keras written by keras-ssl train")
    predict.add_argument("images_dir")
    predict.add_argument("--out", default="predictions.csv")
    predict.add_argument("--classes", help="comma-separated class names (default: "
                                           "class_names.json beside the model)")
    evaluate = sub.add_parser("evaluate", help="accuracy, per class, of a trained model on "
                                               "a labeled folder it never saw")
    evaluate.add_argument("model", help="model.keras written by keras-ssl train")
    evaluate.add_argument("labeled_dir", help="one sub-folder of images per class")
    evaluate.add_argument("--classes", help="comma-separated class names (default: "
                                            "class_names.json beside the model)")
    evaluate.add_argument("--out", help="also write the scores and confusion matrix as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_ssl.checks import InputError

    commands = {"demo": _demo, "train": _train, "predict": _predict, "evaluate": _evaluate}
    try:
        return commands[args.command](args)
    except InputError as error:
        print(f"keras-ssl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
