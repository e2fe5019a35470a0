import pytest
import torch

from msde_bench.errors import MsdeError
from msde_bench.factory import build_method
from msde_bench.models.backbones import load_init
from msde_bench.models.plain import PlainClassifier
from msde_bench.spec import RunSpec


@pytest.mark.parametrize("size", [32, 64])
def test_output_contract(size):
    torch.manual_seed(0)
    model = PlainClassifier("resnet18").eval()
    out = model(torch.randn(2, 3, size, size))
    assert out.logits.shape == (2, 7)
    assert out.embedding.shape == (2, 512)
    assert out.feature_map.shape == (2, 512, size // 32, size // 32)
    assert torch.allclose(out.embedding, out.feature_map.mean(dim=(2, 3)))
    assert torch.allclose(out.logits, model.fc(out.embedding))


def test_any_timm_model_name():
    model = PlainClassifier("resnet10t").eval()
    out = model(torch.randn(1, 3, 32, 32))
    assert out.logits.shape == (1, 7) and out.feature_map.ndim == 4


def test_unknown_model_is_a_clear_error():
    with pytest.raises(MsdeError, match="unknown model 'resnet1800'"):
        PlainClassifier("resnet1800")


def test_pretrained_offline_fails_clearly():
    with pytest.raises(MsdeError, match="could not get pretrained weights for 'resnet18'.*--init PATH"):
        PlainClassifier("resnet18", pretrained=True)


def test_init_from_dataparallel_checkpoint_ignores_the_head(tmp_path):
    torch.manual_seed(1)
    src = PlainClassifier("resnet18")
    state = {"module." + k: v for k, v in src.trunk.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(1000, 512)  # a foreign classifier head
    state["module.fc.bias"] = torch.zeros(1000)
    state["module.feature.weight"] = torch.zeros(3)  # unexpected
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": state, "epoch": 3}, path)

    torch.manual_seed(2)
    dst = PlainClassifier("resnet18")
    head_before = dst.fc.weight.clone()
    report = load_init(dst.trunk, path)
    assert report["unexpected"] == ["feature.weight"]
    assert report["missing"] == []
    assert report["loaded"] == len(src.trunk.state_dict())
    for k, v in src.trunk.state_dict().items():
        assert torch.equal(dst.trunk.state_dict()[k], v)
    assert torch.equal(dst.fc.weight, head_before)


def test_init_through_the_spec(tmp_path):
    torch.manual_seed(1)
    src = PlainClassifier("resnet18")
    path = tmp_path / "plain.pth"
    torch.save(src.trunk.state_dict(), path)
    method, report = build_method(RunSpec(init=str(path)))
    assert report["loaded"] > 0 and report["missing"] == []
    assert torch.equal(method.trunk.conv1.weight, src.trunk.conv1.weight)


def test_init_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.w": torch.zeros(3)}, path)
    with pytest.raises(MsdeError, match="no key of the checkpoint matches"):
        build_method(RunSpec(init=str(path)))
    (tmp_path / "junk.pth").write_text("nope")
    with pytest.raises(MsdeError, match="not a readable PyTorch checkpoint"):
        build_method(RunSpec(init=str(tmp_path / "junk.pth")))
    with pytest.raises(MsdeError, match="checkpoint not found"):
        build_method(RunSpec(init=str(tmp_path / "missing.pth")))


def test_init_from_an_msde_bench_fold_model_and_its_subject_check(tmp_path):
    """A fold model (`<out>/<run_id>/fold<k>.pt`) initialises the trunk; on the same data it may
    only initialise the fold it was trained for, since it trained on every other fold's test subjects."""
    from msde_bench.checkpoints import check_init_subjects, save_model

    torch.manual_seed(1)
    src = PlainClassifier("resnet18")
    path = tmp_path / "fold0.pt"
    save_model(path, src, RunSpec(data="synth:tiny").to_dict(), 0, [3, 4])
    method, report = build_method(RunSpec(init=str(path)))
    assert report["loaded"] == len(src.trunk.state_dict()) and report["missing"] == []
    assert torch.equal(method.trunk.conv1.weight, src.trunk.conv1.weight)
    assert not torch.equal(method.fc.weight, src.fc.weight)  # the head is not loaded
    check_init_subjects(str(path), "synth:tiny", 0, [3, 4])  # its own fold
    check_init_subjects(str(path), "synth:small", 1, [5, 6])  # other data: subject ids mean other people
    with pytest.raises(MsdeError, match=r"fold0.pt: this fold model \(fold 0\) was trained on subjects \[5, 6\]"):
        check_init_subjects(str(path), "synth:tiny", 1, [5, 6])


def test_output_split_halves_batch_first_tensors_and_shares_the_rest():
    from msde_bench.models.base import Output

    out = Output(torch.arange(8.0).view(4, 2), torch.zeros(4, 3), torch.zeros(4, 3, 1, 1),
                 {"mu": torch.arange(4.0), "temperature": torch.tensor(2.0), "name": "x", "other": torch.zeros(3)})
    a, b = out.split(2)
    assert torch.equal(a.logits, out.logits[:2]) and torch.equal(b.logits, out.logits[2:])
    assert torch.equal(b.extras["mu"], torch.tensor([2.0, 3.0]))
    assert a.extras["temperature"] is out.extras["temperature"] and a.extras["name"] == "x"
    assert a.extras["other"] is out.extras["other"]  # not 2n rows: shared
