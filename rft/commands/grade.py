"""`rft grade SPEC DATA.jsonl`: run a grader over saved samples, like OpenAI's grader validate/run endpoints.

SPEC is a grader spec JSON file or a Python grader `pkg.mod:attr`. Each JSONL line (or CSV/Parquet row,
read by `tasks.datasets.read_rows`) holds the item's
fields plus the sample: `"sample": "..."`, `"sample": {"output_text": ...}` or a top-level
`"output_text"` / `"output_tools"` / `"choices"` (OpenAI's `{"item": {...}, "model_sample": "..."}` shape
works too). The report counts errors per grader and kind and shows the worst samples with every template
of the grader as that sample renders it, so a spec that scores 0 shows why. With `--labels`, each line also
carries a human verdict or score (`"label"`, and optionally a `"category"`) and the report adds the grader's
confusion table against those labels (`graders.calibration`); the label is taken out of the item the grader sees.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

SAMPLE_KEYS = ("sample", "model_sample")
SAMPLE_FIELDS = ("output_text", "output_json", "output_tools", "choices")


def split_line(record: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """Split one JSONL record into (sample, item); raise naming `where` (file:line) when malformed."""
    from graders.base import GraderInputError, Sample

    if not isinstance(record, dict):
        raise GraderInputError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
    key = next((k for k in SAMPLE_KEYS if k in record), None)
    if key is not None:
        raw = record[key]
    elif set(SAMPLE_FIELDS) & set(record) - {"output_json"}:
        raw = {k: record[k] for k in SAMPLE_FIELDS if k in record}
    else:
        raise GraderInputError(f"{where}: no sample: give 'sample', 'model_sample', 'output_text' or 'output_tools'")
    try:
        sample = Sample.coerce(raw)
    except GraderInputError as exc:
        raise GraderInputError(f"{where}: {exc}") from exc
    if isinstance(record.get("item"), dict) and key is not None:
        return sample, record["item"]
    item = {k: v for k, v in record.items() if k not in (*SAMPLE_KEYS, *SAMPLE_FIELDS, "grade")}
    return sample, item


def read_lines(path: Path) -> tuple[list[dict[str, Any]], list[str], list[Any], list[dict[str, Any]]]:
    """Records, their locations ("file:line"), samples and items of a JSONL (or CSV/Parquet) file."""
    from graders.base import GraderInputError
    from tasks.datasets import read_rows

    try:
        rows = read_rows(path)
    except ValueError as exc:
        raise GraderInputError(str(exc)) from exc
    split = [split_line(record, where) for where, record in rows]
    return [r for _, r in rows], [w for w, _ in rows], [s for s, _ in split], [i for _, i in split]


def errors_by_kind(result: Any, grader: Any) -> dict[tuple[str, str], int]:
    """Counts of errors per (grader, kind): a composed grader's errors are counted under each sub-grader."""
    from graders.base import error_kind

    counts: dict[tuple[str, str], int] = {}
    for grade in result.grades:
        failed = {k: g for k, g in grade.sub_grades.items() if g.error} or ({grader.name: grade} if grade.error else {})
        for name, sub in failed.items():
            key = (name, error_kind(sub) or "other_error")
            counts[key] = counts.get(key, 0) + 1
    return counts


def rendered_templates(grader: Any, sample: Any, item: dict[str, Any]) -> dict[str, str]:
    """Each of the grader's templates as this sample renders it, or why it cannot be rendered."""
    from graders.base import GraderInputError, SampleValueMissing
    from graders.templates import render, template_fields

    out = {}
    for where, template in template_fields(grader).items():
        try:
            out[where] = repr(render(template, sample, item)[:120])
        except (GraderInputError, SampleValueMissing) as exc:
            out[where] = f"<cannot render: {exc}>"
    return out


def read_labels(records: list[dict[str, Any]], where: list[str], items: list[dict[str, Any]], field: str,
                category_field: str) -> tuple[list[Any], list[str | None]]:
    """Each line's label (removed from its item, so the grader never sees it) and category."""
    from graders.base import GraderInputError
    from graders.calibration import parse_label

    labels, categories = [], []
    for record, line, item in zip(records, where, items):
        if field not in record:
            raise GraderInputError(f"{line}: no {field!r} field; --labels needs a verdict or score on every line")
        labels.append(parse_label(record[field], f"{line}: {field}"))
        item.pop(field, None)
        category = record.get(category_field)
        categories.append(None if category is None else str(category))
    return labels, categories


def _report_calibration(result: Any, grader: Any, labels: list[Any], categories: list[str | None],
                        label_threshold: float | None) -> None:
    from graders.base import pass_threshold
    from graders.calibration import calibrate

    threshold = pass_threshold(grader)
    cal = calibrate(result.grades, labels, threshold=threshold, categories=categories,
                    label_threshold=threshold if label_threshold is None else label_threshold)
    typer.echo(f"agreement with labels ({cal.n} samples, {cal.errors} grading errors counted as fails):")
    typer.echo(cal.table())
    for name, sub in cal.categories.items():
        typer.echo(f"category {name!r} ({sub.n} samples):")
        typer.echo(sub.table())


def _report(result: Any, grader: Any, where: list[str], samples: list[Any], items: list[Any], show: int) -> None:
    from graders.base import pass_threshold

    threshold = pass_threshold(grader)
    passed = sum(g.score >= threshold for g in result.grades) / max(1, len(result.grades))
    typer.echo(f"mean score: {result.mean_score:.4f}   pass rate (score >= {threshold:g}): {passed:.4f}")
    typer.echo(f"errors: {result.errors}   timeouts: {result.timeouts}")
    for (name, kind), count in sorted(errors_by_kind(result, grader).items()):
        typer.echo(f"  errors {name}: {kind} x{count}")
    for name, mean in result.sub_means().items():
        typer.echo(f"  {name}: mean {mean:.4f}")
    for name, lat in result.latency.items():
        typer.echo(f"latency {name}: mean {lat.mean:.4f} s, p50 {lat.p50:.4f} s, max {lat.max:.4f} s")
    order = sorted(range(len(result.grades)), key=lambda i: (result.grades[i].error is None, result.grades[i].score))
    failures = [i for i in order if result.grades[i].score < threshold or result.grades[i].error][:show]
    if failures:
        typer.echo(f"failures (worst {len(failures)}):")
    for i in failures:
        grade = result.grades[i]
        error = f" error={grade.error}" if grade.error else ""
        typer.echo(f"  {where[i]}: score {grade.score:.4f}{error} sample={samples[i].output_text[:80]!r}")
        for field, text in rendered_templates(grader, samples[i], items[i]).items():
            typer.echo(f"      {field} = {text}")


def grade(
    spec: Annotated[str, typer.Argument(help="Grader spec JSON file, or a Python grader 'pkg.mod:attr'.")],
    data: Annotated[
        Path | None, typer.Argument(help="JSONL: item fields plus 'sample' (or 'output_text') per line.")
    ] = None,
    validate: Annotated[bool, typer.Option("--validate", help="Only check the spec (and DATA's lines).")] = False,
    out: Annotated[Path | None, typer.Option(help="Write each line with its grade to this JSONL file.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel graders (default: CPU count).")] = None,
    time_limit: Annotated[float, typer.Option(help="Seconds per sample before it is graded 'timeout'.")] = 30.0,
    mode: Annotated[str, typer.Option(help="auto, inline, async, thread or process.")] = "auto",
    show: Annotated[int, typer.Option(help="How many failures to print.")] = 3,
    labels: Annotated[bool, typer.Option("--labels", help="Compare with each line's human label.")] = False,
    label_field: Annotated[str, typer.Option(help="Field holding the label (a verdict or a score).")] = "label",
    label_threshold: Annotated[
        float | None, typer.Option(help="Score at which a numeric label passes (default: the grader's).")
    ] = None,
    category_field: Annotated[str, typer.Option(help="Field naming each line's category.")] = "category",
) -> None:
    """Grade saved samples with a grader spec and print the mean score, sub-scores and failures."""
    from graders.base import GraderInputError
    from graders.runner import SampleInputError, grade_batch
    from graders.spec import load_grader

    try:
        grader = load_grader(spec)
        if data is None:
            if not validate:
                raise GraderInputError("DATA is required unless --validate is given")
            typer.echo(f"spec ok: {type(grader).__name__} {grader.name!r}")
            return
        records, where, samples, items = read_lines(data)
        truth = read_labels(records, where, items, label_field, category_field) if labels else None
        if validate:
            typer.echo(f"spec ok: {type(grader).__name__} {grader.name!r}; {len(records)} lines ok in {data}")
            return
        start = time.perf_counter()
        try:
            result = grade_batch(grader, samples, items, time_limit=time_limit, workers=workers, mode=mode)
        except SampleInputError as exc:
            raise GraderInputError(f"{where[exc.index]}: {exc.reason}") from exc
    except (GraderInputError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    seconds = time.perf_counter() - start
    typer.echo(f"graded {len(result.grades)} samples with {grader.name!r} ({result.mode}) in {seconds:.2f} s")
    if result.fallback:
        typer.echo(f"note: {result.fallback}")
    _report(result, grader, where, samples, items, show)
    if truth is not None:
        _report_calibration(result, grader, *truth, label_threshold)
    if out is not None:
        with out.open("w") as fh:
            for record, one in zip(records, result.grades):
                fh.write(json.dumps({**record, "grade": one.to_dict()}, ensure_ascii=False) + "\n")
        typer.echo(f"wrote {len(records)} graded lines to {out}")


def register(app: typer.Typer) -> None:
    app.command("grade")(grade)
