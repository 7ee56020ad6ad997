import json
import subprocess
import textwrap
import warnings
from pathlib import Path

import pytest

from polyfuse import Modality, hookimpl
from polyfuse.errors import PluginLoadError, PluginLoadWarning, RegistryError
from polyfuse.plugins import PluginHost, get_host, reset_host

from conftest import polyfuse_command, subprocess_env, tiny_run_config, write_tiny_dataset

BUILT_IN = {"image", "audio", "text", "sensor"}


def make_distribution(folder: Path, name: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """Write a minimal installed distribution (module + dist-info) that sys.path can find."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = folder / f"{name.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[polyfuse]\n{entry_name or module} = {module}\n")
    return folder


BROKEN_SOURCE = """
raise ImportError("libfancy.so: cannot open shared object file")
"""


def test_built_in_plugins_come_from_entry_points():
    host = get_host()
    assert BUILT_IN <= set(host.modalities.names())
    for name in BUILT_IN:
        entry = host.modalities.entry(name)
        assert entry.distribution == "polyfuse"
        assert entry.plugin == name
    assert {"digits", "sklearn-digits"} <= set(host.datasets.names())


def test_only_plugins_variable_limits_loading(monkeypatch):
    monkeypatch.setenv("POLYFUSE_PLUGINS", "image, sensor")
    host = PluginHost()
    assert host.modalities.names() == ["image", "sensor"]
    assert host.plugins["audio"].status == "disabled"


def test_broken_plugin_warns_and_others_load(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path / "site", "polyfuse-broken", "broken_plugin", BROKEN_SOURCE)))
    with pytest.warns(PluginLoadWarning) as caught:
        host = PluginHost()
    message = str(caught[0].message)
    assert "'broken_plugin'" in message
    assert "polyfuse-broken 0.3" in message
    assert "ImportError: libfancy.so" in message
    assert host.plugins["broken_plugin"].status == "failed"
    assert BUILT_IN <= set(host.modalities.names())


def test_strict_variable_makes_failures_fatal(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path / "site", "polyfuse-broken", "broken_plugin", BROKEN_SOURCE)))
    monkeypatch.setenv("POLYFUSE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="polyfuse-broken"):
        PluginHost()


class Duplicate(Modality):
    name = "image"


class BadName(Modality):
    name = "Bad-Name"


class Plugin:
    def __init__(self, *classes):
        self.classes = classes

    @hookimpl
    def register_modalities(self, register):
        for cls in self.classes:
            register(cls)


@pytest.mark.parametrize(
    "cls, message",
    [
        (Duplicate, "registered modality 'image', which plugin 'image' (polyfuse) already provides"),
        (BadName, "invalid name 'Bad-Name'"),
        (dict, "is not a subclass of polyfuse.modality.Modality"),
    ],
)
def test_register_rejects_invalid_contributions(cls, message):
    host = get_host()
    with pytest.raises((TypeError, ValueError)) as raised:
        host.register(Plugin(cls), name="faulty")
    assert message in str(raised.value)
    assert "faulty" not in host.plugins


def test_in_process_plugin_registers_and_unregisters():
    class Extra(Modality):
        name = "extra"

    host = get_host()
    info = host.register(Plugin(Extra), name="extra-plugin")
    assert info.registered == {"modalities": ["extra"]}
    assert host.modalities.get("extra") is Extra
    host.unregister("extra-plugin")
    assert "extra" not in host.modalities


def test_registry_miss_lists_available():
    with pytest.raises(RegistryError, match=r"no modality named 'video' is registered \(available: audio, image"):
        get_host().modalities.get("video")


def test_plugin_raising_in_register_is_isolated(tmp_path, monkeypatch):
    source = """
    from polyfuse import hookimpl

    @hookimpl
    def register_modalities(register):
        raise RuntimeError("registry offline")
    """
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path / "site", "polyfuse-grumpy", "grumpy_plugin", source)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = PluginHost()
    assert any("raised while registering" in str(w.message) and "registry offline" in str(w.message) for w in caught)
    assert host.plugins["grumpy_plugin"].status == "failed"


def test_cli_plugins_and_train_survive_broken_plugin(tmp_path):
    site = make_distribution(tmp_path / "site", "polyfuse-broken", "broken_plugin", BROKEN_SOURCE)
    env = subprocess_env(PYTHONPATH=str(site))

    listing = subprocess.run([*polyfuse_command(), "plugins", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "PluginLoadWarning: polyfuse plugin 'broken_plugin' from distribution polyfuse-broken 0.3" in listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert plugins["broken_plugin"]["status"] == "failed"
    assert plugins["image"]["registered"] == {"modalities": ["image"]}

    manifest = write_tiny_dataset(tmp_path / "data", count=8)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_run_config(epochs=1)))
    training = subprocess.run(
        [*polyfuse_command(), "train", "--manifest", str(manifest), "--config", str(config), "--out", str(tmp_path / "model")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert training.returncode == 0, training.stderr
    assert "broken_plugin" in training.stderr
    assert (tmp_path / "model" / "config.json").is_file()


def test_reset_host_rediscovers(monkeypatch):
    first = get_host()
    reset_host()
    assert get_host() is not first
