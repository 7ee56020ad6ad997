"""Index a folder of images, sounds, sensor series and captions with a trained model, then search it with a file of any modality.

    python examples/media_search/media_search.py index --model runs/model --media ~/media --out runs/media-index
    python examples/media_search/media_search.py search --index runs/media-index --query query.wav --target image -k 5
    python examples/media_search/media_search.py add --index runs/media-index --media ~/media

``add`` encodes only the records that are new or whose files changed since the last
``index`` or ``add`` run, and saves the index as a new version without a rebuild.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from media_folder import FILES_KEY, MediaFolderError, MediaScan, fields_by_modality, modality_of, scan_media
from polyfuse import MultimodalVAE, PolyfuseError
from polyfuse.retrieval import RetrievalIndex, SearchResult, build_index

MANIFEST_NAME = "media.jsonl"  # manifest that 'index' writes into the index folder and builds the index from


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return args.run(args)
    except (MediaFolderError, PolyfuseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="number of torch CPU threads (0 keeps torch's default)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="build an index of every record in a media folder")
    index.add_argument("--model", type=Path, required=True, help="model folder written by 'polyfuse train'")
    index.add_argument("--media", type=Path, required=True, help="folder of media files, scanned recursively")
    index.add_argument("--out", type=Path, required=True, help="output index folder, which also receives the manifest media.jsonl")
    index.add_argument("--skip-unsupported", action="store_true", help="leave out files of unknown type or of a modality the model lacks, and empty captions, instead of stopping")
    index.add_argument("--skip-invalid", action="store_true", help="leave out records whose files cannot be read, instead of stopping")
    index.set_defaults(run=run_index)

    add = commands.add_parser("add", help="index the records that are new or changed since the last run")
    add.add_argument("--index", type=Path, required=True, help="index folder written by the 'index' command")
    add.add_argument("--media", type=Path, required=True, help="folder of media files, scanned recursively")
    add.add_argument("--skip-unsupported", action="store_true", help="leave out files of unknown type or of a modality the model lacks, and empty captions, instead of stopping")
    add.add_argument("--remove-missing", action="store_true", help="also remove indexed records whose files are all gone")
    add.set_defaults(run=run_add)

    search = commands.add_parser("search", help="print the records nearest to a query")
    search.add_argument("--index", type=Path, required=True, help="index folder written by the 'index' command")
    search.add_argument("--query", type=Path, action="append", default=[], help="query file (repeat the option with files of other modalities to fuse them)")
    search.add_argument("--text", help="query caption as inline text")
    search.add_argument("--target", required=True, help="modality field to search, or 'fused' to match whole records")
    search.add_argument("-k", type=int, default=5, help="number of records to print")
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.set_defaults(run=run_search)
    return parser


def run_index(args: argparse.Namespace) -> int:
    """Scan the folder, write the manifest into the index folder, and build the index from it."""
    # 1. Scan the folder into records, with each file assigned to one of the model's fields.
    model = MultimodalVAE.from_pretrained(args.model)
    scan = scan_media(args.media, fields_by_modality(_modality_types(model)), skip_unsupported=args.skip_unsupported)
    if not scan.records:
        raise MediaFolderError(
            f"no supported media files found in {scan.folder} ({len(scan.skipped)} left out); "
            "add images, sounds, sensor series or captions"
        )

    # 2. Write the manifest next to the index that it describes. Every path in it is absolute.
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = args.out / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in scan.records), encoding="utf-8")

    # 3. Build the index. Passing the model folder, not the loaded model, stores the model's
    # location in the index, so 'search' and 'add' need only the index folder.
    built = build_index(args.model, manifest, args.out, skip_invalid=args.skip_invalid)
    print(f"Indexed {len(scan.records)} records from {scan.folder} into {args.out}")
    print("Vectors per target: " + ", ".join(f"{target} {count}" for target, count in built.counts.items()))
    _print_left_out(scan, built.skipped)
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Add new records, re-encode changed ones, and save the index as a new version."""
    # 1. Load the saved index and scan the folder's current contents.
    index = RetrievalIndex.load(args.index)
    scan = scan_media(args.media, fields_by_modality(_modality_types(index.model)), skip_unsupported=args.skip_unsupported)

    # 2. Sort the records into new and changed ones. FILES_KEY contains each file's modification
    # time, so a new, removed or edited file marks its record as changed.
    new, changed = [], []
    for record in scan.records:
        if record["id"] not in index.id_map:
            new.append(record)
        elif index.id_map.entry(index.id_map.key_of(record["id"])).metadata.get(FILES_KEY) != record[FILES_KEY]:
            changed.append(record)
    found = {record["id"] for record in scan.records}
    missing = [entry.record_id for entry in index.id_map if entry.record_id not in found]

    # 3. Apply the changes, then save them as one new version.
    if new:
        index.add(new)
    if changed:
        index.update(changed)
    if missing and args.remove_missing:
        index.remove(missing)
    if new or changed or (missing and args.remove_missing):
        index.save()
    unchanged = len(scan.records) - len(new) - len(changed)
    print(f"Added {len(new)}, updated {len(changed)}, unchanged {unchanged} records in {args.index}")
    if missing:
        action = "removed" if args.remove_missing else "kept (pass --remove-missing to remove them)"
        print(f"{len(missing)} indexed records have no files in {scan.folder} any more, so they were {action}")
    _print_left_out(scan, [])
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Encode the query (fused when it has several modalities) and print the nearest records of the target."""
    index = RetrievalIndex.load(args.index)
    if args.target not in index.targets:
        raise MediaFolderError(f"--target {args.target!r} is not in the index; its targets are {', '.join(index.targets)}")
    query = _query_of(args.query, args.text, fields_by_modality(_modality_types(index.model)))
    result = index.search([query], args.target, k=args.k)[0]
    if args.json:
        print(json.dumps(_hits_as_json(result), indent=2, ensure_ascii=False))
    else:
        _print_hits(result)
    return 0


def _modality_types(model: MultimodalVAE) -> dict[str, str]:
    """Return the model's field -> modality type."""
    return {field_name: modality.name for field_name, modality in model.modalities.items()}


def _query_of(files: list[Path], text: str | None, field_of_type: dict[str, str]) -> dict[str, Any]:
    """Return the query record, with one value per model field, from the query files and the inline caption."""
    query: dict[str, Any] = {}
    known = ", ".join(sorted(field_of_type))
    for path in files:
        modality = modality_of(path)
        if modality is None:
            raise MediaFolderError(f"--query {path}: cannot tell which of the model's modalities ({known}) this file is; use a supported suffix")
        if modality not in field_of_type:
            raise MediaFolderError(f"--query {path}: this is a {modality} file, but the model has no {modality} field (it has {known})")
        if not path.is_file():
            raise MediaFolderError(f"--query {path}: file not found")
        field_name = field_of_type[modality]
        if field_name in query:
            raise MediaFolderError(f"--query {path}: this is a second {modality} query file; give at most one file per modality")
        query[field_name] = _read_query_caption(path) if modality == "text" else str(path.resolve())
    if text is not None:
        if "text" not in field_of_type:
            raise MediaFolderError(f"--text needs a model with a text field; this one has {', '.join(sorted(field_of_type))}")
        if field_of_type["text"] in query:
            raise MediaFolderError("give the query caption either with --text or as a --query .txt file, not both")
        query[field_of_type["text"]] = text
    if not query:
        raise MediaFolderError("missing query: give at least one --query file or --text")
    return query


def _read_query_caption(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as error:
        raise MediaFolderError(f"--query {path}: caption is not valid UTF-8 text ({error}); save it as UTF-8") from error


def _print_hits(result: SearchResult) -> None:
    print(f"Query {'+'.join(result.fields)} -> {result.target}: {len(result.hits)} hits")
    for rank, hit in enumerate(result.hits, start=1):
        print(f"{rank:>3}  {hit.score:+.4f}  {hit.record_id}  {_shown(hit.path, hit.values, result.target, hit.metadata)}")


def _shown(path: str | None, values: dict[str, Any], target: str, metadata: dict[str, Any]) -> str:
    # Show the target's file, else its value (a caption), else every file of the record, as for "fused".
    if path is not None:
        return path
    if target in values:
        return repr(values[target])
    return ", ".join(metadata.get(FILES_KEY, {}))


def _hits_as_json(result: SearchResult) -> dict[str, Any]:
    hits = [
        {"rank": rank, "id": hit.record_id, "score": round(hit.score, 6), "path": hit.path, "paths": hit.paths, "values": hit.values}
        for rank, hit in enumerate(result.hits, start=1)
    ]
    return {"query": list(result.fields), "target": result.target, "hits": hits}


def _print_left_out(scan: MediaScan, invalid: list) -> None:
    """Print the files that the scan left out and the records that the index build skipped as invalid."""
    for path, reason in scan.skipped:
        print(f"left out {path}: {reason}")
    for record in invalid:
        print(f"left out record {record.id}: {record.error}")


if __name__ == "__main__":
    sys.exit(main())
