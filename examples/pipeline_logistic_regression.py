"""CARLEmbedder + LogisticRegression in a scikit-learn Pipeline: emotion classes via the VA plane.

The shipped corpus gets a coarse emotion class per sentence (its quadrant of the valence-arousal plane:
joy, calmness, sadness, anger). ``CARLEmbedder`` reads those class labels through the VA labeling system:
each class sits at its (valence, arousal) point from the default table, and the contrastive loss pulls
together sentences whose classes are close on the plane. A logistic regression then classifies the
embeddings. The whole thing is one scikit-learn estimator.

Small settings (a subset of the corpus, one epoch) so that it runs on a CPU in about 10 s on two idle cores;
use the whole corpus and ``max_epochs=3`` or more for a useful model::

    python examples/pipeline_logistic_regression.py
"""

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skcarl import CARLEmbedder
from skcarl.datasets import load_affect_demo

data = load_affect_demo(with_quadrant_emotion=True).sample(n=200, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    data["text"], data["emotion"], test_size=0.25, random_state=0, stratify=data["emotion"]
)

pipe = Pipeline([
    ("emb", CARLEmbedder(max_epochs=1, max_length=48, random_state=0)),
    ("clf", LogisticRegression(max_iter=1000)),
])
pipe.fit(X_train, y_train)

embedder = pipe.named_steps["emb"]
print("VA anchors used for the classes (NRC VAD Lexicon, [0, 1]):")
for label, (valence, arousal) in sorted(embedder.va_map_.items()):
    print(f"  {label:<9} valence {valence:.3f}  arousal {arousal:.3f}")
print(classification_report(y_test, pipe.predict(X_test), zero_division=0))
print(f"Pipeline accuracy on held-out sentences: {pipe.score(X_test, y_test):.3f}")
