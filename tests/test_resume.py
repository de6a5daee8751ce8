"""A training process killed in phase 2 resumes in phase 2 with its teacher.

The parent test starts a real training process, waits until it is in the
middle of an epoch of phase 2, kills it with SIGKILL (no exception, no
cleanup), then starts a second process with the same `BackupAndRestore`
directory. The second one must continue in phase 2, from the epoch after the
last completed one, with the EMA teacher's weights (and the student's,
the step counter and the optimizer's step) exactly as they were saved at the
end of that epoch.

This file is also the script the processes run:
`python tests/test_resume.py first|resume FOLDER` (the backend comes from
KERAS_BACKEND).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EPOCHS, STEPS, KILL_EPOCH = 6, 5, 4


def _numpy(variables):
    from keras import ops

    return [np.array(ops.convert_to_numpy(v)) for v in variables]


def child(mode, folder):
    """Train (mode 'first', killed by the parent) or resume (mode 'resume')."""
    import keras

    import keras_ssl
    from keras_ssl.callbacks import EMATeacher, PlateauPhaseSwitch

    L = keras.layers
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 40)
    u = rng.random((80, 8, 8, 1)).astype("float32")
    net = keras.Sequential([
        keras.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same"), L.BatchNormalization(),
        L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(3),
    ])
    # FixMatch has no teacher of its own: EMATeacher creates it when attached,
    # before BackupAndRestore loads the checkpoint. A cheap strong view keeps
    # the two processes short (RandAugment's tf.data graph is slow to build).
    strong = L.RandomTranslation(0.25, 0.25, fill_mode="reflect")
    algorithm = keras_ssl.FixMatch(threshold=0.5, flip=False, strong=strong)
    ssl = keras_ssl.SemiSupervisedModel(net, algorithm, unlabeled_ratio=1)
    ssl.compile(optimizer="adam", metrics=["accuracy"])
    # An unreachable min_delta: phase 1 is epochs 0-1, phase 2 from epoch 2 on.
    switch = PlateauPhaseSwitch(monitor="val_loss", patience=0, min_delta=1e9,
                                phase2_patience=100, verbose=1)
    backup = keras.callbacks.BackupAndRestore(os.path.join(folder, "backup"))
    ema = EMATeacher(decay=0.9)

    def state():
        return {
            "teacher": _numpy(ssl.teacher_weights),
            "student": _numpy(ssl.model.trainable_variables),
            "scale": float(keras.ops.convert_to_numpy(ssl.unlabeled_loss_scale)),
            "ssl_step": int(keras.ops.convert_to_numpy(ssl.ssl_step)),
            "iterations": int(keras.ops.convert_to_numpy(ssl.optimizer.iterations)),
        }

    def save(name, values):
        arrays = {f"teacher_{i}": a for i, a in enumerate(values["teacher"])}
        arrays.update({f"student_{i}": a for i, a in enumerate(values["student"])})
        np.savez(os.path.join(folder, name + ".npz"), **arrays)
        meta = {k: v for k, v in values.items() if k not in ("teacher", "student")}
        with open(os.path.join(folder, name + ".json"), "w") as f:
            json.dump(meta, f)

    class KillMe(keras.callbacks.Callback):
        """First run: save the state at the last epoch end before the kill,
        then block in the middle of the next epoch until killed."""

        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if epoch == KILL_EPOCH - 1:
                save("last_epoch", state())

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == KILL_EPOCH and batch == 2:
                with open(os.path.join(folder, "kill_me.tmp"), "w") as f:
                    f.write(str(os.getpid()))
                os.replace(os.path.join(folder, "kill_me.tmp"),
                           os.path.join(folder, "kill_me"))
                time.sleep(600)

    class Resumed(keras.callbacks.Callback):
        """Resumed run, listed first: reads the state after every on_train_begin."""

        first_epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch
                values = state()
                values["first_epoch"] = epoch
                save("resumed", values)

    probe = KillMe() if mode == "first" else Resumed()
    # First run in the documented order (the switch before BackupAndRestore, so
    # that a switch is in the same epoch's checkpoint); the resumed run in
    # another order: reading the phase back does not depend on it.
    chain = [switch, backup, ema, probe] if mode == "first" else [probe, ema, backup, switch]
    history = ssl.fit(x, y, unlabeled=u, batch_size=8, epochs=EPOCHS, steps_per_epoch=STEPS,
                      validation_data=(x, y), callbacks=chain, verbose=2)
    with open(os.path.join(folder, "done.json"), "w") as f:
        json.dump({"phases": [int(p) for p in history.history["phase"]],
                   "resumed_in_phase": switch.resumed_in_phase,
                   "switch_epoch": switch.switch_epoch}, f)


def _start(mode, folder, backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(os.path.join(folder, f"{mode}.log"), "w") as log:  # the child keeps its copy
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), mode, folder],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _log(folder, mode):
    with open(os.path.join(folder, f"{mode}.log")) as f:
        return f.read()[-4000:]


def _load(folder, name):
    with open(os.path.join(folder, name + ".json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(folder, name + ".npz")) as arrays:
        meta["teacher"] = [arrays[f"teacher_{i}"] for i in range(len(arrays.files) // 2)]
        meta["student"] = [arrays[f"student_{i}"] for i in range(len(arrays.files) // 2)]
    return meta


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_killed_in_phase_2_resumes_in_phase_2_with_its_teacher(tmp_path, backend):
    folder = str(tmp_path)
    first = _start("first", folder, backend)
    marker = os.path.join(folder, "kill_me")
    deadline = time.time() + 240
    while not os.path.exists(marker):
        assert first.poll() is None, _log(folder, "first")
        assert time.time() < deadline, _log(folder, "first")
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)  # a real kill, mid-epoch, no cleanup
    assert first.wait(timeout=60) == -signal.SIGKILL
    assert not os.path.exists(os.path.join(folder, "done.json"))
    with open(os.path.join(folder, "backup", "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == KILL_EPOCH

    second = _start("resume", folder, backend)
    assert second.wait(timeout=240) == 0, _log(folder, "resume")
    saved, resumed = _load(folder, "last_epoch"), _load(folder, "resumed")
    with open(os.path.join(folder, "done.json")) as f:
        done = json.load(f)

    assert resumed["first_epoch"] == KILL_EPOCH
    assert saved["scale"] == resumed["scale"] == 1.0  # phase 2
    assert done["resumed_in_phase"] == 2
    assert done["phases"] == [2] * (EPOCHS - KILL_EPOCH)
    assert done["switch_epoch"] is None  # no second switch after the resume
    assert "resumed in phase 2" in _log(folder, "resume")
    assert resumed["ssl_step"] == saved["ssl_step"] == KILL_EPOCH * STEPS
    assert resumed["iterations"] == saved["iterations"] == KILL_EPOCH * STEPS
    assert len(saved["teacher"]) == len(resumed["teacher"]) > 0
    for a, b in zip(saved["teacher"], resumed["teacher"]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(saved["student"], resumed["student"]):
        np.testing.assert_array_equal(a, b)
    # The teacher is its own average, not a copy of the student.
    assert any(not np.allclose(a, b) for a, b in zip(saved["teacher"], saved["student"]))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    child(sys.argv[1], sys.argv[2])
