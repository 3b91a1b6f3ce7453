"""The `spinedx` command: each stage reachable, bad input gives a message and exit 2."""

import yaml

from spinedx.cli import main


def test_config_prints_the_resolved_configuration(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training: {epochs: 3}\n")
    assert main(["config", "--config", str(path), "--settings", '{"splits": {"n_folds": 4}}']) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["training"]["epochs"] == 3 and resolved["splits"]["n_folds"] == 4
    assert resolved["decision"]["threshold"] == 0.5


def test_bad_input_is_a_one_line_error_with_exit_code_2(capsys, tree, tmp_path):
    images, cases = tree
    code = main(["splits", "--cases", str(cases), "--out", str(tmp_path / "f.tsv")])
    error = capsys.readouterr().err
    assert code == 2 and "spinedx splits: error:" in error and str(cases) in error
    assert "Traceback" not in error and not (tmp_path / "f.tsv").exists()


def test_invalid_settings_exit_2(capsys):
    assert main(["config", "--settings", '{"training": {"epochs": 0}}']) == 2
    assert "training/epochs" in capsys.readouterr().err


def test_annotations_stage_writes_the_table(tree, tmp_path):
    images, cases = tree
    out = tmp_path / "t1.parquet"
    assert main(["annotations", "--images-dir", str(images), "--cases", str(cases),
                 "--sequence", "T1", "--out", str(out)]) == 0
    import pandas as pd
    assert len(pd.read_parquet(out)) == 2
