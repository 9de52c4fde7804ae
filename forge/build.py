"""Run a compiled spec: perceive once, judge every pair, write kept QA rows, report the funnel."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import daft
import pyarrow as pa
import pyarrow.compute as pc

from forge.perception.cached_models import ModelRunStats, perceive_models_cached
from forge.perception.models import RunOptions
from forge.plan import compile_spec
from forge.progress import ProgressFactory, Stage, StageTimes, no_progress
from forge.spec.load import LoadedSpec
from forge.spec.schema import ModelsPerception
from forge.store import Store, WriteResult


def funnel_lines(funnel: dict[str, dict[str, int]]) -> list[str]:
    """Per family: candidates considered, dropped by each rule in order, kept."""
    out = []
    for family, counts in funnel.items():
        out.append(f"  {family}: {sum(counts.values())} candidates considered")
        out.extend(f"    - {reason:<22} {count:>8}" for reason, count in counts.items() if reason != "kept")
        out.append(f"    = {'kept':<22} {counts.get('kept', 0):>8}")
    return out


@dataclass
class BuildReport:
    spec_name: str
    spec_hash: str
    seed: int
    db: Path
    table: str
    images: int = 0
    images_failed: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    funnel: dict[str, dict[str, int]] = field(default_factory=dict)
    qa_rows: int = 0
    write: WriteResult | None = None
    models: ModelRunStats | None = None
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)

    def lines(self) -> list[str]:
        failed = sum(self.images_failed.values())
        out = [f"forge build {self.spec_name} (spec {self.spec_hash}, seed {self.seed})",
               f"  images        {self.images} read, {failed} skipped",
               f"  objects       {self.objects}"]
        for reason, count in sorted(self.images_failed.items()):
            out.append(f"    skipped {count}: {reason}")
        if self.images_failed:
            out.append(f"    (every skipped image and its reason: table `errors` in {self.db}; `forge stats`)")
        if self.models is not None:
            out.append(f"  perception    {self.models.line()}")
        out.extend(funnel_lines(self.funnel))
        if self.write is not None:
            w = self.write
            out.append(f"  QA written    {self.qa_rows} rows: {w.inserted} new, {w.already_present} already present, "
                       f"{w.stale_removed} from an older spec version removed -> {self.db} (table {self.table})")
        out.append(f"  time          {self.seconds:.1f} s")
        total = Stage("total", self.seconds, {"images": self.images, "QA": self.qa_rows})
        out.append("  throughput")
        out.extend(self.stages.lines(total))
        return out


def _check_models(loaded: LoadedSpec) -> None:
    """Fail before any work when a configured model cannot be found (offline machines)."""
    perception = loaded.spec.perception
    if isinstance(perception, ModelsPerception):
        import udfs.depth  # noqa: F401  transformers takes seconds to import: count it in setup, not in a model stage
        import udfs.grounding  # noqa: F401
        from udfs.loading import resolve_model

        resolve_model(perception.depth.model)
        resolve_model(perception.grounding.model)


def _stream(frame: daft.DataFrame, progress: ProgressFactory, label: str, total: int) -> daft.DataFrame:
    """Materialize perception records batch by batch so the progress bar moves as images finish."""
    batches = []
    with progress(label, total, "images") as bar:
        for batch in frame.to_arrow_iter():
            batches.append(batch)
            bar.update(batch.num_rows)
    return daft.from_arrow(pa.Table.from_batches(batches, schema=frame.schema().to_pyarrow_schema()))


def run_build(loaded: LoadedSpec, db: str | Path, seed: int | None = None, limit: int | None = None,
              echo: Callable[[str], None] = print, options: RunOptions = RunOptions(),
              progress: ProgressFactory = no_progress) -> BuildReport:
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    stages = StageTimes()
    with stages.stage("setup"):  # finding models, compiling the plan, opening the database
        _check_models(loaded)
        plan = compile_spec(loaded, seed=seed, limit=limit, options=options)
        store = Store(db)
    spec = loaded.spec
    report = BuildReport(spec.name, loaded.spec_hash, plan.seed, Path(db), spec.output.table, stages=stages)

    if isinstance(spec.perception, ModelsPerception):
        lazy, report.models = perceive_models_cached(loaded, store, options, limit, progress, stages)
        with stages.stage("perceive") as stage:
            perceived = _stream(lazy, progress, "reading perception", report.models.records)
    else:
        with stages.stage("perceive") as stage:
            perceived = _stream(plan.perceived, progress, f"perceiving ({spec.source.kind})", plan.images)
    records = perceived.select("image_uri", "error", "objects").to_arrow()
    stage.counts["images"] = report.images = records.num_rows
    errors = records.column("error").drop_null()
    report.images_failed = {d["values"]: int(d["counts"]) for d in pc.value_counts(errors).to_pylist()}
    failures = [(r["image_uri"], r["error"]) for r in records.filter(pc.is_valid(records.column("error"))).to_pylist()]
    report.objects = int(pc.sum(pc.list_value_length(records.column("objects"))).as_py() or 0)

    echo("relating, verifying and phrasing candidates ...")
    with stages.stage("judge") as stage:
        judged = plan.judged(perceived).collect()
        counted = {(row["family"], row["reject"] or "kept"): row["pairs"] for row in plan.funnel(judged).to_pylist()}
        for family in spec.families:
            steps = plan.rule_names(family) + ["kept"]
            report.funnel[family.name] = {step: counted.get((family.name, step), 0) for step in steps}
        qa = plan.qa(judged).to_arrow()
        stage.counts["candidates"] = sum(sum(c.values()) for c in report.funnel.values())
        stage.counts["QA"] = report.qa_rows = qa.num_rows

    echo(f"writing {qa.num_rows} QA rows to {db} ...")
    with stages.stage("write") as stage:
        report.write = store.write_qa(qa, spec.name, loaded.spec_hash, spec.output.table)
        store.maintain(spec.output.table)
        stage.counts["QA"] = qa.num_rows
    report.seconds = time.perf_counter() - clock
    build_id = hashlib.sha256(f"{loaded.spec_hash}/{plan.seed}/{started.isoformat()}".encode()).hexdigest()[:16]
    store.record_errors(failures, spec.name, build_id)
    store.record_build({
        "build_id": build_id, "spec_name": spec.name, "spec_hash": loaded.spec_hash, "spec_path": str(loaded.path),
        "seed": plan.seed, "started_at": started.isoformat(), "seconds": report.seconds, "images": report.images,
        "images_failed": sum(report.images_failed.values()), "qa_rows": report.qa_rows,
        "qa_inserted": report.write.inserted, "funnel": report.funnel,
    })
    return report
