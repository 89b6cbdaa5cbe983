"""Feature extractors: torch-fidelity's Inception built offline from verified weights, user modules, modes.

The Inception weights are random tensors the tests build in the layout of torchvision's Inception3
(num_classes=1008, no aux head), which is the layout torch-fidelity's module loads strictly (checked by
loading the file into torch-fidelity itself). The network resizes every input to 299×299, where it runs
at a few images per second on 2 CPU cores, so the tests use a handful of 32×32 images.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import auditkit.metrics.features as features_module
from auditkit import ConfigError, DataError, WeightsError
from auditkit.data.imageset import ImageSet
from auditkit.metrics.features import (
    INCEPTION_FILE_NAMES,
    INCEPTION_SHA256_PREFIX,
    FeatureExtractor,
    get_extractor,
    inception_extractor,
    known_extractors,
    mode_deviation,
    register_extractor,
)

N_IMAGES = 3


def _random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the right keys and shapes, scaled so activations keep a useful range."""
    with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
        template = torchvision.models.inception_v3(
            num_classes=1008, aux_logits=False, weights=None, init_weights=False
        ).state_dict()
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in template.items():
        shape = value.shape
        if key.endswith("conv.weight"):  # He scaling keeps the signal alive through ~100 layers
            state[key] = torch.randn(shape, generator=g) * (2.0 / shape[1:].numel()) ** 0.5
        elif key.endswith(("bn.weight", "running_var")):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith(("bn.bias", "running_mean")):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.startswith("fc."):
            state[key] = 0.01 * torch.randn(shape, generator=g)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        else:
            raise AssertionError(f"unexpected key in torchvision's Inception3: {key}")
    return state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(state: dict[str, torch.Tensor], path: Path) -> tuple[Path, str]:
    torch.save(state, path)
    return path, _sha256(path)


def _same_network(a: FeatureExtractor, b: FeatureExtractor, skip: tuple[str, ...] = ()) -> bool:
    """Whether two Inception extractors hold identical tensors (then the same graph gives the same
    features: a cheaper check than running the network again)."""
    sa, sb = a.module.state_dict(), b.module.state_dict()
    keys = [k for k in sa if not k.startswith(skip)]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in keys)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return _random_inception_state()


@pytest.fixture(scope="module")
def weights(weights_dir: Path, state: dict[str, torch.Tensor]) -> tuple[Path, str]:
    """The random weights under a name that carries no hash, and the file's SHA-256."""
    return _save(state, weights_dir / "random-inception.pth")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    # Arbitrary floats, not multiples of 1/255: the uint8 truncation is part of what must match.
    x = torch.rand(N_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x[-1] = x[-1, :1]  # the last one is gray (three equal channels), for the grayscale test
    return x


@pytest.fixture(scope="module")
def exact(weights: tuple[Path, str]) -> FeatureExtractor:
    path, digest = weights
    return inception_extractor(path, sha256=digest, device="cpu")


@pytest.fixture(scope="module")
def exact_features(exact: FeatureExtractor, images: torch.Tensor) -> dict[str, torch.Tensor]:
    return exact.extract_all(images)


# --------------------------------------------------------------------------- equality with the references


def test_exact_features_equal_torch_fidelity(weights, images, exact, exact_features) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path, _ = weights
    reference = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
    )
    pool, logits = reference((images * 255).byte())
    assert exact_features["2048"].dtype == torch.float32
    assert exact_features["2048"].shape == (N_IMAGES, 2048)
    assert exact_features["logits_unbiased"].shape == (N_IMAGES, 1008)
    assert torch.equal(exact_features["2048"], pool)
    assert torch.equal(exact_features["logits_unbiased"], logits)
    # Not a degenerate comparison: the images give different, non-trivial features.
    assert float(pool.std(dim=0).mean()) > 1e-3
    assert torch.equal(exact.extract(images[:1]), pool[:1])  # extract() gives the first output
    assert exact.dim == 2048


def test_exact_features_equal_torchmetrics_fid_with_reference_resize(weights, images, exact_features) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    path, _ = weights
    fid = FrechetInceptionDistance(
        feature=2048, normalize=True, antialias=False, feature_extractor_weights_path=str(path)
    )
    fid.update(images, real=True)  # normalize=True: the float images go in as auditkit's do
    ours = exact_features["2048"].double()
    assert int(fid.real_features_num_samples) == N_IMAGES
    # The same float32 features, summed the same way in float64: equal to the last bit.
    assert torch.equal(fid.real_features_sum, ours.sum(dim=0))
    assert torch.equal(fid.real_features_cov_sum, ours.t().mm(ours))


@pytest.mark.slow
def test_torchmetrics_default_antialias_resize_differs(weights, images, exact_features) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    # torchmetrics' default resize (antialias=True) is not the reference one, as the module docstring says.
    path, _ = weights
    default = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(path))
    other = default.inception((images[:1] * 255).byte())
    assert not torch.allclose(other, exact_features["2048"][:1], rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- layouts


def _pytorch_fid_networks(monkeypatch, state):
    """pytorch-fid's Inception (its FID code path) built on our random weights instead of its download."""
    import pytorch_fid.inception as pfi

    def fake_download(url: str, *args, **kwargs):
        assert url == pfi.FID_WEIGHTS_URL
        return {k: v.clone() for k, v in state.items()}

    monkeypatch.setattr(pfi, "load_state_dict_from_url", fake_download)
    # fid_inception_v3() loads strictly into torchvision's Inception3 with the FID blocks: it accepting
    # our torch-fidelity-layout dict proves the released pt_inception file has torch-fidelity's keys.
    inner = pfi.fid_inception_v3()
    monkeypatch.setattr(pfi, "fid_inception_v3", lambda: inner)  # the wrapper regroups this very network
    wrapper = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    return inner, wrapper


def test_pytorch_fid_layouts_load_to_identical_features(
    monkeypatch, tmp_path, state, images, exact, exact_features
) -> None:
    inner, wrapper = _pytorch_fid_networks(monkeypatch, state)

    # The layout of pytorch-fid's released file is torch-fidelity's, key for key: the state dict it gives
    # is the very content of the fixture's file, which auditkit loads (layout "torch-fidelity").
    released = inner.state_dict()
    assert released.keys() == state.keys() and all(torch.equal(released[k], state[k]) for k in state)
    assert exact.info["layout"] == "torch-fidelity"

    # The state dict of pytorch-fid's InceptionV3 wrapper: blocks.<i>.<j> keys, no classifier.
    blocks = wrapper.state_dict()
    assert all(k.startswith("blocks.") for k in blocks) and not any("fc." in k for k in blocks)
    path, digest = _save(blocks, tmp_path / "wrapper.pth")
    e = inception_extractor(path, sha256=digest, device="cpu", outputs=("2048",))
    assert e.info["layout"] == "pytorch-fid-blocks"
    assert _same_network(e, exact, skip=("fc.",))
    assert torch.equal(e.extract(images[:1]), exact_features["2048"][:1])  # the remapped network runs
    with pytest.raises(WeightsError, match=r"no\s+classifier \(fc\)"):
        inception_extractor(path, sha256=digest, device="cpu")  # the default outputs include logits


def test_files_without_num_batches_tracked_load(tmp_path, state, exact) -> None:
    # Files saved before torch 0.4.1 lack these buffers; they play no part at inference.
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path, digest = _save(old, tmp_path / "old.pth")
    assert _same_network(inception_extractor(path, sha256=digest, device="cpu"), exact)


def test_safetensors_weights_load(tmp_path, state, exact) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "inception.safetensors"
    save_file(state, path)
    e = inception_extractor(path, sha256=_sha256(path), device="cpu")
    assert _same_network(e, exact) and e.info["layout"] == "torch-fidelity"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("drop", "Mixed_6b.branch1x1.conv.weight"),
        ("add", "extra_head.weight"),
        ("shape", "fc.bias: (10,) instead of (1008,)"),
    ],
)
def test_wrong_keys_are_rejected_by_name(tmp_path, state, change, named) -> None:
    broken = dict(state)
    if change == "drop":
        del broken[named]
    elif change == "add":
        broken[named] = torch.zeros(3)
    else:
        broken["fc.bias"] = torch.zeros(10)
    path, digest = _save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsError) as err:
        inception_extractor(path, sha256=digest, device="cpu")
    message = str(err.value)
    assert named in message and str(path) in message
    assert {"drop": "missing keys", "add": "unexpected keys", "shape": "wrong shapes"}[change] in message


@pytest.mark.filterwarnings("ignore:.*WITHOUT hash verification")
def test_unreadable_files_are_rejected(tmp_path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(WeightsError, match=r"cannot read .*garbage\.pth.*weights_only=True"):
        inception_extractor(garbage, verify=False, device="cpu")

    listed, _ = _save([torch.zeros(2)], tmp_path / "list.pth")  # type: ignore[arg-type]
    with pytest.raises(WeightsError, match="not a state dict"):
        inception_extractor(listed, verify=False, device="cpu")

    pickled = tmp_path / "module.pth"
    torch.save(nn.Linear(2, 2), pickled)  # a whole pickled module: weights_only refuses to rebuild it
    with pytest.raises(WeightsError, match="never pickled objects"):
        inception_extractor(pickled, verify=False, device="cpu")


# --------------------------------------------------------------------------- hashes


def test_full_hash_verifies_custom_weights(exact, weights) -> None:
    path, digest = weights
    assert exact.info["verified"] is True
    assert exact.info["expected_sha256"] == digest == exact.info["sha256"]
    assert exact.info["standard"] is False  # random weights are not the standard file
    assert exact.info["weights"] == str(path)
    assert exact.info["mode"] == "exact" and exact.info["device"] == "cpu"


def test_standard_name_with_wrong_content_fails_the_prefix_check(monkeypatch, tmp_path, weights) -> None:
    path, digest = weights
    for name in INCEPTION_FILE_NAMES:
        folder = tmp_path / name.split("-")[0]
        folder.mkdir()
        (folder / name).symlink_to(path)
        monkeypatch.setenv("AUDITKIT_WEIGHTS_DIR", str(folder))
        with pytest.raises(WeightsError) as err:
            inception_extractor(device="cpu")  # found through AUDITKIT_WEIGHTS_DIR
        message = str(err.value)
        assert f"does not start with {INCEPTION_SHA256_PREFIX}" in message
        assert digest in message and name in message and "verify=False" in message


def test_full_hash_must_match_exactly(weights) -> None:
    path, digest = weights
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(WeightsError, match=f"does not equal {wrong}"):
        inception_extractor(path, sha256=wrong, device="cpu")
    with pytest.raises(ConfigError, match="64 hex digits"):
        inception_extractor(path, sha256=digest[:8], device="cpu")
    with pytest.raises(ConfigError, match="contradict"):
        inception_extractor(path, sha256=digest, verify=False, device="cpu")


def test_unhashed_name_is_checked_against_the_standard_hash(weights) -> None:
    path, digest = weights
    with pytest.raises(WeightsError) as err:
        inception_extractor(path, device="cpu")
    assert f"does not start with {INCEPTION_SHA256_PREFIX}" in str(err.value)
    assert "standard FID Inception" in str(err.value) and digest in str(err.value)


def test_hash_in_a_custom_name_is_checked_like_torch_hub(tmp_path, weights) -> None:
    path, digest = weights
    good = tmp_path / f"mine-{digest[:8]}.pth"
    good.symlink_to(path)
    e = inception_extractor(good, device="cpu", outputs=("2048",))
    assert e.info["verified"] is True and e.info["expected_sha256"] == digest[:8]

    wrong = "00000000" if not digest.startswith("00000000") else "11111111"
    bad = tmp_path / f"mine-{wrong}.pth"
    bad.symlink_to(path)
    with pytest.raises(WeightsError, match=f"does not start with {wrong} .*file name"):
        inception_extractor(bad, device="cpu")


def test_verify_false_loads_and_is_recorded(weights, exact) -> None:
    path, digest = weights
    with pytest.warns(UserWarning, match="WITHOUT hash verification"):
        e = inception_extractor(path, verify=False, device="cpu")
    assert e.info["verified"] is False and e.info["expected_sha256"] is None
    assert e.info["sha256"] == digest  # still recorded, for the manifest
    assert _same_network(e, exact)


# --------------------------------------------------------------------------- finding the file, offline


def _assert_says_where_to_put_it(message: str) -> None:
    for name in INCEPTION_FILE_NAMES:
        assert name in message
    assert INCEPTION_SHA256_PREFIX in message
    assert "AUDITKIT_WEIGHTS_DIR" in message and "--inception-weights" in message
    assert "never downloads" in message


def test_missing_weights_say_what_and_where(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AUDITKIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError) as err:
        inception_extractor(device="cpu")
    _assert_says_where_to_put_it(str(err.value))
    assert "AUDITKIT_WEIGHTS_DIR is not set" in str(err.value)

    monkeypatch.setenv("AUDITKIT_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        get_extractor("inception", device="cpu")
    _assert_says_where_to_put_it(str(err.value))
    assert str(tmp_path) in str(err.value)

    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(WeightsError) as err:
        inception_extractor(missing, device="cpu")
    _assert_says_where_to_put_it(str(err.value))
    assert str(missing) in str(err.value)


def test_a_folder_is_searched_for_the_standard_names(tmp_path, weights) -> None:
    path, digest = weights
    (tmp_path / INCEPTION_FILE_NAMES[1]).symlink_to(path)
    # Found (then rejected by the hash check, which names the file it found).
    with pytest.raises(WeightsError, match=INCEPTION_FILE_NAMES[1]):
        inception_extractor(tmp_path, device="cpu")


def test_construction_never_touches_the_network(monkeypatch, weights, exact) -> None:
    import socket

    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(tfi, "load_state_dict_from_url", refuse)  # torch-fidelity imported the name itself
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    path, digest = weights
    assert _same_network(inception_extractor(path, sha256=digest, device="cpu"), exact)


# --------------------------------------------------------------------------- inputs


def test_grayscale_is_replicated_to_rgb(exact, images, exact_features) -> None:
    gray = images[-1:, :1]  # one channel; the fixture's last image is this channel three times
    assert torch.equal(exact.extract(gray), exact_features["2048"][-1:])


@pytest.mark.parametrize(
    "bad",
    [
        torch.full((2, 3, 8, 8), float("nan")),
        torch.full((2, 3, 8, 8), 1.5),
        torch.full((2, 3, 8, 8), -0.1),
        torch.rand(3, 8, 8),
        torch.rand(2, 4, 8, 8),
        torch.rand(2, 3, 8, 8).double(),
        (torch.rand(2, 3, 8, 8) * 255).byte(),
    ],
    ids=["nan", "above-1", "below-0", "no-batch-dim", "4-channels", "float64", "uint8"],
)
def test_bad_images_raise_data_error(exact, bad) -> None:
    with pytest.raises(DataError):
        exact.extract(bad)


def test_bad_options_raise_config_error(weights) -> None:
    path, digest = weights
    with pytest.raises(ConfigError, match="precision mode"):
        inception_extractor(path, sha256=digest, mode="turbo", device="cpu")
    with pytest.raises(ConfigError, match="outputs"):
        inception_extractor(path, sha256=digest, outputs=("4096",), device="cpu")
    with pytest.raises(ConfigError, match="compile=True needs mode='fast'"):
        inception_extractor(path, sha256=digest, compile=True, device="cpu")
    with pytest.raises(ConfigError, match="batch_size"):
        inception_extractor(path, sha256=digest, batch_size=0, device="cpu")
    with pytest.raises(ConfigError, match="device"):
        inception_extractor(path, sha256=digest, device="warp-drive")
    with pytest.raises(ConfigError, match="bad options for feature extractor 'inception'"):
        get_extractor("inception", weight=path)


# --------------------------------------------------------------------------- user modules and the registry


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.bn(self.conv(x)))  # N×4×(H-2)×(W-2): flattened by the extractor


def test_user_module_is_wrapped_as_is() -> None:
    net = _Tiny().train()
    e = get_extractor(net)
    with pytest.raises(ConfigError, match="not known yet"):
        _ = e.dim
    x = torch.rand(7, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    got = e.extract(x, batch_size=3)  # three batches, the last one short
    assert e.dim == 4 * 4 * 4 and got.shape == (7, 64) and got.dtype == torch.float32
    net.eval()
    with torch.no_grad():
        expected = net(x).flatten(1)
    # Eval mode during extraction (dropout off, running BN stats); batches of 3 vs 7 may round differently.
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    net.train()
    e.extract(x[:1])
    assert net.training  # the caller's mode is restored
    assert e.info["verified"] is None and e.info["sha256_of"] == "state_dict"
    assert len(e.info["sha256"]) == 64 and e.info["name"] == "module:_Tiny"
    e2 = get_extractor(_Tiny(), image_shape=(3, 6, 6), name="tiny")
    assert e2.dim == 64 and e2.info["sha256"] == e.info["sha256"] and e2.name == "tiny"
    assert e2.extract(ImageSet(x, torch.zeros(7, 0, dtype=torch.long), {})).shape == (7, 64)
    assert e2.extract(x[:0]).shape == (0, 64)


def test_exact_mode_turns_tf32_off_and_restores_it() -> None:
    switches = {
        "cuda.matmul": torch.backends.cuda.matmul,
        "cudnn.conv": torch.backends.cudnn.conv,
        "mkldnn.matmul": torch.backends.mkldnn.matmul,
    }
    seen: list[dict[str, str]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append({k: s.fp32_precision for k, s in switches.items()})
            return x.mean(dim=(2, 3))

    before = {k: s.fp32_precision for k, s in switches.items()}
    user = {"cuda.matmul": "tf32", "cudnn.conv": "tf32", "mkldnn.matmul": "bf16"}
    try:
        for k, value in user.items():
            switches[k].fp32_precision = value
        get_extractor(Probe()).extract(torch.rand(2, 3, 4, 4))
        assert seen and all(s == dict.fromkeys(switches, "ieee") for s in seen)
        assert {k: s.fp32_precision for k, s in switches.items()} == user  # restored
        # Fast mode leaves the user's switches alone (its precision is bf16 autocast anyway).
        seen.clear()
        with pytest.warns(RuntimeWarning, match="'fast' on the CPU"):
            fast = get_extractor(Probe(), mode="fast")
        fast.extract(torch.rand(2, 3, 4, 4))
        assert seen == [user, user]  # the dry run and the batch
    finally:
        for k, value in before.items():
            switches[k].fp32_precision = value


def test_registry_names_and_errors(monkeypatch) -> None:
    monkeypatch.setattr(features_module, "_REGISTRY", dict(features_module._REGISTRY))
    assert "inception" in known_extractors()
    with pytest.raises(ConfigError, match=r"unknown feature extractor 'jugde'.*'inception'"):
        get_extractor("jugde")
    with pytest.raises(ConfigError, match=r"bad options for feature extractor 'judge'.*'path'"):
        get_extractor("judge")  # auditkit.bias registers it on demand; it needs the judge's path
    register_extractor(
        "judge", lambda **options: get_extractor(_Tiny(), name="judge", **options), replace=True
    )
    e = get_extractor("judge", image_shape=(3, 6, 6))
    assert e.name == "judge" and e.dim == 64 and "judge" in known_extractors()
    with pytest.raises(ConfigError, match="already registered"):
        register_extractor("judge", lambda: e)
    assert get_extractor(e) is e
    with pytest.raises(ConfigError, match="registered name or a torch.nn.Module"):
        get_extractor(42)  # type: ignore[arg-type]


def test_progress_bar_shows_rate_and_eta(capsys) -> None:
    e = get_extractor(_Tiny())
    e.extract(torch.rand(6, 3, 6, 6), batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "_Tiny features (exact, cpu)" in err and "6/6" in err and "img" in err
    e.extract(torch.rand(6, 3, 6, 6), batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- precision modes


def test_fast_mode_deviation_is_measured(exact, images, exact_features) -> None:
    with pytest.warns(RuntimeWarning, match="not faster|rarely faster"):
        fast = exact.with_mode("fast")
    assert fast.mode == "fast" and fast.info["mode"] == "fast" and exact.info["mode"] == "exact"
    assert fast.module is not exact.module  # the exact network is left untouched
    report = mode_deviation(exact, fast, images[:1])
    assert report["reference_mode"] == "exact" and report["mode"] == "fast" and report["n_images"] == 1
    for key in ("2048", "logits_unbiased"):
        rel = report["outputs"][key]["relative"]
        # bf16 keeps 8 bits of mantissa: a deviation of a fraction of a percent, not zero, not chaos.
        assert 0.0 < rel < 0.05, (key, rel)
        assert report["outputs"][key]["max_abs"] > 0
    # The exact network was copied, not converted: its weights keep the reference memory format.
    conv = exact.module.Conv2d_1a_3x3.conv.weight
    assert conv.is_contiguous() and not fast.module.Conv2d_1a_3x3.conv.weight.is_contiguous()
