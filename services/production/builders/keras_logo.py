"""Stand-in for logo-detection's Keras 3 model (`logo_max_all.keras`): 224x224x3 in, two softmax
outputs, saved with `model.save` as production's file is. Runs in the isvc's own venv (its keras and
tensorflow-cpu). Deterministic weights (fixed seed).

    python keras_logo.py OUTPUT_FILE
"""

import sys

import keras


def main(out: str) -> None:
    keras.utils.set_random_seed(18)
    model = keras.Sequential(
        [
            keras.Input((224, 224, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.save(out)


if __name__ == "__main__":
    main(sys.argv[-1])
