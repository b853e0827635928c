"""Stand-in for logo-detection's Keras 3 model (`logo_max_all.keras`): 224x224x3 in, two softmax
outputs ([out_of_domain, prediction], as the isvc reads them), saved with `model.save` as
production's file is. Runs in the isvc's own venv (its keras and tensorflow-cpu), so the file is
written by production's keras version and read back by the isvc's own `keras.models.load_model`.

Deterministic: fixed seed, and the two things `model.save` stamps with the time are fixed afterwards
(the zip members' dates, and `date_saved` in metadata.json, which keras writes but never reads);
config.json and model.weights.h5 are kept byte for byte.

    python keras_logo.py OUTPUT_FILE
"""

import json
import sys
import zipfile
from pathlib import Path

import keras

FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's epoch


def _normalise(path: Path) -> None:
    """Rewrite the .keras zip with fixed member dates and a fixed `date_saved`."""
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as dst:
        for info, data in members:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta["date_saved"] = "1980-01-01@00:00:00"
                data = json.dumps(meta).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, data)
    tmp.replace(path)


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
    _normalise(Path(out))


if __name__ == "__main__":
    main(sys.argv[-1])
