"""The judge classifier: its held-out report against scikit-learn, determinism, persistence, the store.

One small judge (a few hundred Shapes images, a narrow network, two epochs) is trained once per module and
shared; the tests that need a second training use tiny data. The default judge on 12 000 Shapes images is
checked by the ``slow`` test at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from captum.attr import DeepLift
from safetensors.torch import save as save_safetensors
from sklearn.metrics import accuracy_score, confusion_matrix

import auditkit.bias.judge as judge_module
from auditkit import ConfigError, DataError, RunStore, TrainingError, WeightsError
from auditkit._atomic import json_bytes
from auditkit.bias import Judge, JudgeReport, holdout_split, train_judge
from auditkit.data.shapes import ATTRIBUTES, Shapes
from auditkit.metrics.features import get_extractor, known_extractors

SMALL = {"epochs": 2, "width": 4, "batch_size": 64, "progress": False}


@pytest.fixture(scope="module")
def data() -> Shapes:
    return Shapes(400, seed=1)


@pytest.fixture(scope="module")
def judge(data: Shapes) -> Judge:
    return train_judge(data, seed=3, **SMALL)


@pytest.fixture(scope="module")
def saved(judge: Judge, tmp_path_factory: pytest.TempPathFactory) -> Judge:
    """The module's judge, saved to a folder (``_folder(saved)``)."""
    judge.save(tmp_path_factory.mktemp("judge"))
    return judge


def _folder(judge: Judge) -> Path:
    assert judge.source is not None
    return Path(judge.source).parent


# --------------------------------------------------------------------------- the report


def test_report_equals_sklearn_on_the_held_out_images(data: Shapes, judge: Judge) -> None:
    train_idx, hold_idx = holdout_split(len(data), 0.2, 3)
    assert sorted(train_idx.tolist() + hold_idx.tolist()) == list(range(len(data)))
    held_ids = [data.ids[i] for i in hold_idx.tolist()]
    assert judge.report.holdout_ids_sha256 == hashlib.sha256("\n".join(held_ids).encode()).hexdigest()
    assert (judge.report.n_train, judge.report.n_holdout) == (320, 80)

    predicted = judge.predict(data.images[hold_idx])
    assert predicted.dtype == torch.int64 and predicted.shape == (80, 4)
    for j, (attr, values) in enumerate(data.attributes.items()):
        y_true, y_pred = data.labels[hold_idx, j].numpy(), predicted[:, j].numpy()
        assert judge.report.accuracy[attr] == accuracy_score(y_true, y_pred)
        expected = confusion_matrix(y_true, y_pred, labels=list(range(len(values))))
        assert judge.report.confusion[attr] == expected.tolist()
        rates = judge.report.confusion_rates(attr)
        seen = expected.sum(axis=1) > 0
        reference = confusion_matrix(y_true, y_pred, labels=list(range(len(values))), normalize="true")
        torch.testing.assert_close(rates[seen], torch.from_numpy(reference[seen]), rtol=0, atol=1e-15)
        assert torch.isnan(rates[~seen]).all()  # P(predicted | true) is unknown for an unseen value


def test_report_round_trips_through_json(judge: Judge) -> None:
    # json_bytes is how auditkit writes JSON: sorted keys, so the attribute order must survive that.
    again = JudgeReport.from_dict(json.loads(json_bytes(judge.report.to_dict())))
    assert again == judge.report
    assert list(again.attributes.items()) == list(judge.attributes.items()) == list(ATTRIBUTES.items())


def test_probabilities_and_predictions_follow_the_logits(data: Shapes, judge: Judge) -> None:
    logits = judge.logits(data.images[:50], batch_size=16)
    proba = judge.predict_proba(data.images[:50])
    predicted = judge.predict(data)
    assert list(logits) == list(judge.attributes)
    for j, (attr, values) in enumerate(judge.attributes.items()):
        assert logits[attr].shape == (50, len(values))
        torch.testing.assert_close(proba[attr], torch.softmax(logits[attr].double(), 1).float())
        assert torch.equal(predicted[:50, j], logits[attr].argmax(1))
    assert torch.equal(judge.logits(data)["shape"][:50], judge.logits(data.images[:50])["shape"])


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_weights_and_another_seed_does_not() -> None:
    tiny = Shapes(96, seed=5)
    first = train_judge(tiny, seed=11, **SMALL).network.state_dict()
    second = train_judge(tiny, seed=11, **SMALL).network.state_dict()
    other = train_judge(tiny, seed=12, **SMALL).network.state_dict()
    assert list(first) == list(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_training_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_judge(Shapes(64, seed=2), seed=1, **SMALL)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- persistence


def test_save_load_round_trip_gives_identical_logits(data: Shapes, saved: Judge) -> None:
    folder = _folder(saved)
    for path in (folder, folder / "judge.json", folder / "judge.safetensors"):
        loaded = Judge.load(path)
        assert loaded.attributes == saved.attributes and loaded.image_shape == saved.image_shape
        assert loaded.report == saved.report and loaded.weights_sha256 == saved.weights_sha256
        mine, theirs = saved.logits(data), loaded.logits(data)
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    meta = json.loads((folder / "judge.json").read_text())
    assert (
        meta["weights"]["sha256"] == hashlib.sha256((folder / "judge.safetensors").read_bytes()).hexdigest()
    )


def test_one_changed_byte_in_the_weights_is_refused(saved: Judge, tmp_path) -> None:
    folder = _folder(saved)
    blob = bytearray((folder / "judge.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (tmp_path / "judge.safetensors").write_bytes(bytes(blob))
    (tmp_path / "judge.json").write_bytes((folder / "judge.json").read_bytes())
    with pytest.raises(WeightsError, match="SHA-256") as info:
        Judge.load(tmp_path)
    assert str(tmp_path / "judge.safetensors") in str(info.value)


def test_missing_files_name_the_path(saved: Judge, tmp_path) -> None:
    nowhere = tmp_path / "no-such-judge"
    with pytest.raises(WeightsError) as info:
        Judge.load(nowhere)
    assert str(nowhere / "judge.json") in str(info.value)
    (tmp_path / "judge.json").write_bytes((_folder(saved) / "judge.json").read_bytes())
    with pytest.raises(WeightsError, match="missing") as info:
        Judge.load(tmp_path / "judge.json")
    assert str(tmp_path / "judge.safetensors") in str(info.value)


def test_corrupt_json_and_wrong_keys_are_refused(saved: Judge, tmp_path) -> None:
    folder = _folder(saved)
    (tmp_path / "judge.safetensors").write_bytes((folder / "judge.safetensors").read_bytes())
    (tmp_path / "judge.json").write_text('{"format": "auditkit-judge", ')
    with pytest.raises(WeightsError, match="not readable JSON"):
        Judge.load(tmp_path)

    # Weights of another architecture, with a matching hash: the keys and shapes must still fit.
    state = {k: v.clone() for k, v in saved.network.state_dict().items()}
    state.pop("heads.0.bias")
    state["extra.weight"] = torch.zeros(2)
    state["heads.1.weight"] = torch.zeros(5, 5)
    blob = save_safetensors(state)
    (tmp_path / "judge.safetensors").write_bytes(blob)
    meta = json.loads((folder / "judge.json").read_text())
    meta["weights"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (tmp_path / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="heads.0.bias") as info:
        Judge.load(tmp_path)
    message = str(info.value)
    assert "extra.weight" in message and "heads.1.weight" in message and str(tmp_path) in message


# --------------------------------------------------------------------------- input checks


def test_bad_images_are_data_errors(judge: Judge) -> None:
    good = torch.rand(2, 3, 32, 32)
    for bad in (torch.rand(2, 3, 16, 16), torch.rand(2, 1, 32, 32), good.double(), good[0]):
        for method in (judge.logits, judge.predict, judge.features):
            with pytest.raises(DataError):
                method(bad)
    nan = good.clone()
    nan[1, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        judge.predict(nan)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        judge.predict(good * 2)
    with pytest.raises(DataError, match="3×32×32"):  # the head module checks the shape too
        judge.head("shape")(torch.rand(1, 3, 8, 8))


def test_bad_training_options_are_refused(data: Shapes) -> None:
    with pytest.raises(ConfigError, match=r"\['shape', 'colour', 'size', 'position'\]"):
        train_judge(data, attributes=["shape", "hue"], **SMALL)
    for holdout in (0, 1, 1.5, -0.1):
        with pytest.raises(ConfigError, match="holdout"):
            train_judge(data, holdout=holdout, **SMALL)
    with pytest.raises(ConfigError, match="lr"):
        train_judge(data, lr=float("nan"), **SMALL)
    with pytest.raises(ConfigError, match="epochs"):
        train_judge(data, **{**SMALL, "epochs": 0})
    with pytest.raises(DataError, match="at least 2"):
        train_judge(Shapes(0), **SMALL)


def test_thin_holdout_warns_and_attribute_subset_keeps_order(data: Shapes) -> None:
    tiny = data.subset(range(30))  # 6 held-out images cannot cover 3 values of each attribute twice
    with pytest.warns(UserWarning, match="fewer than 2 held-out images"):
        judge = train_judge(tiny, attributes=["position", "shape"], **SMALL)
    assert list(judge.attributes) == ["position", "shape"]
    assert judge.predict(tiny).shape == (30, 2)
    with pytest.raises(ConfigError, match="colour"):
        judge.head("colour")


# --------------------------------------------------------------------------- heads and features


def test_head_equals_logits_and_is_differentiable(data: Shapes, judge: Judge) -> None:
    images = data.images[:20]
    logits = judge.logits(images)
    for attr in judge.attributes:
        head = judge.head(attr)
        with torch.no_grad():
            assert torch.equal(head(images), logits[attr])
    x = images.clone().requires_grad_(True)
    judge.head("position")(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    relus = [m for m in judge.network.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and not any(m.inplace for m in relus)
    assert len({id(m) for m in relus}) == len(relus)  # each ReLU used once, as DeepLift requires


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks:UserWarning")  # captum's notice
def test_deeplift_on_a_head_satisfies_summation_to_delta(data: Shapes, judge: Judge) -> None:
    predicted = judge.predict(data.images[:4])
    images = data.images[:4].clone().requires_grad_(True)
    for j, attr in enumerate(judge.attributes):
        head = judge.head(attr)
        for baseline in (torch.zeros_like(images), torch.full_like(images, 0.5)):
            attributions, delta = DeepLift(head).attribute(
                images, baselines=baseline, target=predicted[:, j], return_convergence_delta=True
            )
            with torch.no_grad():
                change = (head(images) - head(baseline)).gather(1, predicted[:, j, None]).squeeze(1)
            # captum's delta: how far the attributions' sum misses f(x) - f(baseline); with ReLU as the
            # only nonlinearity it is rounding error (max-pooling made it ~20 % of the change).
            assert attributions.shape == images.shape
            assert delta.abs().max() <= 1e-4 * change.abs().max() + 1e-6, (attr, delta, change)


def test_registered_extractor_matches_features(data: Shapes, saved: Judge) -> None:
    assert "judge" in known_extractors()
    extractor = get_extractor("judge", path=_folder(saved), batch_size=64)
    assert extractor.name == "judge" and extractor.dim == saved.network.feature_dim
    assert extractor.info["weights_sha256"] == saved.weights_sha256
    expected = saved.features(data, batch_size=64)
    assert expected.shape == (len(data), saved.network.feature_dim)
    assert torch.equal(extractor.extract(data), expected)
    with pytest.raises(ConfigError, match="bad options"):
        get_extractor("judge", path=_folder(saved), colour="red")


def test_reimport_registers_again_without_error() -> None:
    code = (
        "import importlib, auditkit.bias.judge as m; importlib.reload(m); "
        "from auditkit.metrics.features import known_extractors; assert 'judge' in known_extractors()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- the store


def test_store_run_records_training(data: Shapes, tmp_path) -> None:
    store = RunStore(tmp_path / "home")
    judge = train_judge(data, seed=3, store=store, name="shapes-judge", **SMALL)
    run = store.get_run(judge.run_id)
    assert (run.kind, run.name, run.status) == ("judge", "shapes-judge", "completed")
    assert run.config["epochs"] == 2 and run.config["data"]["info"]["source"] == "shapes"
    records = {a.relpath: a for a in store.artifacts(run.id)}
    assert set(records) == {"judge.json", "judge.safetensors"}
    for rel, record in records.items():
        assert record.sha256 == hashlib.sha256((run.path / rel).read_bytes()).hexdigest()
    losses = store.metrics(run.id, "train/loss")
    assert [m.step for m in losses] == [1, 2] and all(math.isfinite(m.value) for m in losses)
    for attr, value in judge.report.accuracy.items():
        [logged] = store.metrics(run.id, f"holdout/accuracy/{attr}")
        assert logged.value == value
    loaded = Judge.load(run.path)
    assert loaded.run_id == run.id and loaded.report == judge.report
    assert torch.equal(loaded.logits(data)["size"], judge.logits(data)["size"])


def test_nan_loss_fails_the_run_with_advice(data: Shapes, tmp_path, monkeypatch) -> None:
    store = RunStore(tmp_path / "home")
    monkeypatch.setattr(judge_module.F, "cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    with pytest.raises(TrainingError, match="lower lr"):
        train_judge(data, store=store, **SMALL)
    [run] = store.list_runs(kind="judge")
    assert run.status == "failed"


# --------------------------------------------------------------------------- the default judge


@pytest.mark.slow
def test_default_judge_reads_every_shapes_attribute() -> None:
    judge = train_judge(Shapes(12000, seed=0), progress=False)
    assert min(judge.report.accuracy.values()) >= 0.98, judge.report.accuracy
    fresh = Shapes(2000, seed=7, noise=0.05)  # unseen images, with background noise it never trained on
    predicted = judge.predict(fresh)
    for j, attr in enumerate(judge.attributes):
        assert (predicted[:, j] == fresh.labels[:, j]).float().mean() >= 0.98, attr


def test_feature_extraction_leaves_the_judge_in_eval_mode(judge: Judge, data: Shapes) -> None:
    # a regression: the extractor restored its wrapper's (training) flag onto the judge's network, so the
    # next predictions ran batch norm in training mode and changed its running statistics
    before = {k: v.clone() for k, v in judge.network.state_dict().items()}
    predicted = judge.predict(data.images[:64])
    judge.feature_extractor().extract_all(data.images[:64])
    assert not any(m.training for m in judge.network.modules())
    assert torch.equal(judge.predict(data.images[:64]), predicted)
    for key, value in judge.network.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_one_epoch_on_tiny_data_trains() -> None:
    # a regression: four or fewer steps made OneCycleLR divide by zero
    for n in (40, 100):
        tiny = train_judge(Shapes(n, seed=2), epochs=1, width=4, batch_size=32, seed=0, progress=False)
        assert set(tiny.report.accuracy) == set(ATTRIBUTES)
