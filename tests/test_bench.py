"""The benchmark runs every schedule in one run and reports ratios against fixed 4 steps."""

import json

import pytest

from dsa_core import bench


@pytest.mark.slow
def test_bench_quick_rows(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--seconds", "1", "--random-init", "--json", str(out)]) == 0
    rows = {r["schedule"]: r for r in json.loads(out.read_text())}
    assert list(rows) == [label for label, _, _ in bench.ROWS]
    chunks = 2  # 1 s = 17 frames → 6 latent frames
    for n in (1, 2, 3, 4):
        assert rows[f"fixed {n}"]["nfe"] == chunks * (n + 1)
    assert rows["fixed 4"]["nfe_vs_fixed4"] == 1.0 and rows["fixed 4"]["speedup_vs_fixed4"] == 1.0
    assert rows["ffe 1*"]["nfe"] == 5 + 2
    assert rows["diagonal"]["nfe"] == 4 + 3
    assert all(r["fps"] > 0 and r["latency_s"] > 0 for r in rows.values())
    text = capsys.readouterr().out
    assert "| fixed 4 |" in text and "confidence head" in text
