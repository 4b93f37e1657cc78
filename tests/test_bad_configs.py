"""The corpus of broken configs (tests/bad_configs/): every mistake is one line, names the file, the
table and the key, and exits with status 2 without a traceback; run-time mistakes fail the stage that
first sees them with one line.

Each case is a complete tinyml.toml whose header comments say what it gets wrong:

    # what is wrong, in words
    # stage: dataset            (optional: load is the default; dataset/train run `doit <stage>`)
    # expect: a substring the message must contain
    # expect: ...

It runs in a temporary project folder holding `data/` (the data files here), `sketches/` (the demo
sketch and the broken ones here) and `badsources.py` (callable sources). Load-time cases go through
`dag.load_project` in-process (what dodo.py calls); a few also through `python -m doit list`, as a
user runs it; run-time cases through `python -m doit <stage>`.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from project import DODO, REPO, doit

HERE = Path(__file__).parent / "bad_configs"
CASES = sorted(HERE.glob("*.toml"))
# A stage that fails on a user's mistake (TinyMLError) exits 2 with one line, like a load-time mistake.
RUNTIME_EXIT = {2}


def parse(case: Path) -> tuple[str, list[str]]:
    stage, expect = "load", []
    for line in case.read_bytes().decode("utf-8", "replace").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# stage:"):
            stage = line.split(":", 1)[1].strip()
        elif line.startswith("# expect:"):
            expect.append(line.split(":", 1)[1].strip())
    return stage, expect


LOAD = [c for c in CASES if parse(c)[0] == "load"]
RUNTIME = [c for c in CASES if parse(c)[0] != "load"]


def project_for(case: Path, root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dodo.py").write_text(DODO)
    shutil.copyfile(case, root / "tinyml.toml")
    shutil.copytree(HERE / "data", root / "data")
    shutil.copyfile(HERE / "data" / "badsources.py", root / "badsources.py")
    shutil.copytree(REPO / "sketches" / "sine", root / "sketches" / "sine")
    shutil.copytree(HERE / "sketches", root / "sketches", dirs_exist_ok=True)
    return root


def check_message(text: str, expect: list[str]) -> str:
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if all(e in ln for e in expect)]
    assert lines, f"no single line holds all of {expect}:\n{text}"
    return lines[0]


def test_the_corpus_is_big_enough_and_every_case_says_what_it_expects():
    assert len(CASES) >= 60
    for case in CASES:
        stage, expect = parse(case)
        assert expect, f"{case.name}: no '# expect:' line"
        assert stage in ("load", "dataset", "train"), case.name


@pytest.mark.parametrize("case", LOAD, ids=[c.stem for c in LOAD])
def test_load_time_mistake_is_one_line_and_exit_2(case, tmp_path, capsys):
    from doit_tinyml import dag

    _, expect = parse(case)
    root = project_for(case, tmp_path / "p")
    with pytest.raises(SystemExit) as exc:
        dag.load_project(root / "tinyml.toml")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("doit-tinyml: ") and err.count("\n") == 1, err   # exactly one line
    check_message(err, expect)
    assert "tinyml.toml" in err
    assert not (root / "build").exists(), "a refused config must not create the build folder"


THROUGH_DOIT = ["board_id_parent_path", "steps_unknown_method", "units_zero", "csv_not_utf8", "npz_object_arrays",
                "seed_negative", "sketch_without_model_header", "toml_not_utf8"]


@pytest.mark.parametrize("name", THROUGH_DOIT)
def test_doit_list_prints_one_line_and_exits_2(name, tmp_path):
    case = HERE / f"{name}.toml"
    root = project_for(case, tmp_path / "p")
    proc = doit(root, "list", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("doit-tinyml: "), proc.stderr
    check_message(text, parse(case)[1])


def _runtime_params():
    for case in RUNTIME:
        marks = [pytest.mark.slow] if parse(case)[0] == "train" else []
        yield pytest.param(case, id=case.stem, marks=marks)


@pytest.mark.slow  # each case runs `doit` up to the stage that finds the mistake
@pytest.mark.parametrize("case", list(_runtime_params()))
def test_run_time_mistake_fails_its_stage_with_one_line(case, tmp_path):
    stage, expect = parse(case)
    root = project_for(case, tmp_path / "p")
    assert doit(root, "list", check=False).returncode == 0, "a run-time case must pass the load-time checks"
    proc = doit(root, stage, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode in RUNTIME_EXIT, text
    check_message(text, expect)
    # the failing stage left no artifact behind
    built = {p.name for p in (root / "build" / "m").glob("*")} if (root / "build" / "m").exists() else set()
    target = {"dataset": "dataset.npz", "train": "trained.keras"}[stage]
    assert target not in built, built


# --------------------------------------------------------------------------- nothing outside build/
def _paths(obj, seen=None):
    """Every Path inside a task's action arguments (closures, tuples, dicts, dataclasses)."""
    import dataclasses

    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Path):
        yield obj
    elif isinstance(obj, (list, tuple, set)):
        for o in obj:
            yield from _paths(o, seen)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _paths(o, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _paths(getattr(obj, f.name), seen)
    elif callable(obj) and getattr(obj, "__closure__", None):
        for cell in obj.__closure__:
            try:
                yield from _paths(cell.cell_contents, seen)
            except ValueError:  # empty cell
                pass


def _inside(p: Path, folder: Path) -> bool:
    p = Path(os.path.normpath(p))
    return p == folder or folder in p.parents


@pytest.fixture(autouse=True)
def _default_tflm_cache(monkeypatch):
    """These tests check where a project writes by default: without the test run's shared TFLM cache (conftest),
    which a user sets only on purpose (TINYML_TFLM_CACHE)."""
    monkeypatch.delenv("TINYML_TFLM_CACHE", raising=False)


def assert_writes_stay_in_build(root: Path) -> None:
    """Every target and every path an action is handed is below build/, except the read-only inputs."""
    from doit_tinyml import dag

    ns = dag.load_project(root / "tinyml.toml")
    project = ns["TINYML_PROJECT"]
    build = Path(os.path.normpath(project.build_dir))
    assert _inside(build, root.resolve()) and build != root.resolve()
    inputs = [Path(os.path.normpath(root / m.dataset.source)) for m in project.models if m.dataset.kind in ("csv", "npz")]
    inputs += [m.firmware.sketch for m in project.models if m.firmware.sketch]
    for name, creator in ns.items():
        if not name.startswith("task_"):
            continue
        tasks = creator()
        for task in [tasks] if isinstance(tasks, dict) else tasks:
            for t in task.get("targets", []):
                assert _inside(root / t, build), (task.get("name"), t)
            for action in task["actions"]:
                for p in _paths(action):
                    p = Path(os.path.normpath(root / p))
                    assert _inside(p, build) or any(_inside(p, i) for i in inputs), (name, task.get("name"), p)


HOSTILE = ["..", ".", "/", "/etc", "../../x", "a/../../b", "C:\\x", "..\\x", "~", "-rf", ".hidden", "a b", "a\nb",
           "x" * 300, "", "nano33ble.aot", "aot", "logs", "é", "a:b", "$HOME", "a*"]


def _fuzz_ids(n: int):
    rng = random.Random(8)
    alphabet = "aZ09_-./\\: ~$*\té"
    for _ in range(n):
        yield "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


@pytest.mark.parametrize("n_random", [0, pytest.param(150, marks=pytest.mark.slow)])
def test_no_config_reaches_outside_the_build_folder(tmp_path, n_random):
    """Ids become folder names: any id is either refused at load, or every path it makes stays in build/
    (the hostile ids always; 150 random ones in the slow run)."""
    from doit_tinyml import config

    base = (REPO / "tests" / "bad_configs" / "units_zero.toml").read_text().replace("units = 0", "units = 1")
    accepted = refused = 0
    for i, ident in enumerate(HOSTILE + list(_fuzz_ids(n_random)) + ["ok_name-1", "Board2"]):
        key = json.dumps(ident)
        for where in ("model", "variant", "board"):
            if where == "model":
                text = base.replace("[models.m", f"[models.{key}")
            elif where == "variant":
                text = base.replace("[models.m.variants.float32]", f"[models.m.variants.{key}]")
            else:
                text = base.replace('boards = ["nano33ble"]', f"boards = [{key}]") + \
                    f'\n[boards.{key}]\nflash = 100000\nram = 10000\ncore = "cortex-m4"\n'
            root = tmp_path / f"{i}-{where}"
            project_for(HERE / "units_zero.toml", root)
            (root / "tinyml.toml").write_text(text)
            try:
                config.load(root / "tinyml.toml")
            except config.ConfigError as e:
                assert "\n" not in str(e)
                refused += 1
            else:
                accepted += 1
                assert_writes_stay_in_build(root)
            shutil.rmtree(root)
    assert refused and accepted


def test_build_dir_and_sketch_paths_cannot_leave_the_project(tmp_path):
    from doit_tinyml import config

    base = (HERE / "units_zero.toml").read_text().replace("units = 0", "units = 1")
    for build_dir in ("..", "../build", "/tmp/build", ".", "./", "a/../..", "sketches", "sketches/sine/b", "data", ""):
        root = project_for(HERE / "units_zero.toml", tmp_path / f"b{abs(hash(build_dir))}")
        (root / "tinyml.toml").write_text(f"[project]\nbuild_dir = {json.dumps(build_dir)}\n\n" +
                                          base.replace('source = "sine"\nparams = { samples = 200 }',
                                                       'source = "data/reg.csv"\nlabel = "y"'))
        with pytest.raises(config.ConfigError, match=r"\[project\] key 'build_dir'|inside the build folder"):
            config.load(root / "tinyml.toml")
    # a build folder that is a symlink to the project's parent is refused too
    root = project_for(HERE / "units_zero.toml", tmp_path / "link")
    (root / "out").symlink_to(tmp_path)
    (root / "tinyml.toml").write_text('[project]\nbuild_dir = "out"\n\n' + base)
    with pytest.raises(config.ConfigError, match="build_dir"):
        config.load(root / "tinyml.toml")
    # the accepted default: every write below build/
    (root / "tinyml.toml").write_text(base)
    assert_writes_stay_in_build(root)


def _snapshot(folder: Path, skip: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        if _inside(p, skip):
            continue
        out[str(p)] = p.read_bytes() if p.is_file() else None
    return out


@pytest.mark.slow
def test_doit_clean_and_a_hostile_board_touch_nothing_outside_build(tmp_path):
    """Run doit as a user would: the dataset stage, `doit clean`, and a config with an escaping board id
    (which used to make `doit` and `doit clean` delete size.json and firmware.elf outside build/)."""
    outside = tmp_path / "x"
    outside.mkdir()
    for rel in ("size.json", "firmware.elf", "pio/src/main.cpp"):
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_text("precious")
    root = project_for(HERE / "units_zero.toml", tmp_path / "a" / "b")
    text = (HERE / "units_zero.toml").read_text().replace("units = 0", "units = 1")
    (root / "tinyml.toml").write_text(text)
    before = _snapshot(tmp_path, root / "build")
    doit(root, "dataset")
    assert (root / "build" / "m" / "dataset.npz").is_file()
    doit(root, "clean")
    assert not (root / "build" / "m" / "dataset.npz").exists()
    assert _snapshot(tmp_path, root / "build") == before
    # the probe's config: [boards."../../x"] used as a firmware board
    evil = text.replace('boards = ["nano33ble"]', 'boards = ["../../../x"]') + \
        '\n[boards."../../../x"]\nflash = 100000\nram = 10000\ncore = "cortex-m4"\n'
    (root / "tinyml.toml").write_text(evil)
    before = _snapshot(tmp_path, root / "build")
    for args in (["list"], ["clean"], []):
        proc = doit(root, *args, check=False)
        assert proc.returncode == 2 and "board '../../../x'" in proc.stderr, proc.stderr
    assert _snapshot(tmp_path, root / "build") == before
