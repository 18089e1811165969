"""Validation rules on local tables: each hostile row is rejected with its reason, PII is
scrubbed and counted, duplicates (exact, near, against main) are found."""

import random

import numpy as np
import pyarrow as pa
import pytest

from vdata_hub.errors import ValidationFailed
from vdata_hub.generation.records import ARROW_SCHEMA, Record, records_to_table, row_ids, text_hashes
from vdata_hub.repo.row_checks import Rules, load_blocklist
from vdata_hub.repo.validation import validate

WORDS = ("nurse engineer teacher pilot farmer doctor manager artist builder chef river city market garden "
         "morning evening patient student family friend neighbour project bridge school clinic office "
         "careful bright quiet brave kind steady patient honest curious gentle quickly slowly together "
         "built taught helped carried planned answered listened repaired measured painted visited").split()


def story(seed: int, words: int = 60) -> str:
    rng = random.Random(seed)
    sentence = [rng.choice(WORDS) for _ in range(words)]
    return " ".join(sentence).capitalize() + "."


def make_row(i: int, text: str | None = None, **overrides) -> dict:
    row = Record(id=f"row-{i:06d}", plan_key=f"plan-{i:06d}", text=story(i) if text is None else text,
                 prompt=f"Write story {i}.",
                 system_prompt="Be fair.", template="counter_stereotype_story", template_sha="t" * 64,
                 variables='{"group":"women"}', bias_axis="gender", domain="healthcare", task="story",
                 group="women", model="openai/fake-model", params='{"temperature":0.7}', input_tokens=20,
                 output_tokens=80, cost_usd=0.0001, finish_reason="stop",
                 created_at="2026-11-29T00:00:00Z", spec_sha="s" * 64).to_dict()
    row.update(overrides)
    return row


def make_table(rows) -> pa.Table:
    return records_to_table(rows)


def reasons_of(report) -> dict:
    return dict(report.rejected)


def test_clean_rows_pass_and_keep_the_schema():
    report = validate(make_table([make_row(i) for i in range(50)]))
    assert report.ok and report.accepted == 50
    table = report.accepted_table()
    assert table.schema.equals(ARROW_SCHEMA)
    assert table.column("text_hash").to_pylist() == text_hashes(table.column("text")).to_pylist()


def test_each_bad_row_gets_its_reason():
    rows = [make_row(i) for i in range(10)]
    rows += [
        make_row(100, text="   "),
        make_row(101, text="Too short."),
        make_row(102, text="x " * 30_000),
        make_row(103, text="I'm sorry, but I can't help with writing that story about nurses."),
        make_row(104, text=story(104) + " My key is sk-proj-abcdefghijklmnopqrstuvwxyz012345 ok."),
        make_row(105, model=""),
        make_row(106, bias_axis="../../etc"),
        make_row(107, text=story(3)),  # same text as row 3
        make_row(108, text=story(4).upper().replace(" ", "  ")),  # same after normalisation
        make_row(3, text=story(109)),  # same id as row 3
    ]
    report = validate(make_table(rows))
    assert report.accepted == 10
    assert reasons_of(report) == {"empty_text": 1, "too_short": 1, "too_long": 1, "refusal": 1, "secret": 1,
                                  "missing_provenance": 1, "bad_bias_axis": 1, "duplicate": 3}
    assert report.rejected_ids["refusal"] == ["row-000103"]
    assert "rejected duplicate: 3" in report.summary()


def test_personal_data_is_scrubbed_and_counted_or_rejected():
    text = story(1) + " Write to jane.doe@example.com or call +1 415 555 0100 or (212) 555-0199."
    report = validate(make_table([make_row(1, text=text), make_row(2)]))
    assert report.ok and report.scrubbed == {"email": 1, "phone": 2}
    cleaned = report.accepted_table().column("text")[0].as_py()
    assert "jane.doe" not in cleaned and "555" not in cleaned and "[email]" in cleaned and "[phone]" in cleaned
    strict = validate(make_table([make_row(1, text=text), make_row(2)]), rules=Rules(pii="reject"))
    assert reasons_of(strict) == {"personal_data": 1}


def test_years_and_numbers_are_not_phone_numbers():
    text = story(5) + " Between 1990-2000 the clinic grew from 120 to 3,400 patients."
    report = validate(make_table([make_row(5, text=text)]))
    assert report.ok and not report.scrubbed


def test_boilerplate_is_flagged_and_kept():
    text = "As an AI language model I find this interesting. " + story(7)
    report = validate(make_table([make_row(7, text=text), make_row(8)]))
    assert report.ok and report.flagged == {"boilerplate": 1}
    flags = report.accepted_table().column("flags").to_pylist()
    assert flags == [["boilerplate"], []]


def test_near_duplicates_are_rejected_but_different_texts_on_one_template_are_not():
    base = story(11, words=120)
    words = base.split()
    words[60] = "zebra"  # one word changed: Jaccard similarity of 5-shingles about 0.92
    near = " ".join(words)
    rows = [make_row(i, text=story(i, words=120)) for i in range(200)]
    rows.append(make_row(900, text=near.replace(".", "") + "."))
    rows[11] = make_row(11, text=base)
    report = validate(make_table(rows))
    assert reasons_of(report) == {"near_duplicate": 1}
    assert report.rejected_ids["near_duplicate"] == ["row-000900"]


def test_duplicates_of_main_use_only_hashes():
    rows = [make_row(i) for i in range(20)]
    main = text_hashes(pa.array([rows[2]["text"], rows[5]["text"]])).to_numpy()
    report = validate(make_table(rows), known_hashes=main)
    assert reasons_of(report) == {"duplicate_of_main": 2}


def test_blocklist_is_configurable(tmp_path, monkeypatch):
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# maintainers' list\nzorblax\n", encoding="utf-8")
    rows = [make_row(1, text=story(1) + " Zorblax!"), make_row(2)]
    monkeypatch.setenv("VDATA_BLOCKLIST", str(blocklist))
    assert reasons_of(validate(make_table(rows))) == {"blocklisted_term": 1}
    monkeypatch.delenv("VDATA_BLOCKLIST")
    assert validate(make_table(rows)).ok
    assert load_blocklist().digests  # the shipped default is not empty


def test_schema_problems_fail_the_whole_contribution():
    table = make_table([make_row(1)])
    with pytest.raises(ValidationFailed, match="missing columns: model"):
        validate(table.drop_columns(["model"]))
    with pytest.raises(ValidationFailed, match="unexpected columns: api_key"):
        validate(table.append_column("api_key", pa.array(["x"])))
    wrong = table.set_column(table.schema.get_field_index("input_tokens"), "input_tokens", pa.array(["20"]))
    with pytest.raises(ValidationFailed, match="column 'input_tokens' has type string"):
        validate(wrong)


def test_size_limits_per_row_and_per_contribution():
    rows = [make_row(1), make_row(2, prompt="p" * 300_000)]
    assert reasons_of(validate(make_table(rows))) == {"row_too_large": 1}
    with pytest.raises(ValidationFailed, match="too large: 3 rows"):
        validate(make_table([make_row(i) for i in range(3)]), rules=Rules(max_rows=2))


def test_nulls_and_invalid_utf8_from_hostile_parquet(tmp_path):
    import pyarrow.parquet as pq

    table = make_table([make_row(1), make_row(2)])
    schema = pa.schema([pa.field(f.name, f.type) for f in ARROW_SCHEMA])  # nullable, as a hostile writer may
    texts = pa.array([b"\xff\xfe broken " * 5, None], pa.binary())
    columns = [texts.cast(pa.string(), safe=False) if name == "text" else table.column(name).combine_chunks()
               for name in schema.names]
    hostile = pa.Table.from_arrays(columns, schema=schema)
    path = tmp_path / "hostile.parquet"
    pq.write_table(hostile, path)
    report = validate([str(path)])
    assert reasons_of(report) in ({"invalid_utf8": 1, "missing_value": 1}, {"missing_value": 2})
    assert report.accepted == 0


def test_hash_and_id_mismatches_are_caught_in_review_mode():
    table = make_table([make_row(i, id="") for i in range(3)])  # ids from the text hashes
    ids = table.column("id").to_pylist()
    assert ids[0] == row_ids(table.column("text_hash").to_numpy()).to_pylist()[0] and len(ids[0]) == 16
    forged = table.set_column(table.schema.get_field_index("text_hash"), ARROW_SCHEMA.field("text_hash"),
                              pa.array([1] + table.column("text_hash").to_pylist()[1:], pa.int64()))
    forged = forged.set_column(0, ARROW_SCHEMA.field("id"), pa.array(ids[:2] + [ids[1]]))  # row 1's id again
    assert validate(forged).ok  # contribute recomputes hashes and ids
    assert validate(forged).accepted_table().column("id").to_pylist() == ids
    report = validate(forged, rules=Rules(check_hashes=True))
    assert dict(report.rejected) == {"text_hash_mismatch": 1, "bad_id": 1}
    assert report.rejected_ids["bad_id"] == [ids[1]]


def test_many_rows_in_batches_match_single_pass(monkeypatch):
    import vdata_hub.repo.validation as validation

    monkeypatch.setattr(validation, "BATCH_ROWS", 250)  # 12 batches, checked by several threads
    rows = [make_row(i) for i in range(3_000)]
    rows[2_999] = make_row(2_999, text=rows[3]["text"])
    rows[1_500] = make_row(1_500, text=story(1_500) + " mail: a.b@example.com")
    report = validate(make_table(rows))
    assert dict(report.rejected) == {"duplicate": 1} and report.scrubbed == {"email": 1}
    assert report.rejected_ids["duplicate"] == ["row-002999"]
    table = report.accepted_table()
    assert table.num_rows == 2_999 and "[email]" in table.column("text")[1_500].as_py()
    assert np.unique(report.accepted_hashes()).size == 2_999


TRICKY_TEXTS = ["Hello, World!", "tab\there\nnew  line", "«Quoted» — dash, “curly” ‘quotes’…", "", "  ...  ",
                "don't (stop) e.g. x-y", "Ünïcode ﬁ LIGATURE", "x\x1fy z", "a\x1cb", "ＦＵＬＬ width",
                " ".join(["long"] * 5000), "Mixed CASE and 123 numbers; 34-year-old"]


@pytest.mark.parametrize("texts", [TRICKY_TEXTS, [t for t in TRICKY_TEXTS if t.isascii()],
                                   ["plain ascii only", "two  spaces, and. punctuation!"]])
def test_fast_words_and_hashes_equal_the_record_definitions(texts):
    """records.text_words/text_hashes (the hashes stored in every shard, with the ASCII kernels
    and a table of mixed positions) give exactly what their definition says, on ASCII-only
    batches and on mixed ones."""
    import pyarrow.compute as pc

    from vdata_hub.generation.records import PUNCTUATION, mix64, text_words, word_hashes

    array = pa.array(texts, pa.string())
    lists = pc.utf8_split_whitespace(pc.utf8_lower(pc.utf8_normalize(array, "NFKC")))
    trimmed = pc.utf8_trim(pc.list_flatten(lists), PUNCTUATION)
    keep = np.asarray(pc.not_equal(trimmed, ""), bool)
    expected_words = trimmed.filter(pa.array(keep))
    expected_rows = np.asarray(pc.list_parent_indices(lists), np.int64)[keep]
    words, rows = text_words(array)
    assert words.to_pylist() == expected_words.to_pylist() and rows.tolist() == expected_rows.tolist()
    expected = []
    for row in range(len(texts)):
        mine = word_hashes(expected_words.filter(pa.array(expected_rows == row))) if (expected_rows == row).any() \
            else np.zeros(0, np.uint64)
        with np.errstate(over="ignore"):
            total = np.uint64(sum(int(v) for v in mix64(mine ^ mix64(np.arange(1, len(mine) + 1, dtype=np.uint64))))
                              % 2**64)
            value = int(mix64(np.array([total ^ (np.uint64(len(mine)) * np.uint64(0x9E3779B97F4A7C15))],
                                       np.uint64)).view(np.int64)[0])
        expected.append(value or 1)
    assert text_hashes(array).to_pylist() == expected


def test_streamed_decisions_equal_the_whole_contribution_at_once(monkeypatch):
    """Duplicates decided run by run (as contribute streams rows to the shard writer) give the
    same reasons and rows as one run over everything."""
    import vdata_hub.repo.validation as validation

    rng = random.Random(7)
    rows = [make_row(i) for i in range(2_000)]
    for i in range(1, 2_000, 7):  # exact, id and near duplicates of earlier rows, across runs
        j = rng.randrange(i)
        kind = rng.choice(["text", "id", "near"])
        if kind == "text":
            rows[i] = make_row(i, text=rows[j]["text"])
        elif kind == "id":
            rows[i] = make_row(i, text=story(10_000 + i), id=rows[j]["id"])
        else:
            words = rows[j]["text"].split()
            words[len(words) // 2] = "zebra"
            rows[i] = make_row(i, text=" ".join(words))
    table = make_table(rows)
    monkeypatch.setattr(validation, "BATCH_ROWS", 100)
    whole = validate(table)
    monkeypatch.setattr(validation, "DECIDE_ROWS", 300)
    streamed_batches = []
    streamed = validate(table, sink=streamed_batches.append)
    assert {"duplicate", "near_duplicate"} <= set(whole.rejected)
    assert whole.reasons.tolist() == streamed.reasons.tolist()
    assert pa.Table.from_batches(streamed_batches, schema=ARROW_SCHEMA).equals(whole.accepted_table())


def near_copy(text: str) -> str:
    """The text with one word more at the end: a near duplicate (Jaccard about 0.95)."""
    return text[:-1] + " indeed."


def test_near_duplicates_of_main_are_rejected_with_the_main_rows_id():
    from vdata_hub.repo.index import memory_index

    on_main = make_table([make_row(i, id="") for i in range(100)])
    main_report = validate(on_main)
    main = memory_index(main_report.accepted_hashes(), main_report.accepted_signatures())
    rows = [make_row(200 + i) for i in range(20)]
    rows[3] = make_row(203, text=near_copy(story(7)))
    rows[4] = make_row(204, text=story(8))
    report = validate(make_table(rows), main=main)
    assert dict(report.rejected) == {"near_duplicate_of_main": 1, "duplicate_of_main": 1}
    ids = on_main.column("id").to_pylist()
    assert report.matches == {"row-000203": ids[7], "row-000204": ids[8]}
    assert f"row-000203 (main: {ids[7]})" in report.summary()


def test_a_contribution_decided_again_after_its_rows_reached_main_rejects_every_row():
    """Decisions do not depend on what else is in the upload: once a contribution's accepted rows
    are on main, deciding the same rows again (or any of them) accepts none, through chains of near
    duplicates and exact copies alike."""
    from vdata_hub.repo.index import memory_index

    rng = random.Random(11)
    rows = [make_row(i) for i in range(400)]
    for i in range(1, 400, 3):  # chains: a row near an earlier row, which may itself be near another
        j = rng.randrange(i)
        rows[i] = make_row(i, text=rows[j]["text"] if rng.random() < 0.2 else near_copy(rows[j]["text"]))
    table = make_table(rows)
    first = validate(table)
    assert {"near_duplicate", "duplicate"} <= set(first.rejected) and first.accepted
    main = memory_index(first.accepted_hashes(), first.accepted_signatures())
    for subset in (table, table.take(sorted(rng.sample(range(400), 150)))):
        again = validate(subset, main=main)
        assert again.accepted == 0, dict(again.rejected)
        assert set(again.rejected) <= {"duplicate", "duplicate_of_main", "near_duplicate", "near_duplicate_of_main"}


def test_source_ids_follow_a_source_whose_text_was_scrubbed():
    """A source row's id changes when scrubbing changes its text; its augmented copies follow."""
    source = make_row(1, id="", text=story(1) + " Write to jane@example.com.")
    given_source_id = make_table([source]).column("id")[0].as_py()  # from the text as generated
    copy = make_row(2, id="", augmented=True, source_id=given_source_id)
    table = make_table([source, copy, make_row(3)])
    streamed = []
    report = validate(table, sink=streamed.append)
    uploaded = pa.Table.from_batches(streamed)
    new_source_id = uploaded.column("id")[0].as_py()
    assert new_source_id != given_source_id and "[email]" in uploaded.column("text")[0].as_py()
    assert uploaded.column("source_id").to_pylist() == ["", new_source_id, ""]
    assert report.accepted_table().column("source_id").to_pylist() == ["", new_source_id, ""]


def test_a_dataset_written_before_plan_key_is_upgraded():
    from vdata_hub.generation.records import upgrade_table

    rows = [make_row(1), make_row(2, augmented=True, source_id="row-000001"), make_row(3)]
    old = make_table(rows).drop_columns(["plan_key"])  # `id` was the plan key then
    table = upgrade_table(old)
    ids = row_ids(old.column("text_hash").to_numpy()).to_pylist()
    assert table.column("plan_key").to_pylist() == ["row-000001", "row-000002", "row-000003"]
    assert table.column("id").to_pylist() == ids
    assert table.column("source_id").to_pylist() == ["", ids[0], ""]
    assert validate(table).ok
