"""The same spec on Daft's Ray runner (a local 2-CPU Ray) writes exactly the native runner's rows,
judging its chunks on Ray workers, not in the driver."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from click.testing import CliRunner

from conftest import REPO, demo_dict, read_table, write_spec
from forge.build import run_build
from forge.cli import main
from forge.spec.load import load_spec
from scene_data import make_dataset, use_annotations

RAY_BUILD = textwrap.dedent("""
    import sys
    import ray
    ray.init(num_cpus=2, include_dashboard=False)
    from forge.cli import main
    main(["build", sys.argv[1], "--db", sys.argv[2], "--runner", "ray", *sys.argv[3:]])
""")


def _ray_build(spec, db, *options: str) -> str:
    done = subprocess.run([sys.executable, "-c", RAY_BUILD, str(spec), str(db), *options], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_ray_runner_writes_the_native_runners_rows(tmp_path):
    specs = {"synthetic": write_spec(tmp_path, demo_dict(images=120), name="synthetic.yaml"),
             "annotations": write_spec(tmp_path, use_annotations(demo_dict(), "npy_m"), name="annotations.yaml")}
    make_dataset(tmp_path / "data", "npy_m", count=40, masks=True, objects=(4, 9))
    for name, spec in specs.items():
        native = run_build(load_spec(spec), tmp_path / f"native_{name}", echo=lambda _: None)
        output = _ray_build(spec, tmp_path / f"ray_{name}", "--chunk-size", "25")  # several chunks, on Ray workers
        assert "running on the Ray runner (1 node(s), 2 CPUs, 0 GPUs)" in output
        assert "worker process" in output and "(none of them this one)" in output
        assert f"QA written    {native.qa_rows} rows" in output
        ray_rows = read_table(tmp_path / f"ray_{name}")
        assert native.qa_rows > 100
        assert ray_rows.equals(read_table(tmp_path / f"native_{name}")), name


def test_model_perception_on_ray_actors_writes_the_native_runners_rows_and_cache(tmp_path):
    from helpers import models_spec, write_photos
    from tiny_models import save_tiny_depth, save_tiny_owlvit

    spec = models_spec(str(save_tiny_depth(tmp_path / "depth")), str(save_tiny_owlvit(tmp_path / "owl")))
    write_photos(tmp_path / "photos", count=8)
    path = write_spec(tmp_path, spec)
    native = run_build(load_spec(path), tmp_path / "native", echo=lambda _: None)
    output = _ray_build(path, tmp_path / "ray")
    assert "depth: 8 run, 0 cached; detections: 8 run, 0 cached" in output  # models ran as Ray actors
    assert native.qa_rows > 0 and read_table(tmp_path / "ray").equals(read_table(tmp_path / "native"))
    ray_det, native_det = (read_table(tmp_path / db, "perception_detections", "image_id") for db in ("ray", "native"))
    assert ray_det.equals(native_det)
    ray_maps, native_maps = (read_table(tmp_path / db, "perception_depth", "image_id").to_pylist() for db in ("ray", "native"))
    assert [(m["image_id"], m["key"], m["rows"], m["cols"]) for m in ray_maps] == [
        (m["image_id"], m["key"], m["rows"], m["cols"]) for m in native_maps]
    for ray_map, native_map in zip(ray_maps, native_maps):
        # Ray may batch the images differently; CPU kernels then round differently (a float16 step at most)
        np.testing.assert_allclose(np.frombuffer(ray_map["depth"], np.float16), np.frombuffer(native_map["depth"], np.float16),
                                   rtol=2e-3, atol=1e-3)


def test_address_without_ray_runner_is_one_line_error(tmp_path):
    spec = write_spec(tmp_path, demo_dict(images=5))
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db"), "--address", "auto"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --address needs --runner ray; the native runner runs on this machine only"
    assert not (tmp_path / "db").exists()


def test_ray_after_native_in_one_process_is_one_line_error(tmp_path):
    spec = write_spec(tmp_path, demo_dict(images=5))
    run_build(load_spec(spec), tmp_path / "native", echo=lambda _: None)  # Daft's runner is now native here
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db"), "--runner", "ray"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: Daft already ran on the native runner in this process; "
                                     "start a new process for --runner ray")


def test_ray_runner_without_ray_installed_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    spec = write_spec(tmp_path, demo_dict(images=5))
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db"), "--runner", "ray"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --runner ray needs Ray: pip install 'spatialforge[ray]'"
