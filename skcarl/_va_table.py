"""skcarl's default valence–arousal table for emotion names.

Every coordinate is the (valence, arousal) rating of the emotion word in the NRC VAD Lexicon v1:
Saif M. Mohammad (2018), "Obtaining Reliable Human Ratings of Valence, Arousal, and Dominance for 20,000
English Words", ACL 2018 (best-worst scaling, scores on [0, 1]). The names cover GoEmotions' 28 categories
(27 emotions + neutral; Demszky et al. 2020), Ekman's six basic emotions (anger, disgust, fear, joy, sadness,
surprise), Plutchik's trust and anticipation, and a few other common emotion names. The lexicon is free for
research use; see its terms of use, and pass your own ``va_map`` where they do not fit.

Values are on [0, 1]: valence 0 = most unpleasant, 1 = most pleasant; arousal 0 = calmest, 1 = most excited.
"""

DEFAULT_VA_TABLE = {
    "admiration": (0.969, 0.583),
    "amusement": (0.929, 0.837),
    "anger": (0.167, 0.865),
    "annoyance": (0.167, 0.718),
    "approval": (0.854, 0.460),
    "caring": (0.635, 0.469),
    "confusion": (0.255, 0.667),
    "curiosity": (0.750, 0.755),
    "desire": (0.896, 0.692),
    "disappointment": (0.115, 0.490),
    "disapproval": (0.085, 0.551),
    "disgust": (0.052, 0.775),
    "embarrassment": (0.143, 0.685),
    "excitement": (0.896, 0.684),
    "fear": (0.073, 0.840),
    "gratitude": (0.885, 0.441),
    "grief": (0.070, 0.640),
    "joy": (0.980, 0.824),
    "love": (1.000, 0.519),
    "nervousness": (0.163, 0.915),
    "optimism": (0.949, 0.565),
    "pride": (0.729, 0.634),
    "realization": (0.554, 0.510),
    "relief": (0.844, 0.278),
    "remorse": (0.103, 0.673),
    "sadness": (0.052, 0.288),
    "surprise": (0.875, 0.875),
    "neutral": (0.469, 0.184),
    "trust": (0.888, 0.547),
    "anticipation": (0.698, 0.539),
    "happiness": (0.960, 0.732),
    "shame": (0.060, 0.670),
    "guilt": (0.208, 0.567),
    "boredom": (0.167, 0.139),
    "calmness": (0.934, 0.105),
    "contentment": (0.875, 0.610),
    "frustration": (0.060, 0.730),
    "hope": (0.927, 0.317),
    "loneliness": (0.146, 0.182),
    "serenity": (0.900, 0.122),
    "anxiety": (0.146, 0.865),
    "rage": (0.082, 0.888),
    "terror": (0.069, 0.902),
    "delight": (0.949, 0.666),
    "enthusiasm": (0.938, 0.816),
    "tenderness": (0.949, 0.276),
    "melancholy": (0.188, 0.260),
    "sorrow": (0.052, 0.235),
}
