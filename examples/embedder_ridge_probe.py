"""CARLEmbedder in a Pipeline with Ridge: valence and arousal from CARL embeddings.

Runs on the corpus that ships with skcarl, on the CPU, in about a minute:

    python examples/embedder_ridge_probe.py
"""

from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skcarl import CARLEmbedder
from skcarl.datasets import load_affect_demo

data = load_affect_demo()
X_train, X_test, y_train, y_test = train_test_split(
    data["text"], data[["valence", "arousal"]].to_numpy(), test_size=0.25, random_state=0
)

# The embedder learns from the VA labels during fit; the ridge head then reads them off the embedding.
model = Pipeline([
    ("emb", CARLEmbedder(va_range=(1, 9), max_epochs=2, random_state=0, verbose=1)),
    ("ridge", RidgeCV(alphas=[0.1, 1.0, 10.0])),
])
model.fit(X_train, y_train)
print(f"R^2 on held-out sentences: {model.score(X_test, y_test):.3f}")
for text, (v, a) in zip(["I just won the lottery!", "Another grey, empty afternoon."],
                        model.predict(["I just won the lottery!", "Another grey, empty afternoon."])):
    print(f"{text!r}: valence {v:.1f}, arousal {a:.1f}")
