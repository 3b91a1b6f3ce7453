"""The package's architecture, checked from the source: libraries apart from stages, one
owner of every output path, one device set-up, every write atomic, defaults only in the
schema (the R side included)."""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

from conftest import REPO
from spinedx import config as configuration
from spinedx import paths

PACKAGE = REPO / "src/spinedx"
STAGES = sorted((PACKAGE / "stages").glob("*.py"))
MODULES = sorted(PACKAGE.rglob("*.py"))
RULE_FILES = sorted((REPO / "workflow/rules").glob("*.smk")) + [REPO / "Snakefile"]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the spinedx modules ``path`` imports (``from a import b`` gives
    both ``a`` and ``a.b``: b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("spinedx")}


def test_every_stage_module_exists_and_no_stage_imports_another():
    stages = {path.stem for path in STAGES} - {"__init__"}
    assert stages == {"demo_cohort", "annotations", "preprocessing", "splits", "training", "inference",
                      "ensembling", "case_level", "evaluation", "meta_analysis", "figures", "gradcam",
                      "bundle", "provenance", "audit", "report_metadata", "pretrained_weights",
                      # volume studies (issue 14)
                      "volume_annotations", "volume_preprocessing", "mode_comparison", "volume_gradcam",
                      # issue 15
                      "demo_reader_study", "reader_study", "comparisons", "calibration", "subgroups",
                      "participant_flow", "reporting_checklist", "distribution_shift",
                      # study shapes (issue 13)
                      "fusion", "multiclass_evaluation", "multiclass_figures",
                      # detection (issue 16)
                      *(f"detection_{name}" for name in (
                          "cases", "preprocessing", "splits", "training", "inference", "candidates", "readers",
                          "evaluation", "figures", "bundle", "audit", "provenance", "demo_readers"))}
    for path in STAGES:
        others = {name for name in imported_modules(path)
                  if name.startswith("spinedx.stages.") and name != f"spinedx.stages.{path.stem}"}
        assert not others, f"stage {path.stem} imports {sorted(others)}"


def test_libraries_import_no_stage():
    for path in MODULES:
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("stages/") or relative == "cli.py":
            continue
        stages = {name for name in imported_modules(path) if name.startswith("spinedx.stages")}
        assert not stages, f"{relative} imports {sorted(stages)}"


def test_the_workflow_imports_only_light_modules():
    """common.smk builds the DAG: the demo's planner, not its renderer; no torch."""
    common = (REPO / "workflow/rules/common.smk").read_text()
    imported = set(re.findall(r"^from (spinedx[\w.]*) import", common, re.M))
    assert "spinedx.demo.plan" in imported and not any("spine" == m.rsplit(".", 1)[-1] for m in imported)
    assert not any(m.startswith(("spinedx.models", "spinedx.stages")) for m in imported)


# --- one owner of every output path -----------------------------------------------------

#: Output names paths.py owns; no other module or rule file may spell them.
OWNED = [
    paths.CHECKPOINT_FILE, paths.HISTORY_FILE, paths.RESUME_FILE,
    *(paths.table_file(name) for name in [*paths.EVALUATION_TABLES, paths.COHORT_TABLE, paths.META_ANALYSIS_TABLE]),
    paths.ROC_BACKBONES_FIGURE, paths.FINAL_SYSTEM_FIGURE, paths.SROC_FIGURE,
    paths.forest_figure(""), paths.training_curves_figure("", "")[:-1], paths.gradcam_figure("", "")[:-1],
    paths.BUNDLE_CARD_JSON, paths.BUNDLE_CARD_MD, paths.BUNDLE_MANIFEST, "provenance.json", "verified.json",
    "images.parquet", "folds.tsv", "software_versions", "audit_config", ".parquet",
    # detection (issue 16)
    *(paths.table_file(name) for name in [*paths.DETECTION_TABLES, paths.DETECTION_COHORT]),
    paths.DETECTION_FROC_FIGURE, paths.detection_examples_figure("", "")[:-1],
    paths.detection_curves_figure("", "")[:-1],
    # issue 15 (figure stems equal to stage names, e.g. participant_flow, are not listed)
    *(paths.table_file(name) for name in [
        paths.READER_METRICS_TABLE, paths.READER_MRMC_TABLE, paths.READER_DECISIONS_TABLE, paths.COMPARISONS_TABLE,
        paths.CALIBRATION_TABLE, paths.CALIBRATION_CURVE_TABLE, paths.DECISION_CURVE_TABLE, paths.SUBGROUP_TABLE,
        paths.FLOW_TABLE, paths.CHECKLIST_TABLE, paths.SHIFT_TABLE, paths.SHIFT_SUMMARY_TABLE]),
    paths.READER_ROC_FIGURE, paths.SUBGROUP_FIGURE,
    "holdout.tsv", *(paths.table_file(name) for name in [*paths.MULTICLASS_TABLES, paths.FUSION_COMPARISON,
                                                          paths.FUSION_COEFFICIENTS]),
    paths.MULTICLASS_ROC_FIGURE, paths.MULTICLASS_CONFUSION_FIGURE, paths.MULTICLASS_F1_FIGURE, paths.FUSION_FIGURE,
]


def string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal but docstrings (tokenize reads .smk too)."""
    strings, previous = [], None
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.STRING:
            standalone = previous in (None, tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE, tokenize.NL)
            if not (standalone and token.string.lstrip("rbuRBU").startswith(('"""', "'''"))):
                strings.append((token.start[0], token.string))
        elif token.type == getattr(tokenize, "FSTRING_START", None):  # Python >= 3.12
            strings.append((token.start[0], token.line))
        if token.type not in (tokenize.COMMENT,):
            previous = token.type
    return strings


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "paths.py"] + RULE_FILES,
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_module_or_rule_spells_an_output_name_paths_owns(path):
    for line, text in string_literals(path):
        spelled = [name for name in OWNED if name in text]
        assert not spelled, f"{path.name}:{line} spells {spelled}: take it from spinedx.paths"


def test_rules_name_no_output_path_of_their_own():
    """Rule files build output paths from spinedx.paths only: the only file names they
    spell are report captions (.rst), conda envs, the schema, the default config and the
    R code they run."""
    allowed = re.compile(r"\.\./report/|\.\./\.\./envs/|\.\./schemas/|/R/|workflow/report/|config/config\.yaml")
    for path in RULE_FILES:
        for line, text in string_literals(path):
            if re.search(r"\.(csv|parquet|npz|pt|tsv|json|pdf|png|log|yaml)\b", text) and not allowed.search(text):
                raise AssertionError(f"{path.name}:{line}: {text.strip()} names a file; use spinedx.paths")
    assert "localrules:" not in (REPO / "Snakefile").read_text()


def test_paths_give_rule_patterns_and_stage_files_alike():
    study = paths.StudyPaths("results")
    pattern = study.checkpoint("{backbone}", "{sequence}", "{fold}")
    assert pattern == "results/models/{backbone}/{sequence}/fold{fold}/best.pt"
    assert study.table(paths.FOLD_2X2) == f"{study.tables_dir}/{paths.table_file(paths.FOLD_2X2)}"
    assert paths.figure_files(study.figure(paths.SROC_FIGURE)) == ("results/figures/fig5_sroc.pdf",
                                                                   "results/figures/fig5_sroc.png")
    assert paths.figure_stem(study.figure("x") + ".pdf") == "results/figures/x"
    assert study.bundle.model("b", "T1", 0) == "results/bundle/models/b/T1/fold0.pt"
    assert paths.bundle_model("b", "T1", 0) == "models/b/T1/fold0.pt"


# --- one device set-up, atomic writes ----------------------------------------------------

def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            yield name, node


def test_one_device_set_up_for_every_model_running_job():
    parts = {"configure_threads", "select_device", "resolve_acceleration", "apply_backend_settings"}
    for path in [*MODULES, *(REPO / "benchmarks").glob("*.py")]:
        if path.name == "device.py":
            continue
        used = {name for name, _ in calls(path) if name in parts}
        assert not used, f"{path.name} sets up the device itself ({sorted(used)}); use models.device.set_up"
    for stage in ("training", "inference", "gradcam", "detection_training", "detection_inference"):
        assert "set_up" in {name for name, _ in calls(PACKAGE / f"stages/{stage}.py")}, stage


def test_every_write_goes_through_an_atomic_writer():
    """Outside spinedx.io a writer only ever writes the temporary file of atomic_output."""
    writers = {"to_csv", "to_parquet", "write_text", "write_bytes", "savefig", "savez", "save", "copyfile",
               "dump", "safe_dump"}
    for path in MODULES:
        if path.name == "io.py":
            continue
        for name, node in calls(path):
            # Bare names are spinedx.io's own writers (write_text, write_csv, ...); methods
            # and module functions (DataFrame.to_csv, Path.write_text, np.savez) are not.
            if name not in writers or not isinstance(node.func, ast.Attribute):
                continue
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if name in ("dump", "safe_dump") and len(node.args) < 2:
                continue  # yaml/json to a string, written by io.write_text
            assert any(isinstance(a, ast.Name) and a.id == "partial" for a in arguments), \
                f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}() writes outside spinedx.io"


# --- defaults in the schema only ----------------------------------------------------------

def test_no_module_keeps_a_copy_of_schema_defaults():
    for path in MODULES:
        tree = ast.parse(path.read_text())
        names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)}
        assert not names & {"DEFAULTS", "DEFAULT_SETTINGS"}, path


def test_r_defaults_equal_the_schema():
    r_bridge = pytest.importorskip("spinedx.stats.r_bridge")
    try:
        ro = r_bridge.robjects()
    except Exception as error:  # rpy2 installed, R not loadable
        pytest.skip(f"R not available: {error}")
    env = ro.r["new.env"]()
    ro.r["sys.source"](str(paths.R_DIR / "meta_analysis.R"), envir=env)
    r_defaults = env["meta_analysis_defaults"]()
    values = {name: r_defaults.rx2(name)[0] for name in r_defaults.names}
    schema = configuration.schema_defaults("meta_analysis")
    assert values and set(values) <= set(schema), set(values) - set(schema)
    assert {name: schema[name] for name in values} == values


def test_settings_json_keeps_the_order_of_sequences():
    config = configuration.resolve({"sequences": {"T2": ["t2"], "T1": ["t1"], "CE-T1": ["ce"]}})
    text = configuration.settings_json(config, "sequences", "classes")
    assert list(json.loads(text)["sequences"]) == ["T2", "T1", "CE-T1"]
    assert text == configuration.settings_json(config, "classes", "sequences")  # stable: sections by name


def _shared_fixture_scopes(tree: ast.Module) -> set[str]:
    """Scopes of the module- or session-scoped fixtures a test module defines."""
    scopes = set()
    for node in tree.body:
        for decorator in getattr(node, "decorator_list", []):
            if isinstance(decorator, ast.Call):
                scopes |= {keyword.value.value for keyword in decorator.keywords
                           if keyword.arg == "scope" and isinstance(keyword.value, ast.Constant)
                           and keyword.value.value in ("module", "session")}
    return scopes


def _xdist_groups(tree: ast.Module) -> set[str]:
    """Names given by xdist_group(name=...) in the module's pytestmark."""
    marks = [node.value for node in tree.body if isinstance(node, ast.Assign)
             and any(getattr(target, "id", None) == "pytestmark" for target in node.targets)]
    return {keyword.value.value for mark in marks for call in ast.walk(mark)
            if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "xdist_group"
            for keyword in call.keywords if keyword.arg == "name"}


@pytest.mark.parametrize("path", sorted((REPO / "tests").glob("test_*.py")), ids=lambda p: p.name)
def test_a_test_module_with_shared_fixtures_runs_on_one_xdist_worker(path):
    """The suite runs with `-n 2 --dist loadgroup`: a module whose module-scoped fixtures run a
    study (minutes) would otherwise build them once per worker. Name the group with
    `name=` (the form every pytest-xdist release reads)."""
    tree = ast.parse(path.read_text())
    if _shared_fixture_scopes(tree):
        assert _xdist_groups(tree), f"{path.name}: add pytestmark = pytest.mark.xdist_group(name=...)"


def test_modules_sharing_the_tiny_run_share_its_xdist_group():
    """tiny_run / tiny_reference are session fixtures: every module using them in one group."""
    trees = {path.name: ast.parse(path.read_text()) for path in sorted((REPO / "tests").glob("test_*.py"))}
    users = {name: _xdist_groups(tree) for name, tree in trees.items()
             if any(arg.arg in ("tiny_run", "tiny_reference") for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) for arg in node.args.args)}
    assert len(users) >= 2 and all(groups == {"tiny_run"} for groups in users.values()), users
