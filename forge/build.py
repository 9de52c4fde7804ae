"""Run a spec as a streaming build: perceive, judge a chunk at a time, write, commit once.

1. perceive: records of the source's images, staged as Parquet a chunk at a time (a table of
   records, `source: records`, is read as it is);
2. count: judge every chunk; keep only the funnel and the balance histograms;
3. write: judge every chunk again with the build's balance limits, phrase the rows it keeps and
   write them as Lance data files;
4. commit: make them visible in one commit that replaces the spec's previous build.
Memory follows the chunk size, not the number of images. Each step's results are staged, so a
build that dies resumes at the chunk where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import polars as pl

from forge.errors import ForgeError
from forge.judge import DEFAULT_CHUNK_SIZE, balance
from forge.judge.chunk import Judge
from forge.judge.driver import COUNT, WRITE, ChunkPlan, here, run_pass
from forge.judge.verify import funnel_lines
from forge.perception.depth_stats import MAX_OBJECTS
from forge.perception.model_perceiver import ModelPerceiver, ModelRunStats
from forge.perception.perceivers import Perceiver, perceiver_for
from forge.perception.tasks import RunOptions, model_tasks
from forge.perception.table import RECORD_POLARS, RecordTable
from forge.progress import ProgressFactory, Stage, StageTimes, no_progress
from forge.runner import judge_workers
from forge.skipped import Skipped
from forge.spec.load import LoadedSpec
from forge.spec.schema import GroundingModel, ModelsPerception, RecordsSource
from forge.staging import Staging
from forge.store import QA_SCHEMA, Store, WriteResult

STAGING_FORMAT = 4  # bump when what is staged changes meaning


@dataclass
class BuildReport:
    spec_name: str
    spec_hash: str
    seed: int
    db: Path
    table: str
    chunk_size: int
    images: int = 0
    skipped: Skipped = field(default_factory=Skipped)  # images that could not be perceived, by kind of reason
    duplicates: int = 0
    objects: int = 0
    over_cap: int = 0  # objects left out of crowded images (more than depth_stats.MAX_OBJECTS)
    chunks: int = 0
    resumed: dict[str, int] = field(default_factory=dict)  # chunks perceived/counted/written by an interrupted run
    workers: set[str] = field(default_factory=set)  # host:pid of the processes that judged the chunks
    funnel: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    qa_rows: int = 0
    write: WriteResult | None = None
    models: ModelRunStats | None = None
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)

    def lines(self) -> list[str]:
        failed = self.skipped.total
        out = [f"forge build {self.spec_name} (spec {self.spec_hash}, seed {self.seed})",
               f"  images        {self.images} read, {failed} skipped, {self.duplicates} duplicates",
               f"  objects       {self.objects}" + (f" ({self.over_cap} more left out: images with over {MAX_OBJECTS} "
                                                    "objects keep their best scored)" if self.over_cap else ""),
               f"  chunks        {self.chunks} of up to {self.chunk_size} images, judged by {len(self.workers)} "
               f"worker process{'es' if len(self.workers) != 1 else ''}"
               + (f"{'' if here() in self.workers else ' (none of them this one)'}")]
        if any(self.resumed.values()):
            reused = ", ".join(f"{n} {step}" for step, n in self.resumed.items())
            out.append(f"  resumed       chunks of an interrupted run of this build reused: {reused}")
        out.extend(self.skipped.lines())
        if failed:
            out.append(f"    (every skipped image and its reason: table `errors` in {self.db}; `forge stats`)")
        if self.models is not None:
            out.append(f"  perception    {self.models.line()}")
        out.extend(funnel_lines(self.funnel))
        out.extend(f"  warning: {w}" for w in self.warnings)
        if self.write is not None:
            w = self.write
            replaced = f"replacing {w.replaced} rows of this spec's previous build" + (
                f" ({w.stale} of an older spec version)" if w.stale else "") if w.replaced else "the spec's first build here"
            out.append(f"  QA written    {self.qa_rows} rows, {replaced} -> {self.db} (table {self.table})")
        out.append(f"  time          {self.seconds:.1f} s")
        total = Stage("total", self.seconds, {"images": self.images, "QA": self.qa_rows})
        out.append("  throughput")
        out.extend(self.stages.lines(total))
        return out


def _check_models(loaded: LoadedSpec, options: RunOptions, echo: Callable[[str], None]) -> None:
    """Fail before any work when a configured model cannot be found (offline machines)."""
    perception = loaded.spec.perception
    if isinstance(perception, ModelsPerception):
        import udfs.depth  # noqa: F401  transformers takes seconds to import: count it in setup, not in a model stage
        import udfs.grounding  # noqa: F401
        from udfs.loading import resolve_model

        from forge.perception.model_config import model_problems

        for _, model in model_tasks(perception).values():
            resolve_model(model.model, options.offline, echo)
        grounding = perception.grounding.model if isinstance(perception.grounding, GroundingModel) else None
        segmentation = perception.segmentation.model if perception.segmentation is not None else None
        for key, message in model_problems(grounding, segmentation)[:1]:  # the models are all here now
            raise ForgeError(f"{loaded.path}: perception.{'.'.join(key)}: {message}")


def _build_key(loaded: LoadedSpec, seed: int, limit: int | None, chunk_size: int, options: RunOptions,
               table: RecordTable | None, perceiver: Perceiver | None) -> str:
    """What a staged build depends on: a rerun with the same key may reuse it. For models that includes
    their cache keys, which fingerprint the weights: new weights at the same path make a new build."""
    models = perceiver.keys if isinstance(perceiver, ModelPerceiver) else None
    parts = {"format": STAGING_FORMAT, "spec": loaded.spec_hash, "seed": seed, "limit": limit, "chunk": chunk_size,
             "cache": options.use_cache, "input": table.fingerprint() if table is not None else None, "models": models}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _stage_records(perceiver: Perceiver, staging: Staging, chunk_size: int, progress: ProgressFactory,
                   stage: Stage) -> RecordTable:
    """Perception records of every image, one Parquet file per chunk; chunks staged before are kept."""
    chunks = -(-perceiver.items // chunk_size)
    done = staging.done("records")
    todo = [i for i in range(chunks) if i not in done]
    with progress(perceiver.label, perceiver.items, "images") as bar:
        bar.update(sum(min(chunk_size, perceiver.items - i * chunk_size) for i in done if i < chunks))
        for i in todo:
            batches = []
            for batch in perceiver.records(i * chunk_size, min((i + 1) * chunk_size, perceiver.items)).to_arrow_iter():
                batches.append(pl.from_arrow(batch))
                bar.update(batch.num_rows)
            frame = pl.concat(batches) if batches else pl.DataFrame(schema=RECORD_POLARS)
            expected = min(chunk_size, perceiver.items - i * chunk_size)
            if frame.height != expected:  # one record per image, readable or not: never a silent loss
                raise RuntimeError(f"chunk {i}: {frame.height} perception records for {expected} images")
            staging.write("records", i, lambda tmp, f=frame: f.write_parquet(tmp, row_group_size=max(1, f.height)))
    stage.counts["images"] = perceiver.items
    return RecordTable.open(staging.root / "records", where="staged records")


def _histograms(staging: Staging, chunks: int) -> dict[str, dict[str, np.ndarray]]:
    """family -> cell -> kept rows per order bucket, summed over the chunks' staged counts."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for i in range(chunks):
        path = staging.path("cells", i)
        if not path.exists():
            continue
        cells = pl.read_ipc(path)
        for (family, cell), part in cells.group_by(["family", "cell"]):
            counts = out.setdefault(family, {}).setdefault(cell, np.zeros(balance.BUCKETS, dtype=np.int64))
            np.add.at(counts, part["bucket"].to_numpy(), part["rows"].to_numpy())
    return out


def _save_array(path: Path, values: np.ndarray) -> None:
    with path.open("wb") as file:
        np.save(file, values)


def _aggregate(staging: Staging, chunks: int, report: BuildReport) -> None:
    """Sum the chunks' first-pass counts into the report (skipped images by kind of reason: the list of
    them stays in the staged counts, read again a chunk at a time for the `errors` table)."""
    for i in range(chunks):
        counted = staging.read_json("counted", i)
        report.images += counted["images"]
        report.workers.add(counted["worker"])
        report.objects += counted["objects"]
        report.over_cap += counted["over_cap"]
        for uri, reason in counted["failures"]:
            report.skipped.add(uri, reason)
        for family, counts in counted["funnel"].items():
            total = report.funnel.setdefault(family, {})
            for step, n in counts.items():
                total[step] = total.get(step, 0) + n


def _failures(staging: Staging, chunks: int) -> Iterator[list[tuple[str, str]]]:
    """The images each chunk could not perceive, (uri, reason), one chunk at a time."""
    for i in range(chunks):
        yield [tuple(pair) for pair in staging.read_json("counted", i)["failures"]]


@dataclass
class _Build:
    """One build's context, its passes as methods in the order they run."""

    loaded: LoadedSpec
    seed: int
    store: Store
    staging: Staging
    judge: Judge
    report: BuildReport
    progress: ProgressFactory
    chunk_size: int

    @property
    def table_name(self) -> str:
        return self.loaded.spec.output.table

    def perceive(self, perceiver: Perceiver) -> RecordTable:
        self.report.resumed["perceived"] = len(self.staging.done("records"))
        perceiver.prepare(self.store, self.staging.root / "index", self.chunk_size, self.progress, self.report.stages)
        with self.report.stages.stage("perceive") as stage:
            return _stage_records(perceiver, self.staging, self.chunk_size, self.progress, stage)

    def plan(self, table: RecordTable, limits: balance.Limits | None = None) -> ChunkPlan:
        return ChunkPlan(self.loaded, self.seed, table, tuple(table.chunks(self.chunk_size)), self.store.path,
                         self.table_name, self.staging.root, limits.to_json() if limits is not None else None)

    def count(self, plan: ChunkPlan) -> None:
        """First pass."""
        report, staging = self.report, self.staging
        with report.stages.stage("count") as stage:
            if not set(range(plan.chunks)) <= staging.done("duplicates"):  # images met twice are judged once
                for i, rows in enumerate(plan.table.duplicates(self.chunk_size)):
                    staging.write("duplicates", i, lambda tmp, r=rows: _save_array(tmp, r))
            report.duplicates = sum(len(np.load(staging.path("duplicates", i), mmap_mode="r")) for i in range(plan.chunks))
            todo = [i for i in range(plan.chunks) if i not in staging.done("counted")]
            run_pass(plan, COUNT, todo, judge_workers(), self.progress,
                     f"judging, pass 1 of 2: counting ({plan.chunks} chunks)")
            _aggregate(staging, plan.chunks, report)
            stage.counts["images"] = report.images
            stage.counts["candidates"] = sum(sum(c.values()) for c in report.funnel.values())

    def limits(self, chunks: int) -> balance.Limits:
        """The balance caps from every chunk's counts; the funnel completed with them."""
        limits = balance.limits(_histograms(self.staging, chunks), self.judge.modes)
        report = self.report
        for family in self.judge.families:
            counts = report.funnel.setdefault(family.name, {})
            verified = counts.pop("kept", 0)
            if family.mode is not None:
                counts[balance.BALANCE_RULE] = limits.dropped(family.name)
            counts["kept"] = verified - counts.get(balance.BALANCE_RULE, 0)
            report.funnel[family.name] = {step: counts.get(step, 0) for step in family.steps() + ["kept"]}
        for family, (cell, rows) in limits.single_cell().items():
            report.warnings.append(f"family {family}: all {rows} kept answers fall in one answer cell ({cell!r}); "
                                   f"dropped, since a family with one answer teaches a constant")
        return limits

    def write(self, plan: ChunkPlan, limits: balance.Limits) -> None:
        """Second pass; then the rows set aside at the boundaries of over-full cells, decided together."""
        staging, store, chunks = self.staging, self.store, plan.chunks
        with self.report.stages.stage("write") as stage:
            store.table(self.table_name, QA_SCHEMA)  # created (empty) here, once, before workers write its files
            todo = [i for i in range(chunks) if i not in staging.done("written")]
            run_pass(plan, WRITE, todo, judge_workers(), self.progress,
                     f"judging, pass 2 of 2: phrasing and writing ({chunks} chunks)")
            if chunks not in staging.done("written"):  # recorded as one chunk past the last
                edges = [pl.read_ipc(staging.path("boundary", i)) for i in sorted(staging.done("boundary"))]
                rows = Judge.to_qa(balance.resolve_boundary(pl.concat(edges), limits)) if edges else None
                fragments = store.stage_rows(self.table_name, rows) if rows is not None else []
                staging.write_json("written", chunks, {"rows": rows.num_rows if rows is not None else 0,
                                                       "fragments": fragments})
            self.report.qa_rows = sum(staging.read_json("written", i)["rows"] for i in range(chunks + 1))
            stage.counts["QA"] = self.report.qa_rows

    def commit(self) -> None:
        """One commit makes the rows visible and removes the spec's previous build; then index upkeep."""
        staging, store, spec = self.staging, self.store, self.loaded.spec
        with self.report.stages.stage("commit") as stage:
            fragments = staging.fragments()
            planned = staging.root / "commit.json"  # written before the commit: a rerun after it reports the same
            if not (planned.exists() and store.committed(self.table_name, fragments)):
                plan = json.dumps(store.planned_write(self.table_name, spec.name, self.loaded.spec_hash, fragments).__dict__)
                staging.save_file("commit.json", lambda tmp: tmp.write_text(plan))
                store.commit_rows(self.table_name, spec.name, fragments)
            self.report.write = WriteResult(**json.loads(planned.read_text()))
            stage.counts["QA"] = self.report.qa_rows
        with self.report.stages.stage("index") as stage:  # the rows are visible; indexes make filtered queries fast
            try:
                store.maintain(self.table_name)
            except (OSError, RuntimeError, ValueError) as exc:  # the build is done: a slower query is no failure
                self.report.warnings.append(f"the rows are committed, but index upkeep failed ({' '.join(str(exc).split())[:200]}); "
                                            f"queries work without it, and the next build retries")
            stage.counts["QA"] = self.report.qa_rows

    def log(self, started: datetime, chunks: int) -> None:
        report, spec = self.report, self.loaded.spec
        build_id = hashlib.sha256(f"{self.loaded.spec_hash}/{self.seed}/{started.isoformat()}".encode()).hexdigest()[:16]
        self.store.record_errors(_failures(self.staging, chunks), spec.name, build_id)
        self.store.record_build({
            "build_id": build_id, "spec_name": spec.name, "spec_hash": self.loaded.spec_hash,
            "spec_path": str(self.loaded.path), "seed": self.seed, "started_at": started.isoformat(),
            "seconds": report.seconds, "images": report.images, "images_failed": report.skipped.total,
            "qa_rows": report.qa_rows, "qa_inserted": report.write.rows, "funnel": report.funnel,
        })


def run_build(loaded: LoadedSpec, db: str | Path, seed: int | None = None, limit: int | None = None,
              echo: Callable[[str], None] = print, options: RunOptions = RunOptions(),
              progress: ProgressFactory = no_progress, chunk_size: int = DEFAULT_CHUNK_SIZE,
              resume: bool = True) -> BuildReport:
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    stages = StageTimes()
    spec = loaded.spec
    seed = spec.seed if seed is None else seed
    with stages.stage("setup"):  # finding models, compiling the judge, opening the database and the staging
        _check_models(loaded, options, echo)
        judge = Judge(loaded, seed)
        perceiver = perceiver_for(loaded, seed, limit, options)
        source = spec.source
        table = RecordTable.open(loaded.resolve(source.path)) if isinstance(source, RecordsSource) else None
        if perceiver is not None:
            perceiver.inputs(Path(db), progress, echo)
        store = Store(db)  # only once the inputs are known to be readable
        key = _build_key(loaded, seed, limit, chunk_size, options, table, perceiver)
    with store.build_lock(spec.name, echo):  # builds into one database run one at a time
        staging = Staging.open(store, spec.output.table, spec.name, key, resume)
        report = BuildReport(spec.name, loaded.spec_hash, seed, Path(db), spec.output.table, chunk_size, stages=stages)
        if isinstance(perceiver, ModelPerceiver):
            report.models = perceiver.stats
        build = _Build(loaded, seed, store, staging, judge, report, progress, chunk_size)
        if perceiver is not None:
            table = build.perceive(perceiver)
        assert table is not None
        plan = build.plan(table.limited(limit) if limit is not None else table)
        report.chunks = plan.chunks
        report.resumed.update(counted=len(staging.done("counted") & set(range(plan.chunks))),
                              written=len(staging.done("written") & set(range(plan.chunks))))
        echo(f"judging {plan.table.rows} images in {plan.chunks} chunks ...")
        build.count(plan)
        limits = build.limits(plan.chunks)
        build.write(build.plan(plan.table, limits), limits)
        echo(f"committing {report.qa_rows} QA rows to {db} ...")
        build.commit()
        report.seconds = time.perf_counter() - clock
        build.log(started, plan.chunks)
        staging.finish()
        return report
