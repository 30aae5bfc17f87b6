from importlib import resources

import numpy as np
import pandas as pd

# One emotion name per quadrant of the VA plane (split at the scale midpoint 5), all in the default VA table.
QUADRANT_EMOTIONS = {(True, True): "joy", (True, False): "calmness", (False, False): "sadness",
                     (False, True): "anger"}


def load_affect_demo(with_quadrant_emotion: bool = False) -> pd.DataFrame:
    """The affect demo corpus that ships with skcarl.

    540 short English sentences written for skcarl, each rated for valence and arousal on the 1–9 SAM
    scales (1 = very unpleasant / very calm, 9 = very pleasant / very excited). See
    ``skcarl/datasets/data/README.md`` for how it was made and its statistics.

    Parameters
    ----------
    with_quadrant_emotion : bool, default=False
        Add a column ``emotion`` naming the sentence's quadrant of the VA plane (valence and arousal split
        at 5): "joy" (pleasant, excited), "calmness" (pleasant, calm), "sadness" (unpleasant, calm) and
        "anger" (unpleasant, excited). A coarse class label derived from the ratings, for classification
        examples; not an annotation of the emotion expressed.

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` (str), ``valence`` and ``arousal`` (float), and ``emotion`` if asked for.

    Examples
    --------
    >>> from skcarl.datasets import load_affect_demo
    >>> data = load_affect_demo(with_quadrant_emotion=True)
    >>> list(data.columns)
    ['text', 'valence', 'arousal', 'emotion']
    >>> sorted(data["emotion"].unique())
    ['anger', 'calmness', 'joy', 'sadness']
    """
    path = resources.files("skcarl.datasets").joinpath("data", "affect_demo.csv")
    with resources.as_file(path) as csv_path:
        data = pd.read_csv(csv_path, keep_default_na=False)
    if with_quadrant_emotion:
        pleasant, excited = data["valence"].to_numpy() > 5, data["arousal"].to_numpy() > 5
        data["emotion"] = np.array([QUADRANT_EMOTIONS[key] for key in zip(pleasant, excited)])
    return data
