"""The few-shot protocol: CARLClassifier and CARLRegressor against SetFit when a user has few labelled texts.

``python -m benchmarks.fewshot --help``. GoEmotions' Ekman groups (single-group rows) with 8, 16 and 64
training rows per class; EmoBank valence and arousal with 64, 256 and 1,024 training texts. Each size is
drawn ``--draws`` times (draw d samples the training rows with seed d and seeds every method with d); every
method is scored on the whole dev or test split (``--split``; ``--n-eval`` subsamples dev for a quicker
study). Classification: accuracy and macro-F1; regression: Pearson r of valence and arousal; every row also
records its fit time, measured in the same process and run as the others.
"""
