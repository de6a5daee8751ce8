"""SSL on a keras.applications backbone, CIFAR-10-sized images (docs/pretrained.md's pattern).

    python examples/pretrained_backbone.py --weights imagenet            # downloads
    python examples/pretrained_backbone.py --weights path/to.weights.h5  # a local file
    python examples/pretrained_backbone.py --backbone efficientnet_b0 --steps 300

The backbone gets raw 0-255 pixels resized inside the model, with its
preprocessing inside the model too, so that keras-ssl's views augment the raw
images. With `--freeze-steps N` the backbone is frozen for the first N steps
(head only), then fine-tuned at a 10x lower learning rate. A pretrained
backbone is fine-tuned with its BatchNorm layers frozen
(`keras_ssl.models.unfreeze`); with `--weights none` they train too. CIFAR-10 comes from
`keras.datasets` (a download) or an npz file (`--data`, with x_train, y_train,
x_test, y_test). Prints test accuracy (EMA weights) and the wall time.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_ssl


def classifier(backbone_name, weights, size, num_classes=10):
    inputs = keras.Input((32, 32, 3))  # raw 0-255 pixels
    x = keras.layers.Resizing(size, size)(inputs)
    if backbone_name == "mobilenet_v2":
        backbone = keras.applications.MobileNetV2(
            input_shape=(size, size, 3), include_top=False, weights=weights)
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)  # its preprocess_input
    else:
        backbone = keras.applications.EfficientNetB0(  # rescales inside
            input_shape=(size, size, 3), include_top=False, weights=weights)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x)), backbone


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", choices=["mobilenet_v2", "efficientnet_b0"],
                   default="mobilenet_v2")
    p.add_argument("--weights", default=None, type=lambda w: None if w == "none" else w,
                   help='"imagenet", a weights file, or none (the default)')
    p.add_argument("--data", help="CIFAR-10 npz; default keras.datasets (download)")
    p.add_argument("--labels", type=int, default=250)
    p.add_argument("--unlabeled", type=int, default=5000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--freeze-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ratio", type=int, default=1)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)

    x, y, x_test, y_test = keras_ssl.datasets.load_cifar10(args.data)
    order = np.random.default_rng(0).permutation(len(x))
    lab, unl = order[:args.labels], order[args.labels:args.labels + args.unlabeled]
    keras.utils.set_random_seed(0)
    model, backbone = classifier(args.backbone, args.weights, args.size)
    ssl = keras_ssl.SemiSupervisedModel(model, unlabeled_ratio=args.ratio)
    phases = [(args.freeze_steps, False, args.lr), (args.steps - args.freeze_steps, True,
                                                    args.lr / 10 if args.freeze_steps else args.lr)]
    start = time.perf_counter()
    for steps, trainable, lr in phases:
        if steps <= 0:
            continue
        if trainable:
            keras_ssl.models.unfreeze(backbone, batchnorm=args.weights is None)
        else:
            backbone.trainable = False
        ssl.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"])
        ssl.fit(x[lab], y[lab], unlabeled=x[unl], batch_size=args.batch_size,
                epochs=max(1, steps // 50), steps_per_epoch=min(50, steps), verbose=2)
    seconds = time.perf_counter() - start
    # BatchNorm statistics recomputed for the EMA weights on the unlabeled
    # images; frozen (pretrained) BatchNorm layers keep theirs.
    with ssl.ema_weights(batchnorm_data=x[unl]):
        accuracy = ssl.evaluate(x_test[:2000], y_test[:2000], verbose=0,
                                return_dict=True)["accuracy"]
    print(f"{args.backbone} (weights={args.weights}), {args.labels} labels + {args.unlabeled} "
          f"unlabeled, {args.steps} steps: test accuracy (EMA, 2,000 test images) "
          f"{accuracy:.4f}, training wall time {seconds:.0f} s")


if __name__ == "__main__":
    main()
