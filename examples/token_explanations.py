"""Which words drive a prediction: ``est.explain`` and ``skcarl.plot.token_saliency``.

``explain`` uses the gradient mechanism CARL trains with: the saliency of a word is the norm of the gradient of
the prediction with respect to the word's input embedding (word pieces merged back into words). For a
``CARLRegressor`` there is one set of scores per predicted target (valence, arousal). The result is a tidy
pandas DataFrame; ``skcarl.plot.token_saliency`` turns texts of it into a matplotlib figure and an HTML
snippet with the words highlighted. The figure and the HTML are written to a temporary folder whose path is
printed. Needs matplotlib (``pip install skcarl[plot]``). About 15 s on two idle CPU cores::

    python examples/token_explanations.py
"""

import tempfile
from pathlib import Path

from skcarl import CARLRegressor
from skcarl.datasets import load_affect_demo
from skcarl.plot import token_saliency

data = load_affect_demo().sample(n=128, random_state=0)
reg = CARLRegressor(va_range=(1, 9), max_epochs=1, max_length=48, random_state=0)
reg.fit(data["text"], data[["valence", "arousal"]])

texts = ["I finally got the job and I am absolutely thrilled!",
         "The funeral was quiet, grey and terribly sad."]
table = reg.explain(texts)          # every target: target_0 (valence) and target_1 (arousal)
print(table.head(12).round(3).to_string(index=False))

print("\nMost salient word per text and target:")
top = table.loc[table.groupby(["text_id", "target"])["saliency"].idxmax()]
for row in top.itertuples():
    print(f"  text {row.text_id}, {row.target}: {row.word!r} ({row.saliency_share:.0%} of the text's saliency)")

out = Path(tempfile.mkdtemp(prefix="skcarl-explain-"))
figure, html = token_saliency(table, text_id=[0, 1], target="target_0")   # valence, both texts
figure.savefig(out / "token_saliency.png", dpi=120, bbox_inches="tight")
(out / "token_saliency.html").write_text(html, encoding="utf-8")
print(f"\nWrote {out / 'token_saliency.png'} and {out / 'token_saliency.html'}")
