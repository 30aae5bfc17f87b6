"""Save a fitted estimator to a folder and load it back: ``est.save(path)`` and ``skcarl.load(path)``.

The folder holds JSON (configuration, fitted attributes, your metadata), the encoder's architecture, the
weights as safetensors and the tokenizer. Loading runs no pickled code, so a model folder from someone else is
safe to open, and a model trained on a GPU loads on a CPU (``device="cpu"``, or ``"auto"``). The loaded model
predicts exactly what the saved one did. About 10 s on two idle CPU cores::

    python examples/save_load.py
"""

import tempfile
from pathlib import Path

import numpy as np

import skcarl
from skcarl import CARLClassifier
from skcarl.datasets import load_affect_demo

data = load_affect_demo(with_quadrant_emotion=True).sample(n=128, random_state=0)
clf = CARLClassifier(max_epochs=1, max_length=48, random_state=0).fit(data["text"], data["emotion"])

new_texts = ["We won the final in the last minute!", "The house felt empty after the funeral.",
             "A slow Sunday morning with tea and a book.", "He slammed the door and shouted at me."]

with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp) / "emotion-model"
    clf.save(folder, metadata={"trained_on": "skcarl affect demo, 128 sentences", "labels": "VA quadrant"})
    print("Saved files:", sorted(p.name for p in folder.iterdir()))

    loaded = skcarl.load(folder, device="cpu")
    print(f"Loaded a {type(loaded).__name__} with classes {loaded.classes_.tolist()}")
    print("Metadata:", loaded.metadata_)

    for text, label in zip(new_texts, loaded.predict(new_texts)):
        print(f"  {label:<9} {text}")
    same = np.array_equal(clf.predict_proba(new_texts), loaded.predict_proba(new_texts))
    print(f"Predictions identical after loading: {same}")
    if not same:
        raise SystemExit("the loaded model predicts differently")
