"""``less-select predict`` on the command line: the table-driven flags reach the stage, and a
refusal is one line with exit status 2."""

from __future__ import annotations

from less_select.cli import main

from .conftest import predict_config


def test_cli_refuses_a_too_small_sample_in_one_line(predict_setup, capsys):
    cfg = predict_config(predict_setup, "cli_small")
    argv = ["predict", "--model", cfg.model, "--checkpoints", *cfg.checkpoints, "--data", *cfg.data,
            "--task", cfg.task, "--output-dir", cfg.output_dir, "--projector", "identity",
            "--dims", "1024", "--max-seq-length", "64", "--sample-fraction", "0.1", "--top-k", "6"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]   # (model-loading bars aside)
    assert len(lines) == 1 and lines[0].startswith("less-select predict: error: the sample has 6 example(s)")
    assert "raise --sample-fraction" in lines[0]
