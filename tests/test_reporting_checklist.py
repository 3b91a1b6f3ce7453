"""Reporting checklist: every item of the three guidelines, each mapped to evidence this
package can produce or to the author, and resolved to the files a run produced."""

from __future__ import annotations

from collections import Counter

from spinedx import paths
from spinedx.checklists import AUTHOR, EVIDENCE, ITEM_COUNTS, ITEMS, NOT_APPLICABLE
from spinedx.stages import reporting_checklist as stage

# Item numbers of the guidelines (STARD 2015: 30 items with 10a/b, 12a/b, 13a/b, 21a/b;
# TRIPOD+AI 2024: 27 items with their sub-items; CLAIM 2020: 42 items).
STARD = [*map(str, range(1, 10)), "10a", "10b", "11", "12a", "12b", "13a", "13b", *map(str, range(14, 21)),
         "21a", "21b", *map(str, range(22, 31))]
TRIPOD_AI = ["1", "2", "3a", "3b", "3c", "4", "5a", "5b", "6a", "6b", "6c", "7", "8a", "8b", "8c", "9a", "9b", "9c",
             "10", "11", "12a", "12b", "12c", "12d", "12e", "12f", "12g", "13", "14", "15", "16", "17", "18a", "18b",
             "18c", "18d", "18e", "18f", "19", "20a", "20b", "20c", "21", "22", "23a", "23b", "24", "25", "26", "27a",
             "27b", "27c"]


def test_every_item_of_every_guideline_once_with_known_evidence():
    items = {}
    for guideline, item, topic, paraphrase, keys, author in ITEMS:
        items.setdefault(guideline, []).append(item)
        assert set(keys) <= set(EVIDENCE), (guideline, item)
        assert keys or author.startswith((AUTHOR, NOT_APPLICABLE)), (guideline, item)
        assert paraphrase and topic and len(paraphrase) < 110  # short paraphrases, not the guideline texts
    assert items["STARD 2015"] == STARD and items["TRIPOD+AI"] == TRIPOD_AI
    assert items["CLAIM"] == [str(k) for k in range(1, 43)]
    assert Counter(g for g, *_ in ITEMS) == ITEM_COUNTS


def test_items_resolve_to_the_files_the_run_produced():
    study = paths.StudyPaths("res")
    outputs = [study.table(paths.FLOW_TABLE), paths.figure_files(study.figure(paths.FLOW_FIGURE))[1],
               study.table(paths.TABLE3_CASE_LEVEL), paths.figure_files(study.figure(paths.FINAL_SYSTEM_FIGURE))[1],
               study.report_config, study.table(paths.COHORT_TABLE)]
    table = stage.checklist_table("res", outputs).set_index(["guideline", "item"])
    assert table.loc[("STARD 2015", "19"), "status"] == "answered"
    assert table.loc[("STARD 2015", "19"), "files"] == "tables/participant_flow.csv; figures/participant_flow.png"
    assert table.loc[("STARD 2015", "24"), "files"] == "tables/table3_case_level.csv; figures/fig6_final_system.png"
    assert table.loc[("STARD 2015", "28"), "status"] == AUTHOR
    assert table.loc[("STARD 2015", "25"), "status"].startswith(NOT_APPLICABLE)
    assert table.loc[("STARD 2015", "12a"), "status"] == "partly: whether the threshold was pre-specified"
    # No reader study in this run: its evidence falls back to the author.
    assert table.loc[("STARD 2015", "13a"), "status"].startswith(AUTHOR)
    assert table.loc[("CLAIM", "23"), "status"].startswith(AUTHOR + " (this run produced none of: versions")
    assert table.loc[("TRIPOD+AI", "18f"), "files"] == "provenance.json"
