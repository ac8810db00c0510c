import json

import pytest

from inpaint.records import (
    JsonlLog,
    append_jsonl,
    ends_mid_line,
    in_shard,
    output_stems,
    parse_shard,
    read_jsonl,
    shard_tag,
)


def test_append_after_a_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"a": 2, "b"')  # a run killed mid-write
    assert ends_mid_line(path)
    append_jsonl(path, {"a": 3}, fsync=True)
    assert path.read_text().splitlines()[-1] == json.dumps({"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]


def test_jsonl_log_writes_compact_lines_and_reads_back(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlLog(path, compact=True, flush=True) as log:
        log.write({"x": [1, 2]})
        assert path.read_text() == '{"x":[1,2]}\n'  # flushed at once
    assert read_jsonl(tmp_path / "missing.jsonl") == []
    path.write_text(path.read_text() + "[1, 2]\nnot json\n")
    assert read_jsonl(path) == [{"x": [1, 2]}]  # only whole JSON objects


def test_shards_split_the_inputs_exactly():
    stems = output_stems(["b.png", "a.png", "c.jpg", "a.jpg"])
    assert stems == ["b", "a", "c", "a-2"]
    shards = [in_shard(stems, (i, 3)) for i in (1, 2, 3)]
    assert [sum(col) for col in zip(*shards)] == [1, 1, 1, 1]
    assert parse_shard("2/3") == (2, 3) and shard_tag((2, 3)) == ".shard-2-of-3"
    assert shard_tag(None) == ""
    with pytest.raises(ValueError):
        parse_shard("4/3")
