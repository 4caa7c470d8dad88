"""Tests of the cached defended models of helpers.defenses (adversarial training, distillation,
noise training) without training one: MNIST is replaced by a few hundred random images,
``train_with_probe`` by a spy that records what it is handed, and ``attacks.pgd`` (where it
matters) by a spy that records its arguments. What is checked is the bookkeeping around the
training loop: the recipe's settings reach the loader, the perturbation hook, the probe and the
optimiser; the model is built with the config's seed on the requested device; the training
record is written beside the weights and read back; a second call loads instead of training.

The expected values are written out by hand from the configs and docstrings (eps 0.3, alpha
1.25 eps, half an epoch of ramp, PGD-20 with alpha eps / 8...), never read back from the code
under test. A ``meta`` device stands in for a second device: parameters there have a device but
no data, so a model or tensor that ends up on the CPU instead is seen at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import attacks, data, defenses, models

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

N_TRAIN = 4 * 128  # four batches of 128: half an epoch of ramp is two batches
RECORD = {"history": [{"epoch": 1, "loss": 0.5}], "probe": [0.25, 0.5], "seconds": 1.5}


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture
def fake(monkeypatch):
    """MNIST replaced by N_TRAIN random training images and 8 test images (whatever the limit:
    the limit asked for is recorded); train_with_probe replaced by a spy that returns RECORD."""
    seen = {"mnist": [], "train": []}
    splits = {"train": _images(N_TRAIN, 0), "test": _images(8, 1)}

    def mnist_tensors(split, limit=None):
        seen["mnist"].append((split, limit))
        return splits[split]

    def train_with_probe(model, loader, epochs, **kwargs):
        seen["train"].append({"model": model, "loader": loader, "epochs": epochs, **kwargs})
        return RECORD

    monkeypatch.setattr(data, "mnist_tensors", mnist_tensors)
    monkeypatch.setattr(defenses, "train_with_probe", train_with_probe)
    seen["data"] = splits
    return seen


@pytest.fixture
def pgd_calls(monkeypatch):
    """attacks.pgd replaced by a spy: records (model, x, y, eps, alpha, steps, keyword
    arguments) and returns x reversed along the batch (a result the tests can predict; on the
    meta device x itself, since computing there costs a 3-second import of torch._dynamo)."""
    calls = []

    def pgd(model, x, y, eps, alpha, steps, **kwargs):
        calls.append({"model": model, "x": x, "y": y, "eps": eps, "alpha": alpha, "steps": steps,
                      **kwargs})
        return x if x.device.type == "meta" else x.flip(0)

    monkeypatch.setattr(attacks, "pgd", pgd)
    return calls


def _fresh_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.MnistCNN()


def _is_fresh_cnn(model: nn.Module, seed: int) -> bool:
    """``model`` has the initial weights of an MnistCNN built after ``manual_seed(seed)``."""
    return all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 _fresh_cnn(seed).state_dict().values(),
                                                 strict=True))


def _same_order(loader, x, y, batch_size, seed) -> bool:
    """The loader yields the batches of tensor_loader(x, y, batch_size, seed=seed)."""
    ref = data.tensor_loader(x, y, batch_size=batch_size, seed=seed)
    return all(torch.equal(a[1], b[1]) for a, b in zip(loader, ref, strict=True))


def _check_training_call(call, model, x, y) -> None:
    """The spy was handed ``model`` itself (fresh MnistCNN weights of seed 0, returned in eval
    mode) and a loader over the images ``x`` in batches of 128 in tensor_loader's seed-0 order."""
    assert call["model"] is model
    assert not model.training
    assert _is_fresh_cnn(model, 0)
    assert call["loader"].dataset.tensors[0] is x
    assert call["loader"].batch_size == 128
    assert _same_order(call["loader"], x, y, 128, 0)


def _check_cached(name, config, tmp_path, record=RECORD):
    """The weights sit under <name>-<hash of config and "version:hw3-v2">.pt, the training
    record under <name>-<hash of config>.record.json, and training_record reads it back."""
    folder = tmp_path / "cache" / "models"
    assert (folder / f"{models.config_key(name, config, 'version:hw3-v2')}.pt").exists()
    assert (folder / f"{models.config_key(name, config)}.record.json").exists()
    assert defenses.training_record(name, config) == record


# --------------------------------------------------------------------------------------------
# adversarial training
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("build", "name", "config", "alpha", "steps", "train_images"), [
    (defenses.fgsm_rs_cnn, "fgsm_rs_cnn", defenses.FGSM_RS_CONFIG, 0.375, 1, 20000),
    (defenses.fgsm_cnn, "fgsm_cnn", defenses.FGSM_CONFIG, 0.3, 1, 10000),
    (defenses.pgd_trained_cnn, "pgd_trained_cnn", defenses.PGD_AT_CONFIG, 0.15, 2, 13000),
])
def test_adversarial_models_hand_the_recipe_to_the_training_loop(
        fake, pgd_calls, tmp_path, build, name, config, alpha, steps, train_images):
    model = build("cpu")
    # the training images, then the probe's 500 test images
    assert fake["mnist"] == [("train", train_images), ("test", 500)]
    (call,) = fake["train"]
    # the model trained is a fresh MnistCNN built with the config's seed 0 (the spy does not
    # change its weights), returned in eval mode
    assert call["model"] is model
    assert not model.training
    assert _is_fresh_cnn(model, 0)
    x, y = fake["data"]["train"]
    loader = call["loader"]
    assert loader.batch_size == 128
    assert loader.dataset.tensors[0] is x
    assert loader.dataset.tensors[1] is y
    assert _same_order(loader, x, y, 128, 0)
    assert call["epochs"] == 2
    assert {k: call[k] for k in ("lr", "optimizer", "schedule", "desc")} == {
        "lr": 3e-3, "optimizer": "adam", "schedule": "onecycle", "desc": f"training {name}"}
    assert set(call) == {"model", "loader", "epochs", "probe", "perturb", "lr", "optimizer",
                         "schedule", "desc"}
    # the perturbation: eps 0.3 grown linearly over half an epoch (2 of the 4 batches), the
    # kind's alpha with it, one seeded generator shared by every call
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    xb, yb = x[:3], y[:3]
    for _ in range(3):
        call["perturb"](tiny, xb, yb)
    assert [c["eps"] for c in pgd_calls] == pytest.approx([0.15, 0.3, 0.3], abs=1e-12)
    assert [c["alpha"] for c in pgd_calls] == pytest.approx([alpha / 2, alpha, alpha],
                                                            abs=1e-12)
    assert [c["steps"] for c in pgd_calls] == [steps] * 3
    assert all(c["model"] is tiny and c["y"] is yb for c in pgd_calls)
    assert [c["random_start"] for c in pgd_calls] == [name != "fgsm_cnn"] * 3
    gens = [c["seed"] for c in pgd_calls]
    assert isinstance(gens[0], torch.Generator)
    assert gens[0].initial_seed() == 0
    assert gens[1] is gens[0]
    assert gens[2] is gens[0]
    _check_cached(name, config, tmp_path)
    # a second call loads the cached weights instead of training again
    again = build("cpu")
    assert len(fake["train"]) == 1
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                 model.state_dict().values(), strict=True))


def test_the_per_epoch_probe_is_pgd20_on_500_test_images(fake, pgd_calls, monkeypatch):
    """PGD-20 at eps 0.3, alpha eps / 8 = 0.0375, one random start (seed 0), each example's
    first fooling iterate kept, the 500 images in one chunk; accuracy on the attacked images,
    on the model's device."""
    defenses.fgsm_rs_cnn("cpu")
    probe = fake["train"][0]["probe"]
    evaluated = []

    def evaluate(model, batch):
        evaluated.append((model, batch))
        return 0.625

    monkeypatch.setattr(models, "evaluate", evaluate)
    on_meta = nn.Linear(2, 2, device="meta")  # a second device: the test images must move
    assert probe(on_meta) == 0.625
    assert fake["mnist"][-1] == ("test", 500)
    (call,) = pgd_calls
    assert call["model"] is on_meta
    assert call["batch_size"] == 500
    assert call["eps"] == 0.3
    assert call["alpha"] == pytest.approx(0.0375, abs=1e-15)
    assert call["steps"] == 20
    assert call["seed"] == 0
    assert call["early_stop"] is True
    assert call.get("random_start", True) is True
    assert call.get("loss", "ce") == "ce"
    assert call["x"].device.type == "meta"
    assert call["y"].device.type == "meta"
    x, y = fake["data"]["test"]
    assert call["x"].shape == x.shape
    assert call["y"].shape == y.shape
    model, (x_adv, y_adv) = evaluated[0]
    assert model is on_meta
    assert x_adv.device.type == "meta"
    assert y_adv.device.type == "meta"
    assert x_adv is call["x"]  # what pgd returned


def test_the_probe_measures_accuracy_on_what_pgd_returns(fake, pgd_calls):
    defenses.fgsm_rs_cnn("cpu")
    probe = fake["train"][0]["probe"]
    x, y = fake["data"]["test"]
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        expected = float((tiny(x.flip(0)).argmax(1) == y).double().mean())
    assert probe(tiny) == pytest.approx(expected, abs=1e-12)


def test_defended_models_are_built_on_the_requested_device(fake, pgd_calls, monkeypatch):
    """device="meta" puts the model there; device=None asks runtime.device()."""
    from helpers import runtime

    model = defenses.fgsm_cnn("meta")
    assert next(model.parameters()).device.type == "meta"
    assert fake["train"][0]["model"] is model
    monkeypatch.setattr(runtime, "device", lambda: torch.device("meta"))
    assert next(defenses.pgd_trained_cnn().parameters()).device.type == "meta"
    assert next(defenses.noise_trained_cnn(0.5).parameters()).device.type == "meta"


@pytest.mark.parametrize("build", [
    defenses.fgsm_rs_cnn, defenses.fgsm_cnn, defenses.pgd_trained_cnn,
    lambda device: defenses.teacher_cnn(8.0, device),
    lambda device: defenses.noise_trained_cnn(0.25, device)],
    ids=["fgsm_rs_cnn", "fgsm_cnn", "pgd_trained_cnn", "teacher_cnn", "noise_trained_cnn"])
def test_each_defended_model_is_built_and_trained_on_the_device_asked_for(fake, pgd_calls,
                                                                        build):
    model = build("meta")  # runtime.device() is the CPU here
    assert next(model.parameters()).device.type == "meta"
    (call,) = fake["train"]
    assert call["model"] is model


@pytest.mark.parametrize(("config", "build"), [
    ("FGSM_RS_CONFIG", lambda: defenses.fgsm_rs_cnn("cpu")),
    ("DISTILL_CONFIG", lambda: defenses.teacher_cnn(8.0, "cpu")),
    ("NOISE_CONFIG", lambda: defenses.noise_trained_cnn(0.25, "cpu"))])
def test_the_configs_batch_size_and_seed_reach_the_loader_and_the_model(
        fake, pgd_calls, monkeypatch, config, build):
    """A recipe with batch size 64 and seed 3 (not tensor_loader's defaults 128 and 0): the
    loader yields tensor_loader's batches of 64 in its seed-3 order, the model starts from the
    MnistCNN weights of seed 3."""
    monkeypatch.setitem(getattr(defenses, config), "batch_size", 64)
    monkeypatch.setitem(getattr(defenses, config), "seed", 3)
    model = build()
    (call,) = fake["train"]
    x, y = fake["data"]["train"]
    assert call["loader"].batch_size == 64
    assert call["loader"].dataset.tensors[0] is x
    assert _same_order(call["loader"], x, y, 64, 3)
    assert not _same_order(call["loader"], x, y, 64, 0)
    assert _is_fresh_cnn(model, 3)


def test_training_record_of_an_untrained_model_names_the_cache_file():
    key = models.config_key("fgsm_rs_cnn", defenses.FGSM_RS_CONFIG)
    with pytest.raises(KeyError) as info:
        defenses.training_record("fgsm_rs_cnn", defenses.FGSM_RS_CONFIG)
    assert info.value.args[0] == (f"no training record {key}.record.json: delete the cached "
                                  f"model {key}.pt to retrain it")


# --------------------------------------------------------------------------------------------
# distillation
# --------------------------------------------------------------------------------------------

def test_distill_config_by_hand():
    assert defenses.distill_config(20.0, "student") == {
        "arch": "MnistCNN", "epochs": 1, "train_images": 10000, "batch_size": 128, "lr": 3e-3,
        "seed": 0, "temperature": 20.0, "role": "student"}
    assert defenses.distill_config(0.5, "teacher")["temperature"] == 0.5  # T < 1 is allowed
    with pytest.raises(ValueError, match=r"^role must be one of \('teacher', 'student'\)"):
        defenses.distill_config(20.0, "pupil")
    with pytest.raises(ValueError, match=r"^temperature must be a number > 0"):
        defenses.distill_config(0.0, "teacher")


def test_distillation_defaults_to_temperature_100(fake, monkeypatch):
    """teacher_cnn() and distilled_cnn() train at T = 100; the student asks for the teacher at
    its own temperature."""
    defenses.teacher_cnn(device="cpu")
    (call,) = fake["train"]
    assert call["desc"] == "teacher T=100"
    _check_temperature_loss(call["loss_fn"], 100.0)
    asked = []
    teacher = _FakeTeacher(torch.zeros(N_TRAIN, 10))
    monkeypatch.setattr(defenses, "teacher_cnn",
                        lambda temperature, device: asked.append((temperature, device))
                        or teacher)
    defenses.distilled_cnn(device="cpu")
    assert asked == [(100.0, "cpu")]
    assert fake["train"][-1]["desc"] == "student T=100"
    _check_temperature_loss(fake["train"][-1]["loss_fn"], 100.0)


def _check_temperature_loss(loss_fn, t):
    """loss_fn(z, target) = CE(softmax(z / t), target), computed by hand with numpy."""
    z = torch.tensor([[3.0, -1.0, 0.5], [0.0, 2.0, -2.0]])
    logp = z.numpy() / t - np.log(np.exp(z.numpy() / t).sum(1, keepdims=True))
    hard = torch.tensor([2, 1])
    assert float(loss_fn(z, hard)) == pytest.approx(-(logp[0, 2] + logp[1, 1]) / 2, rel=1e-6)


def test_teacher_trains_on_hard_labels_at_temperature(fake, tmp_path):
    model = defenses.teacher_cnn(8.0, "cpu")
    assert fake["mnist"] == [("train", 10000)]
    (call,) = fake["train"]
    x, y = fake["data"]["train"]
    _check_training_call(call, model, x, y)
    assert torch.equal(call["loader"].dataset.tensors[1], y)  # hard labels
    assert call["epochs"] == 1
    assert {k: call[k] for k in ("lr", "optimizer", "schedule", "desc")} == {
        "lr": 3e-3, "optimizer": "adam", "schedule": "onecycle", "desc": "teacher T=8"}
    assert set(call) == {"model", "loader", "epochs", "lr", "optimizer", "schedule", "loss_fn",
                         "desc"}
    _check_temperature_loss(call["loss_fn"], 8.0)
    _check_cached("distill_teacher", defenses.distill_config(8.0, "teacher"), tmp_path)


class _FakeTeacher(nn.Module):
    """A teacher on the meta device that hands out rows of fixed CPU logits, in order, and
    records the device and size of every batch it is called on."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits, self.done, self.batches = logits, 0, []
        self.weight = nn.Parameter(torch.zeros(1, device="meta"))

    def forward(self, x):
        self.batches.append((x.device.type, len(x)))
        out = self.logits[self.done:self.done + len(x)]
        self.done += len(x)
        return out


def test_the_student_learns_the_teachers_soft_labels_at_temperature(fake, monkeypatch,
                                                                    tmp_path):
    """Soft labels softmax(z / T) (numpy by hand) of every training image, the teacher called
    in chunks of at most 1000 images moved to its device; the student trained at T."""
    n = 1001  # more than one chunk
    x, y = _images(n, 3)
    fake["data"]["train"] = (x, y)
    logits = 5 * torch.randn(n, 10, generator=torch.Generator().manual_seed(4))
    teacher = _FakeTeacher(logits)
    asked = []
    monkeypatch.setattr(defenses, "teacher_cnn",
                        lambda temperature, device: asked.append((temperature, device))
                        or teacher)
    model = defenses.distilled_cnn(4.0, "meta")
    assert asked == [(4.0, "meta")]
    assert teacher.batches == [("meta", 1000), ("meta", 1)]
    (call,) = fake["train"]
    assert call["model"] is model
    assert next(model.parameters()).device.type == "meta"
    e = np.exp(logits.double().numpy() / 4.0)
    soft = call["loader"].dataset.tensors[1]
    np.testing.assert_allclose(soft.numpy(), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert call["loader"].dataset.tensors[0] is x
    assert _same_order(call["loader"], x, soft, 128, 0)
    assert call["epochs"] == 1
    assert call["desc"] == "student T=4"
    assert {k: call[k] for k in ("lr", "optimizer", "schedule")} == {
        "lr": 3e-3, "optimizer": "adam", "schedule": "onecycle"}
    _check_temperature_loss(call["loss_fn"], 4.0)
    _check_cached("distilled_cnn", defenses.distill_config(4.0, "student"), tmp_path)


# --------------------------------------------------------------------------------------------
# noise training (randomized smoothing's base classifier)
# --------------------------------------------------------------------------------------------

def test_noise_config_by_hand():
    assert defenses.noise_config(0.5) == {"arch": "MnistCNN", "epochs": 1, "train_images": 20000,
                                          "batch_size": 128, "lr": 3e-3, "seed": 0,
                                          "sigma": 0.5}
    assert defenses.noise_config(0.01)["sigma"] == 0.01  # below 1 is allowed
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match=r"^sigma must be a number > 0"):
            defenses.noise_config(bad)
    with pytest.raises(ValueError, match=r"^sigma must be a number > 0"):
        defenses.noise_trained_cnn(-1.0)


def test_noise_training_adds_seeded_gaussian_noise(fake, tmp_path):
    model = defenses.noise_trained_cnn(0.25, "cpu")
    assert fake["mnist"] == [("train", 20000)]
    (call,) = fake["train"]
    x, y = fake["data"]["train"]
    _check_training_call(call, model, x, y)
    assert call["loader"].dataset.tensors[1] is y
    assert call["epochs"] == 1
    assert {k: call[k] for k in ("lr", "optimizer", "schedule", "desc")} == {
        "lr": 3e-3, "optimizer": "adam", "schedule": "onecycle",
        "desc": "noise training sigma=0.25"}
    assert set(call) == {"model", "loader", "epochs", "perturb", "lr", "optimizer", "schedule",
                         "desc"}
    # x + 0.25 * N(0, I) from one generator seeded with the config's seed 0, batch after batch
    g = torch.Generator().manual_seed(0)
    xb, yb = x[:5], y[:5]
    for _ in range(2):
        expected = xb + 0.25 * torch.randn(xb.shape, generator=g)
        assert torch.equal(call["perturb"](None, xb, yb), expected)
    _check_cached("noise_trained_cnn", defenses.noise_config(0.25), tmp_path)


def test_the_training_noise_is_moved_to_the_batchs_device(fake, monkeypatch):
    """The noise is drawn on the CPU (the seeded CPU generator), then moved to the device of
    the batch: torch.randn behind a stand-in that records how its result is moved."""
    defenses.noise_trained_cnn(0.25, "cpu")
    perturb = fake["train"][0]["perturb"]
    real, moves = torch.randn, []

    class Noise:
        def __init__(self, t):
            self.t = t

        def to(self, *args):
            moves.append(args)
            return self.t.to(*args)

    monkeypatch.setattr(torch, "randn", lambda *args, **kwargs: Noise(real(*args, **kwargs)))
    xb = torch.rand(3, 1, 28, 28)
    perturb(None, xb, torch.zeros(3, dtype=torch.long))
    assert moves == [(xb.device,)]
