"""Command line: `keras-ssl demo` (no download needed)."""

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
                                  verbose=args.verbose)
            print(f"  seed {seed} {method:>12}: test accuracy {r['accuracy']:.3f} "
                  f"in {r['seconds']:.1f} s", flush=True)
            results.append(r)
    table = demo.summarize(results)
    print()
    print(demo.markdown_table(table))
    os.makedirs(args.out, exist_ok=True)
    png = demo.bar_chart(table, os.path.join(args.out, "demo_digits.png"),
                         f"digits, {n_lab} labels, {args.steps} steps")
    out_json = os.path.join(args.out, "demo_digits.json")
    with open(out_json, "w") as f:
        json.dump({"table": table, "runs": results, "args": vars(args)}, f, indent=2)
    print(f"\nwrote {png} and {out_json}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-ssl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="supervised vs FixMatch on scikit-learn's digits")
    demo.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    demo.add_argument("--steps", type=int, default=1000, help="training steps per run")
    demo.add_argument("--labels-per-class", type=int, default=2)
    demo.add_argument("--methods", default="supervised,fixmatch",
                      help="comma-separated: supervised,fixmatch,mean_teacher")
    demo.add_argument("--threshold", type=float, default=0.95)
    demo.add_argument("--out", default="results", help="folder for the PNG and JSON")
    demo.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "demo":
        return _demo(args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
