"""The HTML report of an evaluation: tables, curves, samples, generated outputs and retrieval examples."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .document import Report
from .figures import latent_map, line_chart, loss_curves, sensor_plot

logger = logging.getLogger(__name__)


def render_value(report: Report, value: Any, caption: str) -> None:
    """Add one native modality value: images, audio clips, sensor series and text have their own form."""
    if hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode"):
        report.add_image(value, caption)
    elif hasattr(value, "waveform") and hasattr(value, "sample_rate"):
        report.add_audio(value.waveform, value.sample_rate, caption)
    elif hasattr(value, "values") and hasattr(value, "channel_names"):
        report.add_png(sensor_plot(value.values, value.sample_rate, value.channel_names), caption)
    elif isinstance(value, str):
        report.add_raw(f"<figure><blockquote>{html.escape(value)}</blockquote><figcaption>{html.escape(caption)}</figcaption></figure>")
    else:
        report.add_raw(f"<figure><code>{html.escape(repr(value)[:200])}</code><figcaption>{html.escape(caption)}</figcaption></figure>")


def build_evaluation_report(data, results, *, title: str = "polyfuse evaluation", examples: int = 6, seed: int = 0) -> Report:
    """Assemble the report of :func:`polyfuse.evaluation.suite.run_evaluation` results.

    ``data`` is the :class:`~polyfuse.evaluation.suite.EvaluationData` the results came from;
    it supplies samples, the model for generated examples and the latents for the map.
    """
    report = Report(title)
    report.data = results.to_dict()
    report.add_paragraph(
        f"Model {results.model}; test manifest {results.test_manifest} ({results.records['test']} records); "
        f"fields {', '.join(results.fields)}."
    )
    for part, reason in results.skipped.items():
        report.add_paragraph(f"{part}: skipped, {reason}.", note=True)

    _classification(report, results.results.get("classification"), results.results.get("baselines"))
    _robustness(report, results.results.get("robustness"))
    _coherence(report, results.results.get("coherence"))
    _retrieval(report, results.results.get("retrieval"))
    _training(report, data.model_dir)
    _latent_map(report, data)
    _samples(report, data, examples)
    _generated(report, data, results, examples, seed)
    _retrieval_examples(report, data, results, examples)
    return report


def _classification(report: Report, classification: dict | None, baselines: dict | None) -> None:
    if not classification:
        return
    report.add_heading("Classification from the shared latent")
    report.add_paragraph(
        "Probe: logistic regression fitted on the training latents of the same subset. k-NN: 5 nearest "
        "training latents by cosine distance. Fused probe: one probe fitted on the clean fused latents of "
        "all fields, applied to each subset, so it shows what missing modalities cost."
    )
    columns = ["modalities", "probe", "k-NN", "fused probe"]
    rows = [[name, s["probe"], s["knn"], s["fused_probe"]] for name, s in classification.items()]
    if baselines:
        columns += ["late fusion", "early fusion"]
        rows = [row + [baselines["late_fusion"].get(row[0], float("nan")), baselines["early_fusion"].get(row[0], float("nan"))] for row in rows]
    report.add_table(columns, rows)
    if baselines:
        report.add_paragraph(
            "Late fusion averages supervised unimodal classifiers over the modalities present; early fusion "
            "is one supervised network over concatenated features, with zeros for missing modalities. "
            f"Unimodal supervised accuracy: {', '.join(f'{k} {v:.4f}' for k, v in baselines['unimodal'].items())}."
        )
        wins = [row[0] for row in rows if row[3] >= max(row[4], row[5])]
        losses = [row[0] for row in rows if row[3] < max(row[4], row[5])]
        report.add_paragraph(
            f"The joint latent (fused probe) matches or beats both fusion baselines on: {', '.join(wins) or 'none'}; "
            f"it loses on: {', '.join(losses) or 'none'}."
        )


def _robustness(report: Report, robustness: dict | None) -> None:
    if not robustness:
        return
    report.add_heading("Robustness")
    rows = [["all present", robustness["clean"]]] + [[f"{name} missing", value] for name, value in robustness["missing_one"].items()]
    rows += [[f"any {k} missing (mean)", value] for k, value in robustness["missing_k"].items()]
    report.add_table(["condition", "fused-probe accuracy"], rows)
    for curve in robustness["corruptions"]:
        label = f"{curve['field']} {curve['kind']}"
        png = line_chart({label: (curve["levels"], curve["accuracy"])}, f"{curve['field']}: {curve['kind']}", curve["kind"] + " level", "accuracy")
        report.add_png(png, label)


def _coherence(report: Report, coherence: dict | None) -> None:
    if not coherence:
        return
    report.add_heading("Coherence of cross-modal generation")
    report.add_paragraph(
        "Share of generated samples that a classifier trained on real data of the target modality assigns "
        "to the label of the condition. Judge accuracy on real test data: "
        + ", ".join(f"{k} {v:.4f}" for k, v in coherence["judge_accuracy"].items())
        + "."
    )
    generators = coherence["generators"]
    pairs = list(next(iter(generators.values()))["pairs"]) if generators else []
    rows = [[pair, *(generators[name]["pairs"][pair] for name in generators)] for pair in pairs]
    rows.append(["unconditional joint", *(generators[name]["joint"] for name in generators)])
    report.add_table(["sources -> target", *generators], rows)


def _retrieval(report: Report, retrieval: dict | None) -> None:
    if not retrieval:
        return
    report.add_heading("Cross-modal retrieval")
    report.add_paragraph(
        "Every test record queries the test split with one modality; a result is relevant when it has the "
        "query's label" + (" (the query's own record excluded)." if retrieval["exclude_self"] else ".")
    )
    map_key = f"map_at_{retrieval['map_k']}"
    rows = [[f"{'+'.join(p['query'])} -> {p['target']}", *p["recall"].values(), p[map_key]] for p in retrieval["pairs"]]
    report.add_table(["query -> target", *(f"R@{k}" for k in retrieval["k_values"]), f"mAP@{retrieval['map_k']}"], rows)


def _training(report: Report, model_dir: Path) -> None:
    checkpoint = model_dir / "checkpoints" / "last.safetensors"
    if not checkpoint.exists():
        return
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        history = json.loads(handle.metadata()["state"])["history"]
    if history:
        report.add_heading("Training")
        report.add_png(loss_curves(history), "loss per epoch")


def _latent_map(report: Report, data) -> None:
    from ..encoding import encode_prepared

    latents = encode_prepared(data.model, data.test, data.fields)
    points, labels, groups = [], [], []
    for column, name in enumerate(latents.fields):
        present = latents.present[:, column]
        points.append(latents.modality_means[name][present])
        labels += [latents.labels[i] for i in np.flatnonzero(present)]
        groups += [name] * int(present.sum())
    report.add_heading("The shared latent space")
    report.add_paragraph("Each modality's posterior mean for every test record, projected to 2-D with PCA.")
    report.add_png(latent_map(np.concatenate(points), labels, groups), "test latents by label and by modality")


def _samples(report: Report, data, examples: int) -> None:
    report.add_heading("Test samples")
    for name in data.fields:
        modality = data.model.modalities[name]
        shown = 0
        for item, record in zip(data.test.items[name], data.test.records):
            if item is None:
                continue
            render_value(report, modality.postprocess(item), f"{name} {record.id} (label {record.label})")
            shown += 1
            if shown == examples:
                break


def _generated(report: Report, data, results, examples: int, seed: int) -> None:
    from ..generation.api import GenerationPipeline

    generators = list(results.results.get("coherence", {}).get("generators", {})) or ["vae"]
    name = generators[-1]
    pipeline = GenerationPipeline(data.model, _generator(data, name), name)
    report.add_heading(f"Generated samples ({name})")
    report.add_paragraph("Each row generates every other modality from one test record's single modality.")
    for source in data.fields:
        rows = [i for i, item in enumerate(data.test.items[source]) if item is not None][:examples]
        if not rows:
            continue
        batch = data.test.batch(rows, {n: data.model.modalities[n] for n in data.test.items})
        from ..generation.conditions import condition_from_batch

        condition = condition_from_batch(data.model, batch, (source,))
        targets = [f for f in data.fields if f != source]
        output = pipeline(condition, targets=targets, num_samples=len(rows), generator=torch.Generator().manual_seed(seed))
        for target in targets:
            values = output.values(data.model, target)
            for row, value in zip(rows, values):
                render_value(report, value, f"{source} of label {data.test.records[row].label} -> {target}")
    unconditional = pipeline(None, num_samples=examples, generator=torch.Generator().manual_seed(seed))
    report.add_paragraph("Unconditional joint samples: each column shares one latent.")
    for target in data.fields:
        for index, value in enumerate(unconditional.values(data.model, target)):
            render_value(report, value, f"joint sample {index}: {target}")


def _generator(data, name: str):
    from ..generation.store import resolve_generator

    return resolve_generator(data.model_dir, name, data.model.latent_dim, fingerprint=data.model.fingerprint, device=data.model.device)


def _retrieval_examples(report: Report, data, results, examples: int) -> None:
    if "retrieval" not in results.results:
        return
    from ..encoding import encode_prepared
    from ..retrieval.search import RetrievalIndex

    index = RetrievalIndex.load(Path(results.results["retrieval"]["index"]), model=data.model)
    latents = encode_prepared(data.model, data.test, data.fields)
    positions = {record.id: i for i, record in enumerate(data.test.records)}
    report.add_heading("Retrieval examples")
    report.add_paragraph("Each query is followed by its five best matches in the target modality.")
    fields: Sequence[str] = data.fields
    for source, target in zip(fields, list(fields[1:]) + list(fields[:1])):
        rows = [i for i, item in enumerate(data.test.items[source]) if item is not None][: max(1, examples // 3)]
        found = index.search_embeddings(latents.modality_means[source][rows], target, k=5, fields=(source,))
        for row, result in zip(rows, found):
            record = data.test.records[row]
            query_value = data.model.modalities[source].postprocess(data.test.items[source][row])
            render_value(report, query_value, f"query: {source} of {record.id} (label {record.label})")
            for hit in result.hits:
                position = positions.get(hit.record_id)
                if position is None or data.test.items[target][position] is None:
                    continue
                value = data.model.modalities[target].postprocess(data.test.items[target][position])
                render_value(report, value, f"{target} {hit.record_id} (label {hit.label}, score {hit.score:.3f})")
            report.add_raw("<br>")
