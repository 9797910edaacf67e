"""The Training page's pieces as a user reads them: the token histogram, progress lines and the loss chart."""

from __future__ import annotations

from ui.training_view import data_caption, length_bins, loss_chart_data, progress_cell, progress_text


def summary(**values) -> dict:
    base = {"step": 0, "total": None, "phase": None, "eta_s": None, "compare": None}
    return {**base, **values}


def test_token_length_bins_run_from_short_to_long_with_every_example_counted():
    lengths = [22, 35, 38, 150, 190, 199, 64, 64, 101]
    bins = length_bins(lengths)
    starts = [int(label.split("-")[0]) for label in bins["tokens"]]
    assert starts == sorted(starts) and starts[0] == 22
    assert bins["examples"].sum() == len(lengths)
    # Text order would put "100-..." before "22-..."; the bins stay in numeric order.
    assert list(bins["tokens"]) != sorted(bins["tokens"])
    assert list(length_bins([36, 36])["tokens"]) == ["36"]
    assert length_bins([]).empty


def test_a_job_reads_starting_until_the_trainer_knows_its_total_steps():
    assert progress_text(summary()) == "Starting…"
    loading = summary(phase="loading the training libraries")
    assert progress_text(loading) == "Starting… · loading the training libraries"
    assert progress_cell(summary(), running=True) == "Starting…"
    assert progress_cell(summary(), running=False) == "-"
    known = summary(step=12, total=30, eta_s=65, phase="training")
    assert progress_text(known) == "Step 12/30 · ETA 1:05 · training"
    assert progress_cell(known, running=True) == "12/30"
    for text in (progress_text(summary()), progress_cell(summary(), True)):
        assert "None" not in text and "?" not in text


def test_sparse_eval_losses_are_their_own_series_with_every_point_kept():
    train = [(1, 3.0), (2, 2.5), (3, 2.0), (3, 1.9), (4, 1.5)]
    evals = [(2, 2.7), (4, 1.8)]
    data = loss_chart_data(train, evals)
    eval_rows = data[data["series"] == "eval loss"]
    assert list(eval_rows["step"]) == [2, 4] and list(eval_rows["loss"]) == [2.7, 1.8]
    train_rows = data[data["series"] == "train loss"]
    assert list(train_rows["step"]) == [1, 2, 3, 4] and train_rows["loss"].iloc[2] == 1.9  # the last log per step
    assert not data["loss"].isna().any()
    assert list(loss_chart_data([(1, 2.0)], [])["series"]) == ["train loss"]


def test_a_job_says_how_many_examples_it_trains_on_and_how_many_were_left_out():
    assert data_caption(None) is None
    data = {"examples_used": 2, "examples_left_out_for_length": 6, "tokens_trained": 1234}
    assert data_caption(data) == "Trains on 2 examples (6 left out for length) · 1,234 reply tokens a pass"
