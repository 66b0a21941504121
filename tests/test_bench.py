"""The benchmark runs every schedule in one run and reports ratios against fixed 4 steps."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from dsa_core import bench
from dsa_core.world import heldout_seed, render_clip


@pytest.mark.slow
def test_bench_quick_rows(tmp_path, capsys):
    out, plot = tmp_path / "bench.json", tmp_path / "pareto.png"
    # 10.5 s: past the 21-frame rolling window, and two 5 s segments for the drift table.
    # The simple world's prompts: the full world's run in the test below and in the bench itself.
    assert bench.main(["--quick", "--seconds", "10.5", "--random-init", "--world", "simple", "--json", str(out),
                       "--plot", str(plot)]) == 0
    rows = {r["schedule"]: r for r in json.loads(out.read_text())}
    assert list(rows) == [label for label, _, _ in bench.ROWS]  # random weights: one student, one row each
    assert {r["student"] for r in rows.values()} == {"dmd"}
    chunks = 15  # 10.5 s = 168 frames → 43 latent frames, rounded up to whole chunks
    for n in (1, 2, 3, 4):
        assert rows[f"fixed {n}"]["nfe"] == chunks * (n + 1)
    assert rows["fixed 4"]["nfe_vs_fixed4"] == 1.0 and rows["fixed 4"]["speedup_vs_fixed4"] == 1.0
    assert rows["ffe 1*"]["nfe"] == 5 + (chunks - 1) * 2
    assert rows["diagonal"]["nfe"] == 4 + 3 + 2 * (chunks - 2)
    assert all(r["fps"] > 0 and r["latency_s"] > 0 for r in rows.values())
    assert all(0 <= r["total_score"] <= 100 and not math.isnan(r["adherence"]) for r in rows.values())
    assert all(len(r["segment_scores"]) == 2 and r["segment_scores"][0] == r["total_score"] for r in rows.values())
    assert plot.stat().st_size > 0
    text = capsys.readouterr().out
    assert "| fixed 4 |" in text and "confidence head" in text and "total score" in text
    assert "2 simple-world prompts × 1 seeds" in text
    assert "| schedule | 0–5 s | 5–10 s |" in text
    assert "against shuffled prompts (blind adherence" in text
    refs = dict(re.findall(r"^(real clips.*) \(the same prompts and scenes\): total score ([\d.]+)", text, re.M))
    assert list(refs) == ["real clips", "real clips through the VAE"]
    assert float(refs["real clips"]) > float(refs["real clips through the VAE"]) + 20  # a random VAE loses the scene


@pytest.mark.slow
def test_bench_rows_are_the_schedules_asked_for_with_fixed_4_beside_them(tmp_path):
    """`--row` replaces the Table 2 rows (a stopping rule's variants) and its parameters reach
    the schedule: adaptive with min_steps=3 never stops a chunk before its third step."""
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--random-init", "--world", "simple", "--no-shipped-teacher", "--json", str(out),
                       "--row", "adaptive:min_steps=3", "--row", "fixed:steps=2"]) == 0
    rows = {r["schedule"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["fixed 4", "adaptive min_steps=3", "fixed 2"]
    assert rows["adaptive min_steps=3"]["steps_per_chunk"] >= 3
    assert rows["fixed 2"]["steps_per_chunk"] == 2 and rows["fixed 2"]["nfe_vs_fixed4"] == 3 / 5
    assert bench.parse_row("adaptive:margin=0.05,tol=0") == ("adaptive margin=0.05 tol=0", "adaptive",
                                                              {"margin": 0.05, "tol": 0})


@pytest.mark.slow
def test_bench_no_references_scores_the_rows_alone(tmp_path, capsys):
    """`--no-references` drops the reference lines but keeps every row's scores and its
    per-attribute and blind tables (what a candidate's comparison needs)."""
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--random-init", "--world", "simple", "--no-references", "--json", str(out),
                       "--row", "fixed:steps=2"]) == 0
    rows = {r["schedule"]: r for r in json.loads(out.read_text())}
    assert list(rows) == ["fixed 4", "fixed 2"]
    assert all(0 <= r["total_score"] <= 100 and set(r["blind_by_attribute"]) == set(r["adherence_by_attribute"])
               for r in rows.values())
    text = capsys.readouterr().out
    assert "(the same prompts and scenes)" not in text
    assert "\nadherence per attribute:" in text and "| fixed 2 (dmd) |" in text
    assert "against shuffled prompts (blind adherence" in text


def test_student_runs_every_row_on_that_student_alone():
    """`--student dmd`: one run per row, all on the DMD student; without it, the FFE and diagonal
    rows run on their own students with the DMD student beside them."""
    from dsa_core.pipeline import StreamingPipeline

    pipe = StreamingPipeline.from_preset("tiny")
    one = bench.runs(pipe, bench.ROWS, "dmd")
    assert [label for label, *_ in one] == [label for label, *_ in bench.ROWS]
    assert {runner.student for *_, runner in one} == {"dmd"}
    own = {label: runner.student for label, *_, runner in bench.runs(pipe, bench.ROWS)}
    assert own["ffe 2*"] == "asd" and own["diagonal"] == "diagonal" and own["diagonal · dmd student"] == "dmd"
    assert len(own) == len(bench.ROWS) + 3


@pytest.mark.slow
def test_references_bound_the_students_with_the_shipped_teacher():
    from dsa_core.eval import ATTRIBUTES, Evaluator
    from dsa_core.evalnet import AttributeNet
    from dsa_core.pipeline import StreamingPipeline

    pipe = StreamingPipeline.from_preset("tiny")
    refs = bench.reference_scores(pipe, [render_clip(heldout_seed(0))], Evaluator(AttributeNet.shipped()))
    assert [name.split(" (")[0] for name in refs] == ["real clips", "real clips through the VAE", "teacher"]
    for ref in refs.values():
        assert set(ref["adherence_by_attribute"]) == set(ATTRIBUTES)
        assert ref["adherence"] == pytest.approx(sum(ref["adherence_by_attribute"].values()) / len(ATTRIBUTES))
    teacher = refs[list(refs)[2]]
    assert refs["real clips"]["total_score"] > teacher["total_score"]
    table = bench.attribute_markdown([], refs)
    assert all(f"| {name} |" in table for name in refs)
    blind = bench.attribute_markdown([], refs, "blind_by_attribute")
    assert all(f"| {name} |" in blind for name in refs)


@pytest.mark.slow
def test_bench_scores_a_teacher_folder_beside_the_shipped_one(capsys):
    """`--teacher DIR` samples DIR's teacher with DIR's text encoder on the shipped teacher's
    noise: given the shipped folder itself, it must score exactly as the shipped teacher."""
    shipped = Path(__file__).resolve().parents[1] / "weights" / "tiny"
    assert bench.main(["--quick", "--references-only", "--world", "simple", "--teacher", str(shipped)]) == 0
    text = capsys.readouterr().out
    refs = dict(re.findall(r"^(.*) \(the same prompts and scenes\): total score ([\d.]+)", text, re.M))
    names = list(refs)
    assert names[:2] == ["real clips", "real clips through the VAE"] and len(names) == 4
    assert names[2].startswith("teacher (") and names[3].startswith(f"teacher {shipped} (")
    assert refs[names[2]] == refs[names[3]] and float(refs["real clips"]) > float(refs[names[2]])
    assert "| fixed 4 |" not in text and f"| {names[3]} |" in text  # no schedules; the attribute table


@pytest.mark.slow
def test_bench_can_leave_the_shipped_teacher_out(capsys, tmp_path):
    """`--no-shipped-teacher` scores only the other references, and `--json` writes them as printed."""
    shipped = Path(__file__).resolve().parents[1] / "weights" / "tiny"
    argv = ["--quick", "--references-only", "--world", "simple", "--teacher", str(shipped), "--no-shipped-teacher",
            "--json", str(tmp_path / "refs.json")]
    assert bench.main(argv) == 0
    printed = dict(re.findall(r"^(.*) \(the same prompts and scenes\): total score ([\d.]+)",
                              capsys.readouterr().out, re.M))
    names = list(printed)
    assert len(names) == 3 and names[2].startswith(f"teacher {shipped} (")
    written = json.loads((tmp_path / "refs.json").read_text())
    assert list(written) == names
    assert all(f"{written[n]['total_score']:.1f}" == printed[n] for n in names)


@pytest.mark.slow
def test_bench_renoise_scores_teachers_on_their_prompts_own_noised_clips(capsys):
    """`--renoise σ`: the teacher also samples the prompts' clips noised to σ.  From little
    noise it keeps most of the clip, so it must score well above its samples from pure noise."""
    assert bench.main(["--quick", "--references-only", "--world", "simple", "--renoise", "0.1"]) == 0
    text = capsys.readouterr().out
    adherence = dict(re.findall(r"^(.*) \(the same prompts and scenes\): total score [\d.]+, adherence ([\d.]+)%",
                                text, re.M))
    names = list(adherence)
    assert len(names) == 4 and names[3].startswith("teacher (") and names[3].endswith("from the clips at σ 0.08")
    assert float(adherence[names[3]]) > float(adherence[names[2]]) + 10
    assert float(adherence[names[3]]) <= float(adherence["real clips"])


def test_bench_scores_the_weights_folder_it_is_given(tmp_path, capsys):
    """`--weights DIR` benchmarks another export (`train export --dest DIR`): the folder is the one
    loaded, hash checks included, and it cannot be combined with random weights."""
    folder = tmp_path / "export"
    shutil.copytree(Path(__file__).resolve().parents[1] / "weights" / "tiny", folder)
    with open(folder / "transformer.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\0" * 8)
    with pytest.raises(ValueError, match=r"transformer.safetensors does not match its sha256"):
        bench.main(["--quick", "--references-only", "--weights", str(folder)])
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--weights", str(folder), "--random-init"])
    assert "--weights and --random-init exclude each other" in capsys.readouterr().err


def test_pareto_labels_do_not_overlap_where_schedules_cluster():
    """Four schedules at one NFE within a point of each other, twins at two more, and a
    reference line running through them (the shipped run's rows): every label, the
    references' included, gets a box of its own inside the axes that covers no marker, no
    leader line runs through another label, and a run's long title stays on the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    def row(name: str, nfe: float, score: float) -> bench.Row:
        return bench.Row(name, nfe, 0.0, 0.0, 0.0, 1.0, 0.1, total_score=score)

    # The rows of the README's 8 × 2 full-world run.
    rows = [row("fixed 1", 14, 26.2), row("fixed 2", 21, 28.1), row("fixed 3", 28, 33.5), row("fixed 4", 35, 34.2),
            row("ffe 1*", 17, 29.3), row("ffe 1* · dmd student", 17, 28.7), row("ffe 2*", 23, 31.9),
            row("ffe 2* · dmd student", 23, 32.0), row("diagonal", 17, 37.8), row("diagonal · dmd student", 17, 32.4),
            row("adaptive", 18.8, 29.9), row("proxy", 27.9, 33.5)]
    title = "model tiny, cpu (x86_64, 2 threads), 8 full-world prompts × 2 seeds, 5 s videos at 64×64, 16 fps"
    references = {"real clips": {"total_score": 84.2}, "real clips through the VAE": {"total_score": 68.9},
                  "teacher (24 steps, CFG 3)": {"total_score": 32.2}}
    fig = bench.pareto_figure(rows, title, references)
    fig.canvas.draw()  # leader lines get their paths, in display coordinates
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts}
    leaders = {t.get_text(): t.arrow_patch.get_path().interpolated(20).vertices for t in ax.texts if t.arrow_patch}
    frame = ax.get_window_extent(renderer)
    markers = [Bbox.from_bounds(x - 4, y - 4, 8, 8) for x, y in ax.transData.transform([(r.nfe, r.total_score)
                                                                                          for r in rows])]
    title_box, page = ax.title.get_window_extent(renderer), fig.bbox
    plt.close(fig)
    assert len(boxes) == len(rows) + len(references)
    clashes = [(a, b) for a in boxes for b in boxes if a < b and boxes[a].overlaps(boxes[b])]
    assert clashes == []
    assert [a for a in boxes if any(boxes[a].overlaps(m) for m in markers)] == []
    assert leaders, "no label was moved off its point: the layout no longer tests leader lines"
    assert [(a, b) for a, line in leaders.items() for b in boxes
            if a != b and any(boxes[b].contains(x, y) for x, y in line)] == []
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes.values())
    assert page.x0 <= title_box.x0 and title_box.x1 <= page.x1


@pytest.mark.slow
def test_first_prompt_moves_the_prompt_set(tmp_path, capsys):
    """`--first-prompt N` scores held-out clips N, N+1, ...: a fresh prompt set for a rule tuned
    on the first 32."""
    assert bench.main(["--quick", "--random-init", "--world", "simple", "--no-shipped-teacher", "--first-prompt", "40",
                       "--row", "fixed:steps=1"]) == 0
    captured = capsys.readouterr()
    assert re.findall(r"done: held-out clip (\d+)", captured.err) == ["40", "41"]
    assert "2 simple-world prompts (held-out clips 40–41) × 1 seeds" in captured.out
