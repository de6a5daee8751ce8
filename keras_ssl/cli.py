"""Command line: `keras-ssl demo` (no download needed), `keras-ssl train` and
`keras-ssl predict` (folders of your own images)."""

import json
import os
import sys


def _provenance():
    """Date, keras-ssl version and machine, recorded beside a result."""
    import datetime
    import platform

    import keras_ssl

    return {"date": datetime.date.today().isoformat(), "keras_ssl": keras_ssl.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.system()} {platform.python_version()}"}


def _demo(args):
    from keras_ssl import demo

    seeds, methods = list(args.seeds), list(args.methods)
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
        json.dump({"table": table, "runs": results, "args": vars(args),
                   **_provenance()}, f, indent=2)
    print(f"\nwrote {png} and {out_json}")
    return 0


def _train(args):
    from keras_ssl import runner

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"keras-ssl train: error: --out {args.out} is a file, not a folder.",
              file=sys.stderr)
        return 2
    interrupted = runner.saved_run(args.out) is not None
    if args.resume and args.overwrite:
        print("keras-ssl train: error: --resume continues the run in --out and --overwrite "
              "starts it over; pass one of them.", file=sys.stderr)
        return 2
    if args.resume and not interrupted:
        print(f"keras-ssl train: error: --resume: {args.out} holds no interrupted run "
              "(nothing to continue); leave --resume out to start one.", file=sys.stderr)
        return 2
    if (os.path.isdir(args.out) and os.listdir(args.out) and not interrupted
            and not args.overwrite):
        print(f"keras-ssl train: error: --out {args.out} already holds files; choose a new "
              "folder, or pass --overwrite to write into it.", file=sys.stderr)
        return 2

    image_size = args.image_size
    verbose = args.verbose
    if verbose == 1 and not sys.stdout.isatty():
        verbose = 2  # a line per epoch, not progress-bar escape codes, in a log file
    runner.train_from_folders(
        args.labeled_dir, args.unlabeled, args.out, model=args.model, image_size=image_size,
        epochs=args.epochs, minutes=args.minutes, baseline=args.baseline,
        algorithm=args.algorithm, batch_size=args.batch_size,
        unlabeled_ratio=args.unlabeled_ratio, validation_split=args.validation_split,
        color_mode=args.color_mode, flip=not args.no_flip, seed=args.seed,
        verbose=verbose, resume=not args.overwrite,
    )
    return 0


def _predict(args):
    from keras_ssl import runner

    names = None if args.classes is None else args.classes.split(",")
    count = runner.predict_folder(args.model, args.images, args.out, class_names=names,
                                  top_k=args.top_k)
    if args.out != "-":
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


def run(args):
    """Run a parsed command (`keras_ssl_cli.build_parser`); return the exit code."""
    from keras_ssl.checks import InputError

    commands = {"demo": _demo, "train": _train, "predict": _predict, "evaluate": _evaluate}
    try:
        return commands[args.command](args)
    except InputError as error:
        print(f"keras-ssl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        # train says what was saved and how to continue (runner.Interrupted).
        message = str(interrupt) or "interrupted; stopped."
        print(f"\nkeras-ssl {args.command}: {message}", file=sys.stderr)
        return 130


def main(argv=None):
    """`keras-ssl ARGS`: parse (`keras_ssl_cli`), then run."""
    import keras_ssl_cli

    return keras_ssl_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
