"""The training engine: learning on the digits, resume == uninterrupted, schedules, losses, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from bayesnas_book.checkpoint import load_checkpoint, save_checkpoint
from bayesnas_book.config import ConfigError
from bayesnas_book.data import cifar10_dataset, digits_splits, write_cifar10_fixture
from bayesnas_book.data.transforms import cifar10_train_transform, cutout
from bayesnas_book.models.eval_net import cifar_network
from bayesnas_book.space.genotype import get_genotype
from bayesnas_book.train import (
    LRSchedule,
    TrainConfig,
    Trainer,
    TrainError,
    amp_dtype,
    build_optimizer,
    build_scheduler,
    evaluate,
    parameter_groups,
    train_model,
    training_loss,
)

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def digits() -> dict[str, TensorDataset]:
    return digits_splits(seed=0)


def subset(dataset: TensorDataset, n: int) -> TensorDataset:
    return TensorDataset(*(t[:n] for t in dataset.tensors))


def eval_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cifar_network(get_genotype("bayesnas_cifar10_lambda0.01"), channels=4, num_cells=5, in_channels=1)


class Tiny(nn.Module):
    """conv -> BN -> ReLU -> pool -> linear, with the dropout setter of the evaluation nets."""

    def __init__(self, in_channels: int = 1, classes: int = 10, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)
        self.drop_calls: list[tuple[float, ...]] = []

    def set_drop_prob(self, *probabilities: float) -> None:
        self.drop_calls.append(probabilities)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(self.conv(x))), 1).flatten(1))


def tiny(seed: int = 0, **kwargs) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(**kwargs)


def quick(**overrides) -> TrainConfig:
    values = {"epochs": 3, "batch_size": 32, "eval_batch_size": 128, "lr": 0.1}
    values.update(overrides)
    return TrainConfig(**values)


def same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Cutout(Dataset):
    """Digits with a random 4x4 cutout drawn from torch's global generator (as the CIFAR pipeline)."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return cutout(x, 4), y


# -- learning -------------------------------------------------------------------------------------


def test_the_evaluation_net_learns_the_digits(digits, tmp_path) -> None:
    # measured (CPU, seed 0): train loss 1.50 -> 0.11 over 4 epochs, eval top-1 0.83
    config = quick(epochs=4, drop_prob=0.0)
    result = train_model(eval_net(), subset(digits["train"], 320), subset(digits["validation"], 200), config,
                         out=tmp_path / "run", device="cpu")
    losses = [m["train_loss"] for m in result.metrics]
    assert losses[-1] < 0.4 * losses[0]
    assert result.final["top1"] >= 0.6 and result.final["top5"] >= result.final["top1"]
    assert result.finished and result.epochs_completed == 4
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3, 4]
    assert {"train_loss", "train_top1", "eval_loss", "eval_top1", "eval_top5", "lr", "seconds", "images_per_s"} <= set(lines[0])
    assert lines[-1]["eval_top1"] == result.final["top1"]
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["config"]["train"]["epochs"] == 4 and provenance["final"] == result.final
    assert provenance["wall_time_s"] > 0 and provenance["resumed_from_epoch"] is None
    same_state(torch.load(tmp_path / "run" / "model.pt"), result.model.state_dict())


def test_resume_is_bit_identical_to_an_uninterrupted_run(digits, tmp_path) -> None:
    train, held = Cutout(subset(digits["train"], 160)), subset(digits["validation"], 64)
    config = quick(epochs=3, drop_prob=0.3, weight_decay=1e-3, nesterov=True, decay_norm_and_bias=False,
                   warmup_epochs=1, lr_update="batch")
    whole = train_model(eval_net(), train, held, config, out=tmp_path / "whole", device="cpu", seed=3)
    killed = train_model(eval_net(), train, held, config, out=tmp_path / "killed", device="cpu", seed=3, stop_after=1)
    assert not killed.finished and killed.epochs_completed == 1 and not (tmp_path / "killed" / "model.pt").exists()
    torch.manual_seed(123)  # the resumed process's own RNG state must not matter
    resumed = train_model(eval_net(), train, held, config, out=tmp_path / "killed", resume=True, device="cpu", seed=3)
    same_state(resumed.model.state_dict(), whole.model.state_dict())
    momentum = [load_checkpoint(tmp_path / name / "checkpoint.pt", "train")["state"]["optimizer"]["state"] for name in ("whole", "killed")]
    for key in momentum[0]:
        assert torch.equal(momentum[0][key]["momentum_buffer"], momentum[1][key]["momentum_buffer"])
    drop_timing = ("seconds", "eval_seconds", "images_per_s")
    assert [{k: v for k, v in m.items() if k not in drop_timing} for m in resumed.metrics] == \
           [{k: v for k, v in m.items() if k not in drop_timing} for m in whole.metrics]
    provenance = json.loads((tmp_path / "killed" / "provenance.json").read_text())
    assert provenance["resumed_from_epoch"] == 1
    # resuming a finished run trains nothing and returns the same result
    again = train_model(eval_net(), train, held, config, out=tmp_path / "whole", resume=True, device="cpu", seed=3)
    same_state(again.model.state_dict(), whole.model.state_dict())
    assert again.final == whole.final


def test_a_real_cifar10_pipeline_trains(tmp_path) -> None:
    root = tmp_path / "data"
    write_cifar10_fixture(root, images_per_batch=8, test_images=20)
    train = cifar10_dataset(root, train=True, transform=cifar10_train_transform(16))
    test = cifar10_dataset(root, train=False, transform=cifar10_train_transform(0))
    torch.manual_seed(0)
    model = cifar_network(get_genotype("bayesnas_cifar10_lambda0.01"), channels=4, num_cells=3)
    result = train_model(model, train, test, quick(epochs=1, batch_size=20), device="cpu")
    assert result.metrics[0]["images"] == 40 and math.isfinite(result.metrics[0]["train_loss"])
    assert 0.0 <= result.final["top1"] <= result.final["top5"] <= 1.0


# -- schedules, losses, clipping, dropout ---------------------------------------------------------


def test_schedules_match_their_closed_forms() -> None:
    E = 10
    cosine = LRSchedule("cosine", epochs=E)
    torch.testing.assert_close([cosine(e) for e in range(E)], [0.5 * (1 + math.cos(math.pi * e / E)) for e in range(E)])
    exponential = LRSchedule("exponential", epochs=E, lr_decay=0.97)
    torch.testing.assert_close([exponential(e) for e in range(E)], [0.97**e for e in range(E)])
    stepped = LRSchedule("exponential", epochs=E, lr_decay=0.5, lr_decay_epochs=3)
    assert [stepped(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    warm = LRSchedule("cosine", epochs=E, warmup_epochs=2, min_factor=0.1)
    expected = [0.5, 1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (e - 2) / 8)) for e in range(2, E)]
    torch.testing.assert_close([warm(e) for e in range(E)], expected)
    assert LRSchedule("constant", epochs=E, warmup_epochs=4)(7) == 1.0


def test_the_per_batch_scheduler_follows_the_closed_form() -> None:
    S, config = 4, TrainConfig(epochs=3, lr=0.2, warmup_epochs=1, lr_update="batch", lr_min=0.02)
    optimizer = build_optimizer(nn.Linear(2, 2), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=S)
    seen = []
    for _ in range(3 * S):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # warm-up (k + 1) / 4 for k < 4, then cosine in t = (k - 4) / S over the two remaining epochs
    expected = [0.2 * (k + 1) / S for k in range(S)]
    expected += [0.02 + 0.18 * 0.5 * (1 + math.cos(math.pi * (k - S) / (2 * S))) for k in range(S, 3 * S)]
    torch.testing.assert_close(seen, expected)


def test_the_engine_uses_the_schedule_and_the_dropout_ramp(digits) -> None:
    config = quick(epochs=5, schedule="exponential", lr_decay=0.9, warmup_epochs=2, drop_prob=0.2, drop_path_prob=0.1,
                   max_batches_per_epoch=1)
    model = tiny()
    result = train_model(model, subset(digits["train"], 64), None, config, device="cpu")
    lrs = [m["lr"] for m in result.metrics]
    torch.testing.assert_close(lrs, [0.05, 0.1, 0.1, 0.09, 0.081])
    assert model.drop_calls == [(0.2 * e / 5, 0.1 * e / 5) for e in range(5)]
    assert [m["drop_prob"] for m in result.metrics] == [0.2 * e / 5 for e in range(5)]
    assert result.final == {} and result.metrics[0]["eval_top1"] is None


def test_the_dropout_ramp_reaches_the_evaluation_cells(digits) -> None:
    model = eval_net()
    train_model(model, subset(digits["train"], 32), None, quick(epochs=4, drop_prob=0.2, max_batches_per_epoch=1), device="cpu")
    assert [cell.drop_prob for cell in model.cells] == [0.2 * 3 / 4] * 5  # epoch index 3 of 4
    assert [cell.drop_path_prob for cell in model.cells] == [0.0] * 5


def test_label_smoothing_and_the_auxiliary_loss_follow_the_formula() -> None:
    torch.manual_seed(0)
    logits, auxiliary = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    eps, w = 0.1, 0.4

    def smoothed(z: torch.Tensor) -> torch.Tensor:
        log_p = z.log_softmax(1)  # (B, K)
        return ((1 - eps) * -log_p.gather(1, y[:, None]).squeeze(1) + eps * -log_p.mean(1)).mean()

    loss, main = training_loss(logits, y, label_smoothing=eps)
    torch.testing.assert_close(loss, smoothed(logits), rtol=1e-12, atol=1e-12)
    assert main is logits
    loss, main = training_loss((logits, auxiliary), y, label_smoothing=eps, auxiliary_weight=w)
    torch.testing.assert_close(loss, smoothed(logits) + w * smoothed(auxiliary), rtol=1e-12, atol=1e-12)
    assert main is logits


@pytest.mark.parametrize("clip", [1e-3, 0.0])
def test_gradient_clipping_bounds_the_step(clip: float) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 1, 4, 4, dtype=torch.float64), torch.randint(0, 3, (16,)))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3)).double()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    config = quick(epochs=1, batch_size=16, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", grad_clip=clip)
    result = train_model(model, data, None, config, device="cpu")
    step = torch.cat([p.detach().flatten() for p in model.parameters()]) - before  # -lr * clipped gradient
    if clip:
        grad_norm = result.metrics[0]["grad_norm"]
        assert grad_norm > 10 * clip  # the bound was active
        # ||step|| = lr * c * ||g|| / (||g|| + 1e-6): torch's clip keeps a 1e-6 guard in the denominator
        torch.testing.assert_close(step.norm().item(), clip, rtol=1e-5, atol=0.0)
    else:
        assert result.metrics[0]["grad_norm"] is None and step.norm().item() > 1e-2


def test_norm_and_bias_can_be_left_out_of_weight_decay() -> None:
    model = tiny()
    decayed, kept = parameter_groups(model, 3e-4, decay_norm_and_bias=False)
    assert decayed["weight_decay"] == 3e-4 and kept["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model.conv.weight), id(model.fc.weight)}
    assert {id(p) for p in kept["params"]} == {id(model.conv.bias), id(model.bn.weight), id(model.bn.bias), id(model.fc.bias)}
    (everything,) = parameter_groups(model, 3e-4)
    assert len(everything["params"]) == 6
    optimizer = build_optimizer(model, TrainConfig(nesterov=True))
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9


def test_evaluate_matches_a_direct_computation() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(50, 4, dtype=torch.float64), torch.randint(0, 7, (50,))
    model = nn.Linear(4, 7).double().train()
    scores = evaluate(model, TensorDataset(x, y), batch_size=16, device="cpu")
    logits = model(x).detach()
    assert scores["top1"] == (logits.argmax(1) == y).double().mean().item()
    assert scores["top5"] == (logits.topk(5, 1).indices == y[:, None]).any(1).double().mean().item()
    torch.testing.assert_close(scores["loss"], F.cross_entropy(logits, y).item(), rtol=1e-12, atol=1e-12)
    assert model.training  # the mode is put back
    few = evaluate(nn.Linear(4, 3).double(), TensorDataset(x, y % 3), batch_size=64)
    assert few["top5"] == 1.0  # top-5 of 3 classes


# -- precision and memory format ------------------------------------------------------------------


def test_bf16_autocast_runs_on_cpu_when_asked(digits) -> None:
    model, seen = tiny(), []
    model.conv.register_forward_hook(lambda module, inputs, output: seen.append((module.training, output.dtype)))
    result = train_model(model, subset(digits["train"], 64), subset(digits["validation"], 32), quick(epochs=1, amp="bf16"), device="cpu")
    assert math.isfinite(result.metrics[0]["train_loss"]) and math.isfinite(result.final["loss"])
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert seen[-1] == (False, torch.bfloat16)  # the evaluation after the epoch
    assert model.conv.weight.dtype == torch.float32  # master weights stay in float32
    assert amp_dtype("auto", torch.device("cpu")) is None and amp_dtype("off", torch.device("cpu")) is None


def test_channels_last_runs_and_agrees(digits) -> None:
    images, labels = subset(digits["train"], 64).tensors
    train = TensorDataset(images.expand(-1, 3, -1, -1).contiguous(), labels)  # 3 channels: NHWC differs from NCHW

    def net() -> nn.Module:
        torch.manual_seed(0)
        return cifar_network(get_genotype("bayesnas_cifar10_lambda0.01"), channels=4, num_cells=3)

    plain = train_model(net(), train, None, quick(epochs=1, drop_prob=0.0), device="cpu")
    model, layouts = net(), []
    model.stem.register_forward_hook(lambda module, inputs, output: layouts.append(inputs[0].is_contiguous()))
    nhwc = train_model(model, train, None, quick(epochs=1, drop_prob=0.0, channels_last=True), device="cpu")
    stem = nhwc.model.stem[0].weight
    assert stem.is_contiguous(memory_format=torch.channels_last) and not stem.is_contiguous()
    assert layouts[-1] is False  # training batches arrive in NHWC
    torch.testing.assert_close(nhwc.metrics[0]["train_loss"], plain.metrics[0]["train_loss"], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_fp16_with_grad_scaler_channels_last_and_compile_on_cuda(digits, tmp_path) -> None:
    train, held = subset(digits["train"], 128), subset(digits["validation"], 64)
    config = quick(epochs=2, amp="fp16", channels_last=True)
    result = train_model(eval_net(), train, held, config, out=tmp_path / "fp16", device="cuda")
    assert math.isfinite(result.final["loss"])
    scaler = load_checkpoint(tmp_path / "fp16" / "checkpoint.pt", "train")["state"]["scaler"]
    assert scaler["scale"] > 0
    compiled = train_model(eval_net(), train, held, quick(epochs=1, amp="bf16", compile=True), device="cuda")
    assert math.isfinite(compiled.final["loss"])


# -- errors ---------------------------------------------------------------------------------------


def test_an_output_folder_holding_another_run_is_refused(digits, tmp_path) -> None:
    train = subset(digits["train"], 32)
    config = quick(epochs=2, max_batches_per_epoch=1)
    train_model(tiny(), train, None, config, out=tmp_path / "run", device="cpu", stop_after=1)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(TrainError, match=r"already holds a training run \(checkpoint.pt\); pass resume=True.*nothing was overwritten"):
        train_model(tiny(), train, None, config, out=tmp_path / "run", device="cpu")
    with pytest.raises(TrainError, match=r"configuration differs \(train.lr: checkpoint 0.1, now 0.2\)"):
        train_model(tiny(), train, None, quick(epochs=2, max_batches_per_epoch=1, lr=0.2), out=tmp_path / "run", resume=True, device="cpu")
    with pytest.raises(TrainError, match=r"differs \(seed: checkpoint 0, now 1; train_size: checkpoint 32, now 16\)"):
        train_model(tiny(), subset(train, 16), None, config, out=tmp_path / "run", resume=True, device="cpu", seed=1)
    with pytest.raises(TrainError, match=r"differs \(run: checkpoint None, now \{'dataset': 'digits'\}\)"):
        train_model(tiny(), train, None, config, out=tmp_path / "run", resume=True, device="cpu", run_config={"dataset": "digits"})
    with pytest.raises(TrainError, match="the checkpoint's weights do not fit this model .*build the same model"):
        train_model(tiny(width=5), train, None, config, out=tmp_path / "run", resume=True, device="cpu")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    with pytest.raises(TrainError, match="needs the output folder"):
        train_model(tiny(), train, None, config, resume=True, device="cpu")


def test_corrupt_foreign_or_missing_checkpoints(digits, tmp_path) -> None:
    train, config = subset(digits["train"], 32), quick(epochs=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(TrainError, match="is not a readable checkpoint"):
        train_model(tiny(), train, None, config, out=tmp_path / "a", resume=True, device="cpu")
    (tmp_path / "b").mkdir()
    torch.save({"model": {}}, tmp_path / "b" / "checkpoint.pt")
    with pytest.raises(TrainError, match="was not written by bayesnas-book"):
        train_model(tiny(), train, None, config, out=tmp_path / "b", resume=True, device="cpu")
    (tmp_path / "c").mkdir()
    save_checkpoint(tmp_path / "c" / "checkpoint.pt", "search", {}, {}, {})
    with pytest.raises(TrainError, match="is a 'search' checkpoint, not a 'train' one"):
        train_model(tiny(), train, None, config, out=tmp_path / "c", resume=True, device="cpu")
    with pytest.raises(TrainError, match="no checkpoint at"):
        train_model(tiny(), train, None, config, out=tmp_path / "d", resume=True, device="cpu")


def _labels(dataset: TensorDataset, labels: torch.Tensor) -> TensorDataset:
    return TensorDataset(dataset.tensors[0][: len(labels)], labels)


class _Unlabelled(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(1, 8, 8)


class _Flat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)  # (B,), not (B, K)


def test_data_that_do_not_fit_the_model_are_refused(digits) -> None:
    train, config = subset(digits["train"], 64), quick(epochs=1)
    labels = train.tensors[1].clone()
    labels[-1] = 11  # beyond the first batch: all labels of a tensor dataset are checked
    with pytest.raises(TrainError, match=r"the model outputs 10 classes but the labels of `train_set` go up to 11; build the model with num_classes=12"):
        train_model(tiny(), _labels(train, labels), None, config, device="cpu")
    with pytest.raises(TrainError, match="the labels of `eval_set` go up to 11"):
        train_model(tiny(), train, Subset(_labels(train, labels), [0, 63]), config, device="cpu")
    with pytest.raises(TrainError, match="the labels of `train_set` must be class indices >= 0, got -1"):
        train_model(tiny(), _labels(train, torch.full((8,), -1)), None, config, device="cpu")
    with pytest.raises(TrainError, match="the labels of `train_set` must be integer class indices, got torch.float32"):
        train_model(tiny(), _labels(train, torch.zeros(8)), None, config, device="cpu")
    with pytest.raises(TrainError, match=r"first convolution takes 3 input channels but the images of `train_set` have 1 .*in_channels=1"):
        train_model(tiny(in_channels=3), train, None, config, device="cpu")
    with pytest.raises(TrainError, match=r"the images of `train_set` must be \(B, C, H, W\) for a convolutional model, got a batch of shape \(32, 64\)"):
        train_model(tiny(), TensorDataset(train.tensors[0].flatten(1), train.tensors[1]), None, config, device="cpu")
    with pytest.raises(TrainError, match=r"the images of `train_set` must be float tensors \(B, C, H, W\), got torch.uint8"):
        train_model(tiny(), TensorDataset(train.tensors[0].to(torch.uint8), train.tensors[1]), None, config, device="cpu")
    with pytest.raises(TrainError, match=r"the model cannot run on a batch of `train_set` \(shape \(32, 1, 8, 8\)\)"):
        train_model(nn.Sequential(nn.Flatten(), nn.Linear(10, 10)), train, None, config, device="cpu")
    with pytest.raises(TrainError, match=r"the model must return logits \(B, num_classes\); .* returned shape \(32,\)"):
        train_model(_Flat(), train, None, config, device="cpu")
    with pytest.raises(TrainError, match=r"`train_set` must yield \(image, label\) pairs; its first batch is a Tensor"):
        train_model(tiny(), _Unlabelled(), None, config, device="cpu")
    with pytest.raises(TrainError, match="`train_set` is empty"):
        train_model(tiny(), subset(train, 0), None, config, device="cpu")


def test_a_diverging_run_stops_with_a_clear_error(digits) -> None:
    images, labels = subset(digits["train"], 32).tensors
    images = images.clone()
    images[3] = float("nan")
    with pytest.raises(TrainError, match=r"the training loss is not finite \(nan\) in epoch 1; lower `train.lr`"):
        train_model(tiny(), TensorDataset(images, labels), None, quick(epochs=1), device="cpu")


def test_bad_settings_are_refused(digits) -> None:
    train = subset(digits["train"], 32)
    with pytest.raises(ConfigError, match=r"`train.lr` must be > 0, got -1(.|\n)*`train.schedule` must be one of cosine"):
        train_model(tiny(), train, None, quick(lr=-1.0, schedule="linear"), device="cpu")
    with pytest.raises(ConfigError, match=r"`train.warmup_epochs` must be < `train.epochs` \(3\), got 3"):
        train_model(tiny(), train, None, quick(warmup_epochs=3), device="cpu")
    with pytest.raises(ConfigError, match=r"`train.lr_min` must be <= `train.lr` \(0.1\), got 0.5"):
        train_model(tiny(), train, None, quick(lr_min=0.5), device="cpu")
    with pytest.raises(ConfigError, match="`train.nesterov` needs `train.momentum` > 0, got 0.0"):
        train_model(tiny(), train, None, quick(nesterov=True, momentum=0.0), device="cpu")
    with pytest.raises(TrainError, match="`seed` must be a non-negative integer, got -1"):
        train_model(tiny(), train, None, quick(), device="cpu", seed=-1)
    with pytest.raises(TrainError, match="`num_workers` must be a non-negative integer, got 1.5"):
        train_model(tiny(), train, None, quick(), device="cpu", num_workers=1.5)
    with pytest.raises(TrainError, match="`amp=fp16` needs a CUDA device"):
        train_model(tiny(), train, None, quick(amp="fp16"), device="cpu")
    with pytest.raises(ValueError, match="`amp=bf16` runs on cuda or cpu, not meta"):
        amp_dtype("bf16", torch.device("meta"))
    with pytest.raises(ValueError, match="`amp` must be one of off, auto, bf16, fp16; got 'fp8'"):
        amp_dtype("fp8", torch.device("cpu"))
    with pytest.raises(ValueError, match="`model` has no trainable parameter"):
        build_optimizer(tiny().requires_grad_(False), quick())
    with pytest.raises(ValueError, match="`schedule` must be cosine, exponential or constant, got 'step'"):
        LRSchedule("step", epochs=3)
    with pytest.raises(ValueError, match="`steps_per_epoch` must be >= 1, got 0"):
        LRSchedule("cosine", epochs=3, steps_per_epoch=0)
    with pytest.raises(ValueError, match=r"`warmup_epochs` must be in \[0, epochs = 3\), got 3"):
        LRSchedule("cosine", epochs=3, warmup_epochs=3)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer, got 0"):
        evaluate(tiny(), train, batch_size=0)
    with pytest.raises(ValueError, match="`dataset` is empty"):
        evaluate(tiny(), subset(train, 0))
    trainer = Trainer(tiny(), train, None, quick(), device="cpu")
    with pytest.raises(TrainError, match="this run has no `eval_set`"):
        trainer.evaluate()


def test_a_single_process_run_records_nothing_distributed(digits, tmp_path) -> None:
    """Without torchrun a checkpoint keeps its single-process layout (no per-rank RNG)."""
    train_model(tiny(), subset(digits["train"], 64), None, quick(epochs=1), out=tmp_path,
                device="cpu")
    payload = load_checkpoint(tmp_path / "checkpoint.pt", "train")
    assert "distributed" not in payload["config"] and "rank_rng" not in payload["state"]
    assert set(payload["state"]) == {"model", "optimizer", "scheduler", "scaler", "metrics"}
