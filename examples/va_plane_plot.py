"""Predictions on the valence-arousal plane: ``skcarl.plot.va_plane``.

A ``CARLRegressor`` predicts valence and arousal for held-out sentences of the shipped corpus;
``skcarl.plot.va_plane`` draws them on the circumplex, coloured by their quadrant emotion, with a few emotion
anchors of the default VA table (NRC VAD Lexicon) annotated. The PNG is written to a temporary folder whose path
is printed. Needs matplotlib (``pip install skcarl[plot]``). About 15 s on two idle CPU cores::

    python examples/va_plane_plot.py
"""

import tempfile
from pathlib import Path

from sklearn.model_selection import train_test_split

from skcarl import CARLRegressor
from skcarl.datasets import load_affect_demo
from skcarl.plot import va_plane

data = load_affect_demo(with_quadrant_emotion=True).sample(n=200, random_state=0)
train, test = train_test_split(data, test_size=0.3, random_state=0)

reg = CARLRegressor(va_range=(1, 9), max_epochs=1, max_length=48, random_state=0)
reg.fit(train["text"], train[["valence", "arousal"]])
predicted = reg.predict(test["text"])           # (n, 2) on the 1-9 rating scale
print(f"Held-out R^2: {reg.score(test['text'], test[['valence', 'arousal']]):.3f}")

# Anchors from the default table (NRC VAD Lexicon, on [0, 1]), mapped onto the 1-9 scale of the points.
anchors = ["joy", "excitement", "calmness", "serenity", "sadness", "boredom", "anger", "fear"]
fig = va_plane(predicted, labels=test["emotion"].to_numpy(), va_map=anchors, va_range=(1, 9),
               title="CARLRegressor predictions on held-out sentences")

out = Path(tempfile.mkdtemp(prefix="skcarl-va-plane-")) / "va_plane.png"
fig.savefig(out, dpi=120, bbox_inches="tight")
print(f"Wrote {out}")
