"""Solution model: solution.json round trip, content hash, refusals, private materialization, import."""

from __future__ import annotations

import copy
import json
import stat
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from kernelbench.core.errors import KernelBenchError, SolutionError
from kernelbench.core.solution import (Solution, Source, load_entry_point, load_solution, materialize,
                                  parse_solution, reference_solution, save_solution)

MAIN = '''import torch
from helper import scale

def run(x, out):
    out.copy_(scale(x))
'''
HELPER = '''FACTOR = 2.0

def scale(x):
    return x * FACTOR
'''

SOLUTION_JSON = {
    "name": "tiny_rmsnorm_triton_v1",
    "definition": "tiny_rmsnorm",
    "author": "alice",
    "description": "doubles its input",
    "spec": {
        "languages": ["pytorch"],
        "target_hardware": ["NVIDIA_H100"],
        "entry_point": "main.py::run",
        "dependencies": ["torch"],
    },
    "sources": [{"path": "main.py", "content": MAIN}, {"path": "helper.py", "content": HELPER}],
}


@pytest.fixture
def data():
    return copy.deepcopy(SOLUTION_JSON)


@pytest.fixture(autouse=True)
def forget_imported_solutions(tmp_path, monkeypatch):
    """Materialize under tmp_path; solutions import generic module names (main, helper): drop them after."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if "kb_solution_" in file or file.startswith(str(tmp_path)) or name in ("main", "helper"):
            del sys.modules[name]


# ---------------------------------------------------------------- reading and writing

def test_parse_fields(data):
    s = parse_solution(data)
    assert s.name == "tiny_rmsnorm_triton_v1" and s.definition == "tiny_rmsnorm" and s.author == "alice"
    assert s.languages == ("pytorch",) and s.language == "pytorch"
    assert s.entry_point == "main.py::run" and s.entry_file == "main.py" and s.entry_function == "run"
    assert s.target_hardware == ("NVIDIA_H100",) and s.dependencies == ("torch",)
    assert s.sources == (Source("main.py", MAIN), Source("helper.py", HELPER))


def test_round_trip_to_json_and_parse(data):
    s = parse_solution(data)
    assert parse_solution(s.to_json()) == s
    assert parse_solution(json.loads(json.dumps(s.to_json()))) == s
    out = s.to_json()
    assert out["spec"]["destination_passing_style"] is True
    assert out["sources"] == data["sources"]


def test_round_trip_save_and_load(data, tmp_path):
    s = parse_solution(data)
    path = save_solution(s, tmp_path / "nested" / "solution.json")
    assert path.is_file()
    loaded = load_solution(path)
    assert loaded == s and loaded.content_hash == s.content_hash
    assert json.loads(path.read_text()) == s.to_json()


def test_triton_language_and_single_language_string(data):
    data["spec"]["languages"] = ["triton"]
    assert parse_solution(data).language == "triton"
    data["spec"].pop("languages")
    data["spec"]["language"] = "triton"
    assert parse_solution(data).languages == ("triton",)


def test_load_errors(tmp_path):
    with pytest.raises(SolutionError, match="no such file"):
        load_solution(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SolutionError, match="invalid JSON"):
        load_solution(tmp_path / "bad.json")
    assert issubclass(SolutionError, KernelBenchError)


# ---------------------------------------------------------------- content hash

def test_content_hash_ignores_name_author_description(data):
    base = parse_solution(data).content_hash
    assert len(base) == 64
    other = copy.deepcopy(data)
    other["name"], other["author"], other["description"] = "renamed", "bob", "something else"
    assert parse_solution(other).content_hash == base


def test_content_hash_ignores_source_order(data):
    base = parse_solution(data).content_hash
    data["sources"].reverse()
    assert parse_solution(data).content_hash == base


@pytest.mark.parametrize("change", [
    lambda d: d["sources"][1].update(content=HELPER.replace("2.0", "3.0")),
    lambda d: d["sources"][1].update(path="helper2.py"),
    lambda d: d["sources"].append({"path": "extra.py", "content": ""}),
    lambda d: d["spec"].update(entry_point="helper.py::scale"),
    lambda d: d["spec"].update(destination_passing_style=False),
    lambda d: d["spec"].update(languages=["triton"]),
], ids=["content", "path", "extra-file", "entry-point", "dps", "language"])
def test_content_hash_changes_with_behaviour(data, change):
    base = parse_solution(data).content_hash
    change(data)
    assert parse_solution(data).content_hash != base


# ---------------------------------------------------------------- styles

def test_destination_passing_style_defaults_true(data):
    assert "destination_passing_style" not in data["spec"]
    assert parse_solution(data).destination_passing_style is True


def test_value_returning_style(data):
    data["spec"]["destination_passing_style"] = False
    s = parse_solution(data)
    assert s.destination_passing_style is False
    assert parse_solution(s.to_json()).destination_passing_style is False


def test_destination_passing_style_must_be_bool(data):
    data["spec"]["destination_passing_style"] = "yes"
    with pytest.raises(SolutionError, match="spec.destination_passing_style"):
        parse_solution(data)


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("path", ["/etc/passwd", "/tmp/main.py", "../main.py", "a/../../main.py", "sub/../x.py",
                                  "..", "a\\b.py", "..\\evil.py", "", "a\x00b.py"])
def test_unsafe_source_paths_refused(data, path):
    data["sources"].append({"path": path, "content": "x = 1\n"})
    with pytest.raises(SolutionError, match="must be a relative path inside the solution") as info:
        parse_solution(data, "sol.json")
    assert "sol.json: sources[2].path" in str(info.value)


def test_entry_file_not_among_sources(data):
    data["spec"]["entry_point"] = "kernel.py::run"
    with pytest.raises(SolutionError, match="entry file 'kernel.py' is not among the sources"):
        parse_solution(data)


def test_unknown_language(data):
    data["spec"]["languages"] = ["pytorch", "rust"]
    with pytest.raises(SolutionError, match=r"unknown languages \['rust'\]"):
        parse_solution(data)
    data["spec"]["languages"] = []
    with pytest.raises(SolutionError, match="spec.languages"):
        parse_solution(data)


@pytest.mark.parametrize("entry", ["main.py", "main.py:run", "main.py::", "::run", "main.py::run::x", "", 3, None])
def test_bad_entry_point_format(data, entry):
    data["spec"]["entry_point"] = entry
    with pytest.raises(SolutionError, match='spec.entry_point: must look like "file.py::function"'):
        parse_solution(data)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("sources"), "sources: required field is missing"),
    (lambda d: d.pop("spec"), "spec: required field is missing"),
    (lambda d: d.pop("name"), "name: required field is missing"),
    (lambda d: d.update(sources=[]), "sources: must be a non-empty list"),
    (lambda d: d.update(sources=[{"path": "main.py"}]), "sources[0]: needs string path and content"),
    (lambda d: d.update(spec="pytorch"), "spec: must be an object"),
], ids=["no-sources", "no-spec", "no-name", "empty-sources", "source-without-content", "spec-not-object"])
def test_malformed_solution(data, mutate, message):
    mutate(data)
    with pytest.raises(SolutionError) as info:
        parse_solution(data, "sol.json")
    assert message in str(info.value) and str(info.value).startswith("sol.json: ")


def test_parse_refuses_non_object():
    with pytest.raises(SolutionError, match="must be a JSON object"):
        parse_solution([1, 2])


# ---------------------------------------------------------------- materialize and import

def test_materialize_private_dir(data):
    data["sources"].append({"path": "pkg/util.py", "content": "VALUE = 7\n"})
    directory = materialize(parse_solution(data))
    assert directory.is_dir() and directory.is_absolute()
    assert "kb_solution_" in directory.name and directory.parent == Path(tempfile.gettempdir()).resolve()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert (directory / "main.py").read_text() == MAIN
    assert (directory / "helper.py").read_text() == HELPER
    assert (directory / "pkg" / "util.py").read_text() == "VALUE = 7\n"


def test_materialize_into_given_dir_is_private(data, tmp_path):
    directory = materialize(parse_solution(data), tmp_path / "sol")
    assert directory == (tmp_path / "sol").resolve()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["helper.py", "main.py"]


def test_materialize_refuses_path_escaping_through_a_symlink(data, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "sol"
    target.mkdir()
    (target / "link").symlink_to(outside, target_is_directory=True)
    data["sources"].append({"path": "link/evil.py", "content": "x = 1\n"})
    with pytest.raises(SolutionError, match="resolves outside the solution directory"):
        materialize(parse_solution(data), target)
    assert not (outside / "evil.py").exists()


@pytest.mark.parametrize("sources, message", [
    ((("main.py", "def run(): pass\n"), ("../escape.py", "x = 1\n")), "must be a relative path inside the solution"),
    ((("kernel.py", "def run(): pass\n"),), "entry file 'main.py' is not among the sources"),
], ids=["escaping-path", "entry-file-missing"])
def test_solution_built_in_code_is_checked_like_a_parsed_one(sources, message):
    with pytest.raises(ValidationError, match=message):
        Solution(name="x", definition="d", entry_point="main.py::run",
                 sources=tuple(Source(*s) for s in sources))


def test_official_languages_parse_and_only_python_ones_load(data):
    data["spec"]["languages"] = ["cute_dsl"]
    s = parse_solution(data)
    assert s.language == "cute_dsl"
    with pytest.raises(SolutionError, match="cannot be loaded"):
        load_entry_point(s, materialize(s))


def test_load_entry_point_multi_file_destination_passing(data):
    s = parse_solution(data)
    run = load_entry_point(s, materialize(s))
    x = torch.arange(4, dtype=torch.float32)
    out = torch.empty(4)
    assert run(x, out) is None
    assert torch.equal(out, x * 2)
    assert "kb_solution_" in sys.modules["helper"].__file__


def test_load_entry_point_value_returning(data):
    data["spec"]["destination_passing_style"] = False
    data["sources"][0]["content"] = "from helper import scale\n\ndef run(x):\n    return scale(x) + 1\n"
    s = parse_solution(data)
    run = load_entry_point(s, materialize(s))
    assert torch.equal(run(torch.ones(3)), torch.full((3,), 3.0))


def test_load_entry_point_entry_in_subdirectory(data):
    data["sources"].append({"path": "kernels/fast.py", "content": "from helper import scale\n\n"
                                                                 "def go(x):\n    return scale(x)\n"})
    data["spec"]["entry_point"] = "kernels/fast.py::go"
    s = parse_solution(data)
    go = load_entry_point(s, materialize(s))
    assert go(3) == 6.0


def test_load_entry_point_missing_function(data):
    data["spec"]["entry_point"] = "main.py::nope"
    s = parse_solution(data)
    with pytest.raises(SolutionError, match="defines no callable 'nope'"):
        load_entry_point(s, materialize(s))


def test_cpp_languages_need_a_cpp_entry_and_a_build_before_loading(data):
    data["spec"]["languages"] = ["cuda_cpp"]
    with pytest.raises(SolutionError, match="entry file"):
        parse_solution(data)   # a .py entry point
    data["sources"].append({"path": "kernel.cu", "content": "// a kernel\n"})
    data["spec"]["entry_point"] = "kernel.cu::run"
    s = parse_solution(data)
    with pytest.raises(SolutionError, match="must be built"):
        load_entry_point(s, materialize(s))   # kernelbench.core.cpp_build builds it first (tests/test_cuda_cpp.py)


def test_python_languages_this_version_does_not_load_say_so(data):
    data["spec"]["languages"] = ["cute_dsl"]
    s = parse_solution(data)
    with pytest.raises(SolutionError, match="cannot be loaded"):
        load_entry_point(s, materialize(s))


def _variant(data, factor):
    d = copy.deepcopy(data)
    d["name"] = f"variant_{factor}"
    d["spec"]["destination_passing_style"] = False
    d["sources"][0]["content"] = "from helper import scale\n\ndef run(x):\n    return scale(x)\n"
    d["sources"][1]["content"] = HELPER.replace("2.0", f"{factor}.0")
    return parse_solution(d)


def test_two_solutions_with_same_sibling_module_each_get_their_own(data):
    first, second = _variant(data, 2), _variant(data, 3)
    run_first = load_entry_point(first, materialize(first))
    assert run_first(1) == 2.0
    run_second = load_entry_point(second, materialize(second))
    assert run_second(1) == 3.0   # not the first solution's helper
    assert run_first(1) == 2.0    # the first keeps its own
    again = load_entry_point(first, materialize(first))
    assert again(1) == 2.0


def test_two_solutions_in_given_directories_each_get_their_own(data, tmp_path):
    first, second = _variant(data, 2), _variant(data, 3)
    assert load_entry_point(first, materialize(first, tmp_path / "a"))(1) == 2.0
    assert load_entry_point(second, materialize(second, tmp_path / "b"))(1) == 3.0


def test_reference_solution(tmp_path):
    source = "import torch\n\ndef run(x):\n    return x + 1\n"
    s = reference_solution("tiny", source)
    assert s.destination_passing_style is False and s.entry_point == "reference.py::run"
    assert s.definition == "tiny" and s.name == "tiny__reference"
    assert parse_solution(s.to_json()) == s
    run = load_entry_point(s, materialize(s))
    assert torch.equal(run(torch.zeros(2)), torch.ones(2))
    compiled = reference_solution("tiny", source, compiled="max-autotune")
    assert compiled.entry_point == "compiled.py::run" and "max-autotune" in compiled.sources[1].content
    assert compiled.content_hash != s.content_hash
