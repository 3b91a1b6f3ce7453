"""The whole workflow end to end on the tiny .test config, in a scratch directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--configfile", str(REPO / ".test/config.yaml"), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Job counts per rule of a dry run ({} when there is nothing to do)."""
    output = snakemake(workdir, "-n", "--cores", "2").stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.MULTILINE))
    counts.pop("total", None)
    return {rule: int(n) for rule, n in counts.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--cores", "2")
    return workdir, workdir / ".test/results"


def test_tables_have_every_backbone_input_and_fold(run):
    _, results = run
    table2 = pd.read_csv(results / "tables/table2_image_level.csv")
    table3 = pd.read_csv(results / "tables/table3_case_level.csv")
    fold_2x2 = pd.read_csv(results / "tables/fold_2x2.csv")
    backbones = ["mobilenetv3_small_050", "resnet10t"]
    assert list(table2.backbone.unique()) == backbones and set(table2.input) == {"T1", "T2", "CE-T1"}
    assert len(table2) == 6 and len(table3) == 8 and len(fold_2x2) == 2 * 4 * 3
    assert list(table3.input[:4]) == ["T1", "T2", "CE-T1", "ALL"]
    required = ["backbone", "input", "n_pos", "n_neg", "tp", "fp", "fn", "tn", "sensitivity",
                "specificity", "accuracy", "auc", "kappa", "sensitivity_lo", "sensitivity_hi", "auc_lo", "auc_hi"]
    assert set(required) <= set(table3.columns)
    # 3 + 3 external cases in the tiny cohort, every one decided.
    assert (table3.n_pos == 3).all() and (table3.n_neg == 3).all()
    assert ((table3.tp + table3.fn) == 3).all() and ((table3.tn + table3.fp) == 3).all()
    assert ((fold_2x2.tp + fold_2x2.fn + fold_2x2.tn + fold_2x2.fp) == 6).all()
    images = pd.read_parquet(results / "annotations/images.parquet")
    external_images = images[images.cohort == "external"].groupby("sequence").size()
    for row in table2[table2.backbone == backbones[0]].itertuples():
        assert row.n_pos + row.n_neg == external_images[row.input]


def test_meta_analysis_table_and_figures(run):
    _, results = run
    meta = pd.read_csv(results / "tables/meta_analysis.csv")
    assert set(meta.input) == {"T1", "T2", "CE-T1", "ALL"} and set(meta.backbone) == {"mobilenetv3_small_050", "resnet10t"}
    assert {"mu", "nu", "rho", "var1", "var2"} <= set(meta.parameter)
    for name in ["fig5_sroc", *(f"fig4_forest_{i}" for i in ("T1", "T2", "CE-T1", "ALL"))]:
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (results / f"figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_is_a_valid_pdf_and_png(run):
    _, results = run
    backbones, sequences = ("mobilenetv3_small_050", "resnet10t"), ("T1", "T2", "CE-T1")
    names = ["fig3_roc_backbones", "fig6_final_system",
             *(f"training_curves_{b}_{s}" for b in backbones for s in sequences),
             *(f"fig7_gradcam_{b}_{s}" for b in backbones for s in sequences)]
    for name in names:
        assert (results / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-", name
        png = results / f"figures/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert min(Image.open(png).size) > 300, name  # drawn, not an empty canvas
    table1 = pd.read_csv(results / "tables/table1_cohort.csv")
    assert table1.set_index(["cohort", "diagnosis"]).loc[("external", "all"), "patients"] == 6
    images = pd.read_parquet(results / "annotations/images.parquet")
    for backbone in backbones:
        for sequence in sequences:
            summary = pd.read_csv(results / f"gradcam/{backbone}/{sequence}.csv")
            external = images[(images.cohort == "external") & (images.sequence == sequence)]
            assert sorted(summary.image_id) == sorted(external.image_id)
            assert summary.box_fraction_of_image.between(0, 1).all()
    assert yaml.safe_load((results / "report/config.yaml").read_text())["backbones"] == list(backbones)


def test_report_builds_with_every_section(run):
    workdir, results = run
    report = workdir / "report.html"
    snakemake(workdir, "--report", str(report))
    html = report.read_text()
    for section in ("1. Cohort", "2. Model development", "3. Backbone comparison", "4. Final system",
                    "5. Meta-analysis", "6. Interpretability", "7. Reproducibility"):
        assert section in html
    for item in ("fig3_roc_backbones.png", "fig6_final_system.png", "fig7_gradcam_resnet10t_T2.png",
                 "fig5_sroc.png", "table1_cohort.csv", "software_versions.csv"):
        assert item in html, item
    assert "3 fold models" in html  # captions are rendered with the config (.test: 3 folds)


def test_every_job_left_its_model_log_and_benchmark(run):
    _, results = run
    for backbone in ("mobilenetv3_small_050", "resnet10t"):
        for sequence in ("T1", "T2", "CE-T1"):
            for fold in range(3):
                model_dir = results / f"models/{backbone}/{sequence}/fold{fold}"
                assert {p.name for p in model_dir.iterdir()} == {"best.pt", "history.tsv", "config.yaml"}
                assert (results / f"logs/training/{backbone}/{sequence}/fold{fold}.log").exists()
                assert (results / f"benchmarks/training/{backbone}/{sequence}/fold{fold}.tsv").exists()
    splits = pd.read_csv(results / "splits/folds.tsv", sep="\t")
    assert len(splits) == 12 and splits.groupby("fold").label.nunique().eq(2).all()


def test_nothing_to_do_on_a_second_run(run):
    workdir, _ = run
    assert planned_jobs(workdir) == {}


def test_changing_one_t2_image_reruns_only_the_t2_branch(run):
    workdir, results = run
    image = next((results / "demo_cohort/images").glob("*/T2WI/*.png"))
    original = image.read_bytes()
    stat = image.stat()
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 0xFF  # a real edit: Snakemake checksums small files, a bare touch is no change
    Image.fromarray(pixels).save(image)
    os.utime(image, (stat.st_atime, stat.st_mtime + 3600))
    try:
        planned = planned_jobs(workdir)
    finally:
        image.write_bytes(original)
        os.utime(image, (stat.st_atime, stat.st_mtime))
    assert planned_jobs(workdir) == {}
    assert planned == {"annotations": 1, "merge_annotations": 1, "preprocessing": 1, "training": 6,
                       "inference": 2, "ensembling": 2, "case_level": 2, "evaluation": 1, "meta_analysis": 1,
                       "figures": 1, "gradcam": 2, "all": 1}


def test_a_changed_fold_model_reruns_only_its_downstream(run):
    """One fold model replaced (e.g. retrained): no other model is retrained."""
    import torch

    workdir, results = run
    models = sorted((results / "models").rglob("best.pt"))
    changed = results / "models/resnet10t/CE-T1/fold1/best.pt"
    before = {p: p.stat().st_mtime_ns for p in models if p != changed}
    checkpoint = torch.load(changed, weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 0.01
    torch.save(checkpoint, changed)
    assert planned_jobs(workdir) == {"inference": 1, "ensembling": 1, "case_level": 1, "evaluation": 1,
                                     "meta_analysis": 1, "figures": 1, "gradcam": 1, "all": 1}
    snakemake(workdir, "--cores", "2")
    assert before == {p: p.stat().st_mtime_ns for p in before}
    assert planned_jobs(workdir) == {}


def test_lint_is_clean():
    done = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "Congratulations" in done.stdout + done.stderr, done.stdout + done.stderr
