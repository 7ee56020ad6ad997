import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from polyfuse import MultimodalVAE
from polyfuse.errors import CheckpointError
from polyfuse.model import ModelConfig
from polyfuse.training import RunConfig

from conftest import subprocess_env, tiny_run_config, write_tiny_dataset


@pytest.fixture
def tiny_model():
    config = RunConfig.from_dict(tiny_run_config())
    torch.manual_seed(0)
    return MultimodalVAE(config.build_modalities(), ModelConfig(latent_dim=4, fusion="poe"))


def test_round_trip_in_fresh_process(tmp_path, tiny_model):
    manifest = write_tiny_dataset(tmp_path / "data", count=10)
    tiny_model.save_pretrained(tmp_path / "model")
    expected = tiny_model.encode([{"image": str(tmp_path / "data" / "images" / f"{i}.png"), "sensor": str(tmp_path / "data" / "sensor" / f"{i}.npy")} for i in range(10)])
    script = textwrap.dedent(
        f"""
        import numpy as np
        from polyfuse import MultimodalVAE, encode_manifest
        model = MultimodalVAE.from_pretrained({str(tmp_path / 'model')!r})
        output = encode_manifest(model, {str(manifest)!r}, progress=False)
        np.savez({str(tmp_path / 'latents.npz')!r}, mean=output.mean, image=output.modality_means["image"])
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, env=subprocess_env(), timeout=120)
    loaded = np.load(tmp_path / "latents.npz")
    np.testing.assert_allclose(loaded["mean"], expected.mean, atol=1e-5)
    np.testing.assert_allclose(loaded["image"], expected.modality_means["image"], atol=1e-5)


def test_saved_config_records_versions_and_plugins(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["polyfuse_version"] == "0.1.0"
    assert config["modalities"]["image"]["distribution"] == "polyfuse"
    assert config["modalities"]["sensor"]["config"]["length"] == 16
    weights = list((tmp_path / "model").glob("*.safetensors"))
    assert [w.name for w in weights] == [config["weights"]]


def test_resave_replaces_weights_and_keeps_one_file(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    first = json.loads((tmp_path / "model" / "config.json").read_text())["weights"]
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)
    tiny_model.save_pretrained(tmp_path / "model")
    second = json.loads((tmp_path / "model" / "config.json").read_text())["weights"]
    assert first != second
    assert [p.name for p in (tmp_path / "model").glob("model-*.safetensors")] == [second]


def test_failed_save_keeps_previous_model(tmp_path, tiny_model, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "model")
    before = MultimodalVAE.from_pretrained(tmp_path / "model").state_dict()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)
    monkeypatch.setattr("polyfuse.model.atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        tiny_model.save_pretrained(tmp_path / "model")
    after = MultimodalVAE.from_pretrained(tmp_path / "model").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_damaged_weights_are_detected(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    weights = next((tmp_path / "model").glob("model-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        MultimodalVAE.from_pretrained(tmp_path / "model")


def test_unknown_modality_type_names_distribution(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["modalities"]["image"]["type"] = "hologram"
    config["modalities"]["image"]["distribution"] = "polyfuse-holo"
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="modality type 'hologram' for field 'image', from polyfuse-holo"):
        MultimodalVAE.from_pretrained(tmp_path / "model")


def test_missing_folder_error_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json in"):
        MultimodalVAE.from_pretrained(tmp_path)


def test_encode_subset_and_unknown_field(tmp_path, tiny_model):
    write_tiny_dataset(tmp_path / "data", count=3)
    records = [{"image": str(tmp_path / "data" / "images" / "0.png"), "sensor": str(tmp_path / "data" / "sensor" / "0.npy")}]
    both = tiny_model.encode(records)
    image_only = tiny_model.encode(records, ["image"])
    assert both.present.tolist() == [[True, True]]
    assert image_only.present.tolist() == [[True]]
    assert not np.allclose(both.mean, image_only.mean)
    np.testing.assert_allclose(both.modality_means["image"], image_only.modality_means["image"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown modality field"):
        tiny_model.encode(records, ["audio"])


def test_encode_output_saves_npz_without_pickle(tmp_path, tiny_model):
    write_tiny_dataset(tmp_path / "data", count=2)
    output = tiny_model.encode([{"id": "x", "image": str(tmp_path / "data" / "images" / "0.png"), "label": 3}])
    output.save(tmp_path / "latents.npz")
    with np.load(tmp_path / "latents.npz", allow_pickle=False) as saved:
        assert saved["ids"].tolist() == ["x"]
        assert saved["labels"].tolist() == ["3"]
        assert saved["mean"].shape == (1, 4)
        assert saved["mean_sensor"].shape == (1, 4)


def test_saved_files_get_usual_permissions(tmp_path, tiny_model):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    tiny_model.save_pretrained(tmp_path / "model")
    for path in (tmp_path / "model").iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "line 1: invalid JSON"),
        ('{"format": "other"}', "is not a polyfuse model config"),
        ('{"format": "polyfuse-model", "format_version": 999}', "uses model config format 999, newer than this polyfuse"),
    ],
)
def test_read_model_config_rejects_bad_files(tmp_path, content, message):
    from polyfuse.model import MODEL_FORMAT, read_model_config

    (tmp_path / "config.json").write_text(content.replace("polyfuse-model", MODEL_FORMAT))
    with pytest.raises(CheckpointError, match=message):
        read_model_config(tmp_path)
