import json
import os

import pytest

from polyfuse.data import prepare_records, read_manifest
from polyfuse.errors import InvalidRecordError, SkippedRecordWarning
from polyfuse.training import RunConfig

from conftest import tiny_run_config, write_tiny_dataset


def test_jsonl_records_keep_label_and_metadata(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "text": "seven", "label": 7, "speaker": "x"}\n\n{"id": 2, "label": 1}\n')
    records = read_manifest(manifest)
    assert [r.id for r in records] == ["a", "2"]
    assert records.records[0].label == 7
    assert records.records[0].metadata(exclude=["text"]) == {"speaker": "x"}
    assert records.records[0].source.description == f"{manifest} line 1"
    assert records.records[1].source.description == f"{manifest} line 3"


def test_csv_manifest_types_labels_and_empty_cells(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text('id,text,image,label\na,"the digit 7, again",,7\nb,,img.png,x\n')
    records = read_manifest(manifest).records
    assert records[0].value("text") == "the digit 7, again"
    assert records[0].value("image") is None
    assert records[0].label == 7
    assert records[1].label == "x"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a"}\n{"id": "a"}\n', "line 2, field 'id': duplicate id, first used on line 1"),
        ('{"text": "x"}\n', "line 1, field 'id': missing id"),
        ('{"id": "a"\n', "line 1: invalid JSON"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path, content, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(content)
    with pytest.raises(InvalidRecordError, match=message):
        read_manifest(manifest)


def test_unsupported_suffix_names_formats(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("id\n")
    with pytest.raises(InvalidRecordError, match=r"Use one of \.jsonl, \.csv"):
        read_manifest(manifest)


def test_relative_paths_resolve_from_manifest_folder(tmp_path, monkeypatch):
    manifest = write_tiny_dataset(tmp_path / "data", count=6)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    modalities = RunConfig.from_dict(tiny_run_config()).build_modalities()
    dataset = prepare_records(read_manifest(os.path.relpath(manifest, elsewhere)).records, modalities, progress=False)
    assert dataset.presence() == {"image": 6, "sensor": 6}


def test_missing_file_names_line_and_resolved_path(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=4)
    (tmp_path / "data" / "images" / "2.png").unlink()
    modalities = RunConfig.from_dict(tiny_run_config()).build_modalities()
    with pytest.raises(InvalidRecordError) as raised:
        prepare_records(read_manifest(manifest).records, modalities, progress=False)
    message = str(raised.value)
    assert f"{manifest.resolve()} line 3, field 'image': file not found" in message
    assert str((tmp_path / "data" / "images" / "2.png").resolve()) in message


def test_skip_invalid_reports_each_record(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", count=6)
    (tmp_path / "data" / "images" / "1.png").write_bytes(b"")
    (tmp_path / "data" / "sensor" / "4.npy").unlink()
    modalities = RunConfig.from_dict(tiny_run_config()).build_modalities()
    with pytest.warns(SkippedRecordWarning) as caught:
        dataset = prepare_records(read_manifest(manifest).records, modalities, skip_invalid=True, progress=False)
    assert len(dataset) == 4
    assert [s.id for s in dataset.skipped] == ["r1", "r4"]
    assert "file is empty (0 bytes)" in dataset.skipped[0].error
    assert "file not found" in dataset.skipped[1].error
    assert len(caught) == 2


def test_record_with_no_modalities_is_kept(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "empty", "label": 0}) + "\n")
    modalities = RunConfig.from_dict(tiny_run_config()).build_modalities()
    dataset = prepare_records(read_manifest(manifest).records, modalities, progress=False)
    assert dataset.presence() == {"image": 0, "sensor": 0}
