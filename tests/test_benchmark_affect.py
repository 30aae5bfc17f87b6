"""The affect benchmark suite (benchmarks/affect) end to end on small synthetic corpora and a tiny encoder."""

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.affect.__main__ import main, parse_params
from benchmarks.affect.evaluate import alignment_uniformity, neighbour_probe, va_probe
from benchmarks.affect.methods import all_methods
from benchmarks.affect.readout import main as readout_main
from benchmarks.affect.readout import score_embeddings
from benchmarks.affect.suite import PROFILES
from benchmarks.affect.tasks import emobank_corpus, goemotions_corpus
from benchmarks.data import DataNotFoundError

EMOTIONS = ("admiration amusement anger annoyance approval caring confusion curiosity desire disappointment "
            "disapproval disgust embarrassment excitement fear gratitude grief joy love nervousness optimism pride "
            "realization relief remorse sadness surprise neutral").split()
EKMAN = {"anger": ["anger", "annoyance", "disapproval"], "disgust": ["disgust"], "fear": ["fear", "nervousness"],
         "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief", "pride",
                 "admiration", "desire", "caring"],
         "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
         "surprise": ["surprise", "realization", "confusion", "curiosity"]}
SENTIMENT = {"positive": EKMAN["joy"], "negative": EKMAN["anger"] + EKMAN["disgust"] + EKMAN["fear"] + EKMAN["sadness"],
             "ambiguous": EKMAN["surprise"]}
# words of the tiny test vocabulary that give away valence (first) and arousal (second)
VA_WORDS = {(4.5, 4.5): "thrilled", (4.5, 1.5): "calm", (1.5, 1.5): "gloomy", (1.5, 4.5): "furious"}
CLASS_WORDS = {"joy": "happy", "anger": "angry", "sadness": "sad", "fear": "scared", "neutral": "table"}


def write_data(root, n=60, seed=0):
    rng = np.random.default_rng(seed)
    filler = "the a day was is it and my this so".split()
    rows = []
    for split, count in (("train", n), ("dev", n // 2), ("test", n // 2)):
        for i in range(count):
            (v, a), word = list(VA_WORDS.items())[i % 4]
            words = [word, *rng.choice(filler, 4)]
            rng.shuffle(words)
            rows.append({"id": f"{split}{i}", "split": split, "V": np.clip(v + rng.normal(0, 0.4), 1, 5),
                         "A": np.clip(a + rng.normal(0, 0.4), 1, 5), "D": 3.0, "text": " ".join(words)})
    rows[0]["V"] = 3.0  # a midpoint text, left out of the polarity task
    (root / "emobank").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "emobank" / "emobank.csv", index=False)
    go = root / "goemotions"
    go.mkdir()
    (go / "emotions.txt").write_text("\n".join(EMOTIONS))
    (go / "ekman_mapping.json").write_text(json.dumps(EKMAN))
    (go / "sentiment_dict.json").write_text(json.dumps(SENTIMENT))
    classes = list(CLASS_WORDS)
    for split, count in (("train", n), ("dev", n // 2), ("test", n // 2)):
        lines = []
        for i in range(count):
            group = classes[i % len(classes)]
            label = EMOTIONS.index(group if group != "neutral" else "neutral")
            words = [CLASS_WORDS[group], *rng.choice(filler, 3)]
            lines.append(f"{' '.join(words)}\t{label}\t{split}{i}")
        lines.append(f"i feel joy and anger\t{EMOTIONS.index('joy')},{EMOTIONS.index('anger')}\tmixed")
        lines.append(f"i feel joy and love\t{EMOTIONS.index('joy')},{EMOTIONS.index('love')}\tjoyful")
        (go / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("affect-data"))


def test_tasks_group_rows_as_documented(data_dir):
    bank = emobank_corpus(data_dir)
    assert bank.frames["train"]["polarity"].iloc[0] == -1  # V = 3 exactly: no side
    assert set(bank.frames["test"]["polarity"]) <= {0, 1}
    go = goemotions_corpus(data_dir)
    train = go.frames["train"]
    assert "i feel joy and anger" not in train["text"].tolist()  # spans two Ekman groups
    assert train.set_index("text").loc["i feel joy and love", "ekman"] == "joy"
    assert train.set_index("text").loc["i feel joy and love", "polarity"] == "positive"
    test = go.frames["test"].set_index("text")
    assert pd.isna(test.loc["i feel joy and anger", "ekman"]) and pd.isna(test.loc["i feel joy and anger", "polarity"])


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        goemotions_corpus(tmp_path)
    with pytest.raises(DataNotFoundError, match="emobank.csv"):
        emobank_corpus(tmp_path)


def test_alignment_and_uniformity_by_hand():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    va = np.array([[1.0, 1.0], [1.05, 1.0], [5.0, 5.0]])
    scores = alignment_uniformity(x, va, max_distance=0.1)
    assert scores["test/geometry/alignment"] == 0.0  # the one positive pair coincides
    # pairs' squared distances 0, 2, 2: log mean exp(-2 d²)
    assert scores["test/geometry/uniformity"] == pytest.approx(np.log((1 + 2 * np.exp(-4)) / 3))
    assert scores["test/geometry/va_gap"] == pytest.approx(2.0)


def test_readouts_tell_linear_from_neighbourhood_structure():
    rng = np.random.default_rng(0)
    va = rng.uniform(1, 5, size=(400, 2))
    # VA as two directions among loud irrelevant ones: a linear read-out ignores the noise, neighbours cannot
    line = score_embeddings(np.hstack([va - 3, rng.normal(0, 1.5, size=(400, 6))]), va)
    # valence wound 0.9 times round a circle: near labels stay near, but no direction of the space is valence
    turn = 0.9 * 2 * np.pi * (va[:, 0] - 1) / 4
    circle = score_embeddings(np.hstack([np.cos(turn)[:, None], np.sin(turn)[:, None],
                                         rng.normal(0, 0.05, size=(400, 6))]), va)
    assert line["linear/r_V"] > 0.95 and line["linear/r_V"] > line["neighbours/r_V"] + 0.02
    assert circle["neighbours/r_V"] > 0.99 and circle["neighbours/r_V"] > circle["linear/r_V"] + 0.1
    assert abs(circle["neighbours/r_A"]) < 0.2  # arousal is not in these embeddings at all


def test_neighbour_probe_is_fitted_on_train_and_scored_apart():
    rng = np.random.default_rng(1)
    va = rng.uniform(1, 5, size=(500, 2))
    turn = 0.9 * 2 * np.pi * (va[:, 0] - 1) / 4
    x = np.hstack([np.cos(turn)[:, None], np.sin(turn)[:, None], rng.normal(0, 0.05, size=(500, 6))])
    scores = va_probe(x[:400], va[:400], {"dev": (x[400:450], va[400:450]), "test": (x[450:], va[450:])})
    assert {"dev/knn/r_V", "test/knn/mae_A", "test/probe/r_A"} <= set(scores)
    assert scores["test/knn/r_V"] > 0.98 and scores["test/knn/r_V"] > scores["test/probe/r_V"] + 0.1
    assert scores["test/knn/mae_V"] < scores["test/probe/mae_V"]
    # k never exceeds the texts an inner training fold holds
    assert neighbour_probe(8).param_grid == {"n_neighbors": [5]}
    assert neighbour_probe(3).param_grid == {"n_neighbors": [2]}
    assert neighbour_probe(1000).param_grid == {"n_neighbors": [5, 10, 20, 50]}


def test_suite_runs_every_method_writes_its_table_and_resumes(data_dir, tiny_bert, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--profile", "cpu", "--seeds", "0,1", "--backbone", tiny_bert, "--device", "cpu", "--batch-size", "16",
            "--data-dir", str(data_dir), "--out", str(out), "--work-dir", str(work), "--tag", "t"]
    assert main(argv) == 0
    report = json.loads((out / "affect-t.json").read_text())
    runs = {(r["corpus"], r["method"], r["seed"]): r for r in report["runs"]}
    methods = all_methods()
    # on EmoBank's continuous labels the defaults already carry this term, so the row would repeat CARL's
    repeated = {("emobank", "carl_ranking_100_sharp")}
    for corpus in ("emobank", "goemotions"):
        for name in (n for n in PROFILES["cpu"].methods_for(corpus) if n in methods):
            for seed in (0, 1) if methods[name].seeded else (0,):
                if (corpus, name) not in repeated:
                    assert runs.pop((corpus, name, seed))["error"] is None, (corpus, name, seed)
    assert not runs  # nothing beyond the profile's methods, and no row twice
    runs = {(r["corpus"], r["method"], r["seed"]): r for r in report["runs"]}
    assert set(methods) <= set(PROFILES["cpu"].methods_for("emobank"))  # every method and ablation on EmoBank
    # the words give the labels away, so the lexical baseline must find them
    assert runs[("emobank", "tfidf", 0)]["scores"]["test/probe/r_V"] > 0.8
    assert runs[("goemotions", "tfidf", 0)]["scores"]["test/ekman/acc"] > 0.9
    assert "test/e2e/r_V" in runs[("emobank", "carl_e2e", 0)]["scores"]
    assert "test/e2e/acc" in runs[("goemotions", "plain", 1)]["scores"]
    assert "test/geometry/alignment" in runs[("emobank", "carl", 0)]["scores"]
    assert {"test/knn/r_V", "dev/knn/r_A"} <= set(runs[("emobank", "tfidf", 0)]["scores"])  # sparse too
    assert runs[("emobank", "carl", 0)]["scores"]["train/detection_loss"] == 0  # detection is off by default
    # ranking_weight="auto": the term on EmoBank's VA labels, not on GoEmotions' classes
    assert runs[("emobank", "carl", 0)]["params"]["ranking_weight"] == 100.0
    assert "ranking_weight" not in runs[("goemotions", "carl", 0)]["params"]
    assert "ranking_weight" not in runs[("emobank", "carl_no_ranking", 0)]["params"]
    assert runs[("emobank", "carl_detection", 1)]["scores"]["train/detection_loss"] > 0
    assert "test/geometry/alignment" not in runs[("emobank", "tfidf", 0)]["scores"]
    table = (out / "affect-t.md").read_text()
    assert "ablation: λ = 0.1, random token selection" in table and " ± " in table
    assert "neighbour probe (diagnostic)" in table and "kNN r_V" in table
    assert (out / "projection-t.png").stat().st_size > 0 and (out / "scores-t.png").stat().st_size > 0
    # the read-out diagnostic reads the table's stored test embeddings back
    assert readout_main(["t", "--data-dir", str(data_dir), "--out", str(out), "--work-dir", str(work)]) == 0
    readout = (out / "readout.md").read_text()
    assert "| CARL (CARLEmbedder defaults) | 2 |" in readout and "TF-IDF" not in readout
    # a second run reads every result back instead of training again
    first = work.glob("*.json")
    stamps = {p: p.stat().st_mtime_ns for p in first}
    assert main(argv) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    again = json.loads((out / "affect-t.json").read_text())["runs"]
    assert [r["scores"] for r in again] == [r["scores"] for r in report["runs"]]


def test_tuning_scores_dev_only(data_dir, tiny_bert, tmp_path):
    methods = "carl,detection_weight=0.5,plain learning_rate=2e-05,plain learning_rate=0.0002"
    argv = ["--tune", "--corpora", "emobank", "--methods", methods, "--backbone", tiny_bert,
            "--device", "cpu", "--batch-size", "16", "--data-dir", str(data_dir), "--out", str(tmp_path),
            "--work-dir", str(tmp_path / "work")]
    assert main(argv) == 0
    runs = json.loads((tmp_path / "affect-tune-cpu.json").read_text())["runs"]
    assert [r["method"] for r in runs] == methods.split(",")
    assert all(r["scores"] and not any(k.startswith("test/") for k in r["scores"]) for r in runs)
    # each learning rate is a run of its own, not the first one read back
    assert runs[2]["scores"]["dev/probe/r_V"] != runs[3]["scores"]["dev/probe/r_V"]


def test_tune_base_parses_numbers_strings_and_auto():
    """``--tune-base``: a number is a number even where the default is a string ("auto")."""
    assert parse_params("ranking_weight=100.0,label_temperature=0.05,perturbation=mask,projection_dim=None") == {
        "ranking_weight": 100.0, "label_temperature": 0.05, "perturbation": "mask", "projection_dim": None}
    assert parse_params("ranking_weight=auto,queue_size=4096") == {"ranking_weight": "auto", "queue_size": 4096}


def _pairs_fixture():
    """Minimal pairs of the shape ``skcarl.datasets.load_minimal_pairs`` returns, in the test vocabulary."""
    rows = []
    for i in range(12):
        rows.append({"pair_id": f"a{i}", "kind": "affect", "operator": ["antonym", "swap"][i % 2],
                     "original": "the day was gloomy", "edited": "the day was thrilled", "dv": 1, "da": 1})
        rows.append({"pair_id": f"c{i}", "kind": "control", "operator": "noun", "original": "the day was gloomy",
                     "edited": "the night was gloomy", "dv": 0, "da": 0})
    rows[2]["da"] = 0  # no expectation on arousal: left out of ΔA only
    return pd.DataFrame(rows)


class _LookupModel:
    def __init__(self, vectors):
        self.vectors = vectors

    def transform(self, texts):
        return np.array([self.vectors[t] for t in texts], dtype=float)


class _FirstTwo:
    def predict(self, x):
        return x[:, :2]


def test_pair_scores_by_hand():
    from benchmarks.affect.evaluate import pair_scores, pair_split

    pairs = _pairs_fixture()
    # the edit raises the probe's V, lowers its A; the control edit moves the embedding a quarter as far
    vectors = {"the day was gloomy": [0.0, 1.0, 1.0], "the day was thrilled": [1.0, 0.0, 1.0],
               "the night was gloomy": [0.0, 1.0, 1.2]}
    scores = pair_scores(_LookupModel(vectors), _FirstTwo(), pairs)
    half = pair_split(pairs["pair_id"])
    assert set(half) == {"dev", "test"} and list(pair_split(["a3"])) == [half[3 * 2]]  # by id, not position
    for split in ("dev", "test"):
        affect = (pairs["kind"] == "affect") & (half == split)
        assert scores[f"{split}/pairs/dir_V"] == 1.0 and scores[f"{split}/pairs/dir_A"] == 0.0
        assert scores[f"{split}/pairs/n_V"] == affect.sum()
        assert scores[f"{split}/pairs/n_A"] == (affect & (pairs["da"] != 0)).sum()
        n_v, n_a = scores[f"{split}/pairs/n_V"], scores[f"{split}/pairs/n_A"]
        assert scores[f"{split}/pairs/dir"] == pytest.approx(n_v / (n_v + n_a))
        assert scores[f"{split}/pairs/antonym/dir_V"] == 1.0
        cos = lambda a, b: 1 - np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
        ratio = cos(vectors["the day was gloomy"], vectors["the day was thrilled"]) / cos(
            vectors["the day was gloomy"], vectors["the night was gloomy"])
        assert scores[f"{split}/pairs/dist_ratio"] == pytest.approx(ratio)


def test_transfer_profile_probes_the_other_corpus_and_scores_pairs_later(data_dir, tiny_bert, tmp_path,
                                                                        monkeypatch):
    """A transfer run is probed on the other corpus; the minimal pairs, missing at first, are scored from the
    kept model on a later invocation without training again."""
    import benchmarks.affect.suite as suite

    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--profile", "transfer", "--seeds", "0", "--methods", "frozen,carl", "--backbone", tiny_bert,
            "--device", "cpu", "--batch-size", "16", "--data-dir", str(data_dir), "--out", str(out),
            "--work-dir", str(work), "--tag", "t"]
    monkeypatch.setattr(suite, "load_pairs", lambda: None)
    monkeypatch.setitem(suite.PROFILES, "transfer", type(PROFILES["transfer"])(
        **{**PROFILES["transfer"].__dict__, "transfer_probe_rows": {"goemotions": 40, "emobank": 40}}))
    assert main(argv) == 0
    runs = {(r["corpus"], r["method"]): r for r in json.loads((out / "affect-t.json").read_text())["runs"]}
    assert {"test/transfer/ekman/acc", "dev/transfer/ekman/f1", "test/transfer/polarity/acc", "test/probe/r_V"} \
        <= set(runs[("emobank", "carl")]["scores"])
    assert {"test/transfer/probe/r_V", "test/transfer/polarity/acc", "test/ekman/acc"} \
        <= set(runs[("goemotions", "carl")]["scores"])
    assert not any("/pairs/" in k for r in runs.values() for k in r["scores"])
    assert "→ Ekman macro-F1" in (out / "affect-t.md").read_text()
    first = sorted(p.name for p in work.glob("*.json"))
    monkeypatch.setattr(suite, "load_pairs", _pairs_fixture)
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("*.json")}
    import skcarl.training
    monkeypatch.setattr(skcarl.training.CARLTrainer, "fit", lambda *a, **k: pytest.fail("trained again"))
    assert main(argv) == 0
    assert sorted(p.name for p in work.glob("*.json")) == first  # the same runs, rescored in place
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())
    runs = {(r["corpus"], r["method"]): r for r in json.loads((out / "affect-t.json").read_text())["runs"]}
    for run in runs.values():
        assert {"dev/pairs/dir_V", "test/pairs/dir_A", "test/pairs/dist_ratio"} <= set(run["scores"])
        assert run["pairs_version"] is not None
    assert "pairs dir ΔV" in (out / "affect-t.md").read_text()
    # --cached-only trains nothing: a method not on disk is left out of the table
    cached = [a if a != "frozen,carl" else "frozen,carl,plain" for a in argv] + ["--cached-only"]
    assert main(cached) == 0
    runs = {(r["corpus"], r["method"]) for r in json.loads((out / "affect-t.json").read_text())["runs"]}
    assert ("emobank", "carl") in runs and ("emobank", "plain") not in runs


def test_study_rule_needs_two_sds_of_gain_and_no_in_domain_loss():
    from benchmarks.affect.compare import verdict

    def runs(method, r_v, acc):
        return [{"corpus": "emobank", "method": method, "error": None,
                 "scores": {"dev/probe/r_V": v, "dev/probe/r_A": 0.5, "dev/transfer/ekman/acc": a,
                            "dev/transfer/ekman/f1": 0.3, "dev/pairs/dir": 0.6}} for v, a in zip(r_v, acc)]

    reference = runs("carl", [0.70, 0.71, 0.72], [0.50, 0.51, 0.52])  # sd 0.01 on both
    assert verdict(reference + runs("big", [0.70, 0.71, 0.72], [0.52, 0.53, 0.54]), "emobank", "big", "carl")[0]
    # ahead by 1.5 sd only
    assert not verdict(reference + runs("small", [0.70, 0.71, 0.72], [0.515, 0.525, 0.535]), "emobank",
                       "small", "carl")[0]
    # ahead on transfer, but in-domain r_V lower by 2 sd
    assert not verdict(reference + runs("costly", [0.68, 0.69, 0.70], [0.52, 0.53, 0.54]), "emobank",
                       "costly", "carl")[0]
