"""The shipped Bitext subset: its licence and source travel with it, and it loads as instruction -> response."""

from __future__ import annotations

import csv
from collections import Counter

from training import datasets as ds


def test_the_bitext_subset_is_balanced_licensed_and_loads_cleanly():
    with open(ds.SAMPLE_BITEXT, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    intents = Counter(r["intent"] for r in rows)
    assert len(rows) == 810 and len(intents) == 27 and set(intents.values()) == {30}
    licence = ds.SAMPLE_BITEXT.with_name("bitext-support.LICENSE.txt").read_text(encoding="utf-8")
    readme = ds.SAMPLE_BITEXT.with_name("bitext-support.README.md").read_text(encoding="utf-8")
    assert "Community Data License Agreement" in licence and "Sharing" in licence
    assert "Bitext" in readme and "customer-support-llm-chatbot-training-dataset" in readme

    result = ds.load_bitext()
    assert result.records == 810 and not result.errors and len(result.examples) == 810
    first = result.examples[0]
    assert first["prompt"] == [{"role": "user", "content": rows[0]["instruction"].strip()}]
    assert first["completion"][0]["content"] == rows[0]["response"].strip()
    built = ds.build(result, None, 128, val_fraction=0.1, drop_over_long=False)
    assert len(built.train) + len(built.validation) == 810 and len(built.validation) == 81
    assert any("will be truncated" in str(i) for i in built.issues)
