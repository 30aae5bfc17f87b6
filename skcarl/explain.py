"""Per-word saliency: which words moved a fitted CARL estimator's output.

The saliency of a token is the mechanism CARL trains with (see ``docs/method.md``): the L2 norm of the
gradient of a scalar output f with respect to the token's input word embedding E_t,

    a_t = ‖∂f/∂E_t‖₂.

What f is depends on the estimator:

* :class:`~skcarl.CARLRegressor`: each predicted target, on the scale of the training targets (the head
  predicts standardised targets; multiplying by ``target_scale_`` changes the saliencies by one constant
  per target and leaves their shares unchanged).
* :class:`~skcarl.CARLClassifier`: the logit of the predicted class (or of a class you name).
* :class:`~skcarl.CARLEmbedder`: there is no scalar output, so the saliency is the sensitivity of the whole
  L2-normalised embedding z, the Frobenius norm ‖∂z/∂E_t‖_F of its Jacobian. It is estimated with
  ``n_projections`` seeded Gaussian projections v (E[‖vᵀJ‖²] = ‖J‖²_F for v ~ N(0, I)): a_t ≈
  sqrt(mean_v ‖∂(v·z)/∂E_t‖²). The projections come from a local generator, so the estimate is
  reproducible and torch's global random state is left alone.

Word pieces are merged back into words (with a fast tokenizer's word ids and character offsets; with a
slow one, WordPiece ``##`` continuations join the piece before), a word's saliency being the root of the
sum of its pieces' squared saliencies, i.e. the norm of the gradient over all of the word's embeddings.
Special tokens ([CLS], [SEP], <s>, ...) are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ._validation import check_texts
from ._warnings import warn
from .perturbation import SALIENCY_MODES, token_saliency
from .tokens import TOKENIZER_LOCK, length_sorted_batches

COLUMNS = ["text_id", "word_id", "word", "saliency", "saliency_share", "target"]


def explain(estimator, texts, target=None, *, saliency=None, n_projections=16, random_state=0) -> pd.DataFrame:
    """Per-word saliency of a fitted CARL estimator's output on ``texts``.

    Parameters
    ----------
    estimator : CARLRegressor, CARLClassifier or CARLEmbedder
        A fitted estimator. Nothing in it changes: the network runs in eval mode (its train/eval flag is
        restored afterwards), no parameter gradient is stored, and torch's global random state is not used.
    texts : sequence of str
        The texts to explain (a list, a 1-D array or a pandas Series).
    target : None, int, str or class label, default=None
        Which output to explain.

        * Regressor: ``None`` explains every target (one set of rows per target); an int is a target
          index; a str is a target name (see Returns).
        * Classifier: ``None`` explains the logit of each text's predicted class (the highest logit);
          a label from ``classes_`` explains that class's logit for every text.
        * Embedder: must be ``None``.
    saliency : {"grad_norm", "grad_x_input"} or None, default=None
        How a token's gradient g_t = ∂f/∂E_t becomes a score, as in training: ``"grad_norm"`` is ‖g_t‖₂,
        ``"grad_x_input"`` is ``|<g_t, E_t>|`` (the first-order change of f if the word's embedding were
        removed). ``None`` uses the estimator's own ``saliency`` parameter (the one it trained with when
        detection was on).
    n_projections : int, default=16
        Embedder only: number of random projections in the estimate of ‖∂z/∂E_t‖_F.
    random_state : int, default=0
        Embedder only: seed of the random projections.

    Returns
    -------
    pandas.DataFrame
        One row per word of every text and explained target, with the columns

        * ``text_id`` : position of the text in ``texts``;
        * ``word_id`` : position of the word in the text (0, 1, ...);
        * ``word`` : the word as written in the text (its characters from the original string with a
          fast tokenizer; rebuilt from the word pieces otherwise);
        * ``saliency`` : a_w, the norm of ∂f/∂E over the word's pieces;
        * ``saliency_share`` : a_w divided by the sum of a_w over the text's words (the shares of one text
          and target sum to 1; NaN if every gradient is exactly zero);
        * ``target`` : what f is: a regressor target's name (the ``va_cols`` saved in
          ``estimator.metadata_`` when present, else ``"target_0"``, ``"target_1"``, ...), the explained
          class label for a classifier, ``"embedding"`` for an embedder.

        Words past ``max_length`` tokens are cut (with a warning), as in ``predict``.

    Raises
    ------
    ValueError
        For a target that the estimator does not have (the message lists the valid ones).

    Notes
    -----
    The gradient norm is a local slope: how much f would move if the word's embedding moved. On a
    pretrained encoder it singles out the affect-bearing words (``docs/images/token_saliency.png``: "fever",
    "tired", "surfed"). On a small randomly initialised encoder trained briefly it can be nearly flat over the
    words even where one word sets the label (a one-layer BERT trained on texts in which one word sets the
    label, three seeds: that word was never the top word by gradient norm, and was the top word of every
    text by ``"grad_x_input"``), because such a near-linear model has a similar slope at every token. Use
    ``saliency="grad_x_input"`` to ask how much each word's presence contributed instead.

    Examples
    --------
    >>> from skcarl import CARLRegressor
    >>> from skcarl.datasets import load_affect_demo
    >>> data = load_affect_demo()
    >>> reg = CARLRegressor(va_range=(1, 9), max_epochs=1, random_state=0)  # doctest: +SKIP
    >>> reg.fit(data.text, data[["valence", "arousal"]])  # doctest: +SKIP
    CARLRegressor(max_epochs=1, random_state=0, va_range=(1, 9))
    >>> table = reg.explain(["I won the championship!"], target=0)  # doctest: +SKIP
    >>> table.columns.tolist()  # doctest: +SKIP
    ['text_id', 'word_id', 'word', 'saliency', 'saliency_share', 'target']
    >>> table.nlargest(3, "saliency")[["word", "saliency_share"]]  # doctest: +SKIP
    """
    estimator._check_inference_params()
    texts = check_texts(texts, "texts")
    network, tokenizer = estimator.network_, estimator.tokenizer_
    mode = getattr(estimator, "saliency", "grad_norm") if saliency is None else saliency
    if mode not in SALIENCY_MODES:
        raise ValueError(f"saliency must be None or one of {SALIENCY_MODES}; got {mode!r}.")
    output = _Output.of(estimator, target, n_projections, random_state)
    output.mode = mode

    encoded = _encode(tokenizer, texts, estimator._max_tokens(network))
    device = getattr(estimator, "device_", torch.device("cpu"))
    lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))
    per_token = [None] * len(texts)  # per text: (n_outputs_explained, n_tokens) array
    chosen = [None] * len(texts)  # per text: names of the explained outputs

    was_training = network.training
    network.eval()
    try:
        for index in length_sorted_batches(lengths, estimator.batch_size):
            ids, mask = _pad([encoded["input_ids"][i] for i in index], tokenizer.pad_token_id, device)
            batch_scores, names = output.saliency(network, ids, mask)
            for row, i in enumerate(index):
                per_token[i] = batch_scores[:, row, :lengths[i]]
                chosen[i] = names[row]
    finally:
        network.train(was_training)

    frames = []
    for i, text in enumerate(texts):
        words, pieces = _words(tokenizer, text, encoded, i)
        if not words:
            continue
        for k, name in enumerate(chosen[i]):
            scores = per_token[i][k]
            word_scores = np.array([np.sqrt(np.sum(scores[p] ** 2)) for p in pieces], dtype=np.float64)
            total = word_scores.sum()
            share = word_scores / total if total > 0 else np.full(len(words), np.nan)
            frames.append(pd.DataFrame({"text_id": i, "word_id": np.arange(len(words)), "word": words,
                                        "saliency": word_scores, "saliency_share": share,
                                        "target": [name] * len(words)}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, ["int64", "int64", "object",
                                                                              "float64", "float64", "object"])})
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    # rows grouped by text, then by target in the order the estimator gives them, words in reading order
    order = {name: rank for rank, name in enumerate(output.all_names)}
    table["_rank"] = table["target"].map(lambda t: order.get(t, len(order)))
    return table.sort_values(["text_id", "_rank", "word_id"], kind="stable").drop(columns="_rank") \
        .reset_index(drop=True)


# ---------------------------------------------------------------------- what f is, per estimator
class _Output:
    """The scalar output(s) f whose gradient is taken."""

    all_names: list

    @staticmethod
    def of(estimator, target, n_projections, random_state) -> _Output:
        head = estimator.network_.task_head
        if head is None:
            if target is not None:
                raise ValueError(f"An embedder has no targets to choose from; explain it with target=None "
                                 f"(got target={target!r}).")
            if isinstance(n_projections, bool) or not isinstance(n_projections, (int, np.integer)) \
                    or n_projections < 1:
                raise ValueError(f"n_projections must be an int >= 1; got {n_projections!r}.")
            return _EmbeddingOutput(int(n_projections), random_state)
        if hasattr(estimator, "classes_"):
            return _ClassOutput(estimator, target)
        return _TargetOutput(estimator, target)

    def saliency(self, network, ids, mask) -> tuple[np.ndarray, list]:
        """Token saliencies (n_explained, batch, tokens) and, per text, the names of what was explained."""
        raise NotImplementedError


def _gradients(network, ids, mask):
    """Leaf input embeddings E and the pooled sentence vector, with a graph from E to it."""
    with torch.enable_grad():
        embeds = network.embed_tokens(ids).detach().float().requires_grad_(True)
        hidden = network.encode(embeds, mask)
        return embeds, network.sentence(hidden, mask).float()


def _token_scores(f, embeds, retain, mode) -> torch.Tensor:
    """a_t per text and token (``mode`` as in training); texts are independent in eval mode, so f may be
    summed over the batch."""
    (grad,) = torch.autograd.grad(f, embeds, retain_graph=retain)
    return token_saliency(grad, embeds.detach(), mode)


class _TargetOutput(_Output):
    def __init__(self, estimator, target):
        n = estimator.network_.task_head.out_features
        names = _target_names(estimator, n)
        self.all_names = names
        if target is None:
            self.indices = list(range(n))
        elif isinstance(target, str):
            if target not in names:
                raise ValueError(f"Unknown target {target!r}; this regressor's targets are {names!r} "
                                 f"(or their indices 0..{n - 1}).")
            self.indices = [names.index(target)]
        elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if not -n <= target < n:
                raise ValueError(f"target={target} is out of range for a regressor with {n} target(s) {names!r}.")
            self.indices = [int(target) % n]
        else:
            raise ValueError(f"target must be None, a target index or a target name {names!r}; got {target!r}.")
        scale = getattr(estimator, "target_scale_", None)
        self.scale = np.ones(n) if scale is None else np.asarray(scale, dtype=np.float64).ravel()
        self.names = [names[k] for k in self.indices]

    def saliency(self, network, ids, mask):
        embeds, sentence = _gradients(network, ids, mask)
        with torch.enable_grad():
            outputs = network.task_head(sentence)
            last = len(self.indices) - 1
            rows = [_token_scores(outputs[:, k].sum(), embeds, retain=j < last, mode=self.mode) * float(self.scale[k])
                    for j, k in enumerate(self.indices)]
        return torch.stack(rows).detach().cpu().numpy(), [self.names] * len(ids)


class _ClassOutput(_Output):
    def __init__(self, estimator, target):
        classes = list(estimator.classes_.tolist())
        self.classes = classes
        self.all_names = classes
        self.index = None
        if target is not None:
            matches = [k for k, c in enumerate(classes) if _same_label(c, target)]
            if not matches:
                raise ValueError(f"Unknown class {target!r}; this classifier's classes are {classes!r}.")
            self.index = matches[0]

    def saliency(self, network, ids, mask):
        embeds, sentence = _gradients(network, ids, mask)
        with torch.enable_grad():
            logits = network.task_head(sentence)
            if self.index is None:
                picked = logits.detach().argmax(1)
            else:
                picked = torch.full((len(ids),), self.index, dtype=torch.long, device=logits.device)
            f = logits.gather(1, picked[:, None]).sum()
            rows = _token_scores(f, embeds, retain=False, mode=self.mode)[None]
        return rows.detach().cpu().numpy(), [[self.classes[k]] for k in picked.tolist()]


class _EmbeddingOutput(_Output):
    all_names = ["embedding"]

    def __init__(self, n_projections, random_state):
        self.n_projections = n_projections
        self.random_state = random_state

    def saliency(self, network, ids, mask):
        embeds, sentence = _gradients(network, ids, mask)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(0 if self.random_state is None else int(self.random_state))
        width = sentence.shape[-1]
        projections = torch.randn(self.n_projections, width, generator=generator).to(sentence.device)
        with torch.enable_grad():
            z = torch.nn.functional.normalize(sentence, dim=-1)
            squares = sum(_token_scores((z @ v).sum(), embeds, retain=j < self.n_projections - 1,
                                       mode=self.mode) ** 2
                          for j, v in enumerate(projections))
        rows = (squares / self.n_projections).sqrt()[None]
        return rows.detach().cpu().numpy(), [["embedding"]] * len(ids)


def _target_names(estimator, n) -> list:
    saved = getattr(estimator, "metadata_", None) or {}
    names = saved.get("va_cols") if isinstance(saved, dict) else None
    if isinstance(names, (list, tuple)) and len(names) == n and all(isinstance(s, str) for s in names):
        return list(names)
    return [f"target_{k}" for k in range(n)]


def _same_label(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------- tokens and words
def _encode(tokenizer, texts, max_length) -> dict:
    fast = bool(getattr(tokenizer, "is_fast", False))
    with TOKENIZER_LOCK:  # the truncation setting of a fast tokenizer is shared state
        encoded = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length,
                            return_special_tokens_mask=True, return_offsets_mapping=fast)
        full = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    n_truncated = sum(len(ids) > max_length for ids in full)
    if n_truncated:
        warn(f"{n_truncated} of {len(texts)} texts are longer than max_length={max_length} tokens; only their "
             "first words are explained.")
    return {"encoding": encoded, "input_ids": encoded["input_ids"], "fast": fast,
            "special": encoded["special_tokens_mask"],
            "offsets": encoded["offset_mapping"] if fast else None}


def _pad(rows, pad_id, device):
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = row
        mask[r, :len(row)] = True
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def _words(tokenizer, text, encoded, i) -> tuple[list[str], list[list[int]]]:
    """The words of text ``i`` and, for each, the positions of its pieces (special tokens left out).

    With a fast tokenizer a word is first the pre-tokenizer's word (``word_ids``); a punctuation-only word
    is then joined to the word it touches without a space between them, so that "haven't", "stolen." and
    "3.5" stay one word each, as written. With a slow tokenizer, WordPiece ``##`` pieces join the piece
    before them.
    """
    special = np.asarray(encoded["special"][i], dtype=bool)
    ids = encoded["input_ids"][i]
    groups: list[list[int]] = []
    if encoded["fast"]:
        word_ids = encoded["encoding"].word_ids(i)
        offsets = encoded["offsets"][i]
        current = object()
        for t, w in enumerate(word_ids):
            if special[t] or w is None:
                current = object()
                continue
            if w != current:
                groups.append([])
                current = w
            groups[-1].append(t)
        spans = [(min(offsets[t][0] for t in g), max(offsets[t][1] for t in g)) for g in groups]
        merged, merged_spans, previous = [], [], ""
        for group, (start, end) in zip(groups, spans):
            own = text[start:end]
            if merged and end > start and merged_spans[-1][1] == start and \
                    (_is_punctuation(own) or _is_punctuation(previous)):
                merged[-1] = merged[-1] + group
                merged_spans[-1] = (merged_spans[-1][0], end)
            else:
                merged.append(list(group))
                merged_spans.append((start, end))
            previous = own
        words = []
        for group, (start, end) in zip(merged, merged_spans):
            piece_text = text[start:end] if end > start else \
                tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens([ids[t] for t in group]))
            words.append(piece_text.strip())
        return words, merged
    pieces = tokenizer.convert_ids_to_tokens(ids)
    for t, piece in enumerate(pieces):
        if special[t]:
            continue
        if groups and piece.startswith("##") and groups[-1][-1] == t - 1:
            groups[-1].append(t)
        else:
            groups.append([t])
    words = [tokenizer.convert_tokens_to_string([pieces[t] for t in g]).strip() for g in groups]
    return words, groups


def _is_punctuation(span: str) -> bool:
    return bool(span) and not any(ch.isalnum() for ch in span)
