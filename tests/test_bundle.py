"""Bundle, audit and provenance on hand-made inputs (the end-to-end runs are in
tests/test_workflow.py)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import torch

from spinedx.models import checkpoints
from spinedx.readers import bundle as bundle_reader
from spinedx.stages import audit, bundle, provenance
from spinedx.config import ConfigError
from spinedx.errors import InputError

SEQUENCES = ["T1", "T2"]


@pytest.fixture
def released(tmp_path, config):
    """A bundle of 2 sequences x 2 folds of tiny checkpoints (weights are not run here)."""
    config["splits"]["n_folds"] = 2
    config["sequences"] = {"T1": ["T1WI"], "T2": ["T2WI"]}
    config["decision"]["threshold"] = 0.4
    paths = []
    for sequence in SEQUENCES:
        for fold in range(2):
            path = tmp_path / f"study/{sequence}/fold{fold}/best.pt"
            checkpoints.save_checkpoint({
                "format": checkpoints.CHECKPOINT_FORMAT, "backbone": "resnet10t", "sequence": sequence,
                "fold": fold, "epoch": 3, "val_accuracy": 0.75, "classes": config["classes"],
                "state_dict": {"w": torch.full((3,), float(fold))}}, path)
            paths.append(path)
    images = pd.DataFrame({"patient_id": ["A", "B", "C"], "cohort": ["internal", "internal", "external"],
                           "label": [0, 1, 1], "sequence": "T1", "image_sha256": ["a" * 64, "b" * 64, "c" * 64]})
    images.to_parquet(tmp_path / "images.parquet")
    metrics = pd.DataFrame({"backbone": ["resnet10t"], "input": ["ALL"], "sensitivity": [0.9], "auc": [0.95]})
    metrics.to_csv(tmp_path / "table3.csv", index=False)
    metrics.iloc[:0].to_csv(tmp_path / "internal.csv", index=False)
    card = bundle.write_bundle(paths, tmp_path / "images.parquet", tmp_path / "table3.csv",
                               tmp_path / "internal.csv", config, tmp_path / "bundle", tmp_path)
    return tmp_path / "bundle", card, config


def test_card_lists_the_distribution_shift_references_in_both_forms(released, tmp_path):
    """The shift references travel hashed with the models, and the card names them for
    people (markdown) as well as for the audit (JSON)."""
    bundle_dir, card, config = released
    references = []
    for sequence in SEQUENCES:
        references.append(tmp_path / f"reference_{sequence}.npz")
        references[-1].write_bytes(sequence.encode())
    checkpoints_written = sorted((tmp_path / "study").glob("*/fold*/best.pt"))
    images, table3, internal = (tmp_path / name for name in ("images.parquet", "table3.csv", "internal.csv"))
    card = bundle.write_bundle(checkpoints_written, images, table3, internal, config, tmp_path / "shifted", tmp_path,
                               shift_references=references)
    names = [f"shift_reference/resnet10t/{sequence}.npz" for sequence in SEQUENCES]
    assert card["distribution_shift"]["references"] == names
    text = (tmp_path / "shifted/model_card.md").read_text()
    assert "## Distribution-shift reference" in text and all(f"- `{name}`" in text for name in names)
    assert bundle_reader.verify(tmp_path / "shifted") == card
    assert "Distribution-shift" not in (bundle_dir / "model_card.md").read_text()  # none given, none listed


def test_bundle_holds_hashed_models_and_a_card(released):
    bundle_dir, card, _ = released
    assert sorted(m["file"] for m in card["models"]) == [
        "models/resnet10t/T1/fold0.pt", "models/resnet10t/T1/fold1.pt",
        "models/resnet10t/T2/fold0.pt", "models/resnet10t/T2/fold1.pt"]
    assert card["training_images_sha256"] == ["a" * 64, "b" * 64]  # internal only
    assert card["metrics"]["external_case_level"] == [{"backbone": "resnet10t", "input": "ALL", "auc": 0.95, "sensitivity": 0.9}]
    assert "positive class: schwannoma" in (bundle_dir / "model_card.md").read_text()
    assert bundle_reader.verify(bundle_dir) == json.loads((bundle_dir / "model_card.json").read_text())
    for line in (bundle_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "SHA256SUMS").unlink(), "not a spinedx bundle"),
    (lambda b: (b / "models/resnet10t/T2/fold1.pt").unlink(), "missing"),
    (lambda b: (b / "model_card.json").write_text((b / "model_card.json").read_text().replace("0.4", "0.9")), "does not match"),
    (lambda b: (b / "models/resnet10t/T1/extra.pt").write_bytes(b"x"), "not in"),
    (lambda b: (b / "SHA256SUMS").write_text("abc  ../../etc/passwd\n"), "is not '<sha256>  <relative path>'"),
])
def test_damaged_bundles_are_refused(released, damage, message):
    bundle_dir, _, _ = released
    damage(bundle_dir)
    with pytest.raises(InputError, match=message) as error:
        bundle_reader.verify(bundle_dir)
    assert str(bundle_dir) in str(error.value)


def test_audit_takes_the_models_settings_and_keeps_the_auditors(released, config):
    bundle_dir, _, trained = released
    mine = json.loads(json.dumps(config))  # a fresh default config of the auditor
    mine["audit"]["bundle"] = str(bundle_dir)
    mine["sequences"] = {"T1": ["sag_t1"], "FLAIR": ["flair"]}
    mine["training"]["device"] = "cuda"
    mine["preprocessing"]["size"] = 500
    bundle_reader.apply_bundle(mine)
    assert mine["sequences"] == {"T1": ["T1WI", "sag_t1"], "T2": ["T2WI"]}
    assert mine["preprocessing"] == trained["preprocessing"] and mine["decision"]["threshold"] == 0.4
    assert mine["splits"]["n_folds"] == 2 and mine["training"]["device"] == "cuda"


def test_audit_of_a_folder_that_is_no_bundle(tmp_path, config):
    config["audit"]["bundle"] = str(tmp_path)
    with pytest.raises(ConfigError, match="model_card.json"):
        bundle_reader.apply_bundle(config)


def test_audit_refuses_the_bundles_training_images(released, tmp_path):
    bundle_dir, _, _ = released
    cohort = pd.DataFrame({"patient_id": ["X", "Y"], "image_path": ["X/T1/1.dcm", "Y/T1/1.dcm"],
                           "image_sha256": ["c" * 64, "b" * 64]})
    cohort.to_parquet(tmp_path / "new.parquet")
    with pytest.raises(InputError, match=r"training images .*'Y'"):
        audit.check_cohort(bundle_dir, tmp_path / "new.parquet")
    cohort.iloc[:1].to_parquet(tmp_path / "new.parquet")  # an external image of the study is allowed
    summary = audit.check_cohort(bundle_dir, tmp_path / "new.parquet")
    assert summary["models"] == 4 and summary["cohort"] == {"patients": 1, "images": 1}


def test_cases_without_cohort_column_are_all_external_in_audit_mode(tree, config):
    from spinedx.readers.cases import read_cases
    from spinedx.stages.annotations import tabulate
    images, cases = tree
    pd.read_csv(cases).drop(columns="cohort").to_csv(cases, index=False)
    with pytest.raises(InputError, match="missing column"):
        read_cases(cases, config["classes"])
    config["audit"]["bundle"] = "released"
    assert set(tabulate(images, cases, config, "T1").cohort) == {"external"}


def test_provenance_hashes_every_table_and_figure(tree, tmp_path, config):
    from spinedx.stages.annotations import tabulate
    images, cases = tree
    results = tmp_path / "results"
    tabulate(images, cases, config).to_parquet(tmp_path / "images.parquet")
    (results / "tables").mkdir(parents=True)
    (results / "figures/sub").mkdir(parents=True)
    (results / "tables/t.csv").write_text("a\n1\n")
    (results / "figures/sub/f.png").write_bytes(b"png")
    (results / "figures/f.png.partial").write_bytes(b"half")
    record = provenance.build(results, tmp_path / "images.parquet", cases, config, [tmp_path / "images.parquet"])
    paths = [row["path"] for row in record["outputs"]]
    assert set(paths) == {"figures/sub/f.png", (tmp_path / "images.parquet").as_posix(), "tables/t.csv"}
    assert record["outputs"][paths.index("tables/t.csv")]["sha256"] == hashlib.sha256(b"a\n1\n").hexdigest()
    assert len(record["inputs"]["images"]) == 2 and record["config"] == config
    changed = provenance.build(results, tmp_path / "images.parquet", cases, config)
    assert changed["inputs"]["sha256"] == record["inputs"]["sha256"]
    cases.write_text(cases.read_text() + "\n")
    assert provenance.build(results, tmp_path / "images.parquet", cases, config)["inputs"]["sha256"] != record["inputs"]["sha256"]


def test_audit_command_verifies_and_refuses_with_exit_code_2(released, capsys, tmp_path):
    from spinedx.cli import main
    bundle_dir, _, _ = released
    assert main(["audit", "--bundle", str(bundle_dir), "--verify-only", "--out", str(tmp_path / "v.json")]) == 0
    assert json.loads((tmp_path / "v.json").read_text())["models"] == 4
    weights = bundle_dir / "models/resnet10t/T1/fold0.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert main(["audit", "--bundle", str(bundle_dir), "--verify-only"]) == 2
    error = capsys.readouterr().err
    assert "spinedx audit: error:" in error and str(weights) in error and "refused" in error
    assert main(["audit", "--bundle", str(bundle_dir)]) == 2
    assert "--images-dir, --cases, --results-dir" in capsys.readouterr().err
