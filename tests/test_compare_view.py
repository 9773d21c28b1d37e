"""What the Compare page shows and what its boxes mean, checked without Streamlit."""

import pytest
from shown import shown
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.compare.runs import VERDICTS, Checks, RunProgress, Variant, VariantAnswer, get_run, run_rows, start_run
from lib.compare.test_sets import Case, TestSetError, create_test_set, load_cases
from lib.core.tables import CompareVote, Experiment
from lib.prompts.language import Template
from lib.prompts.live import active_experiment
from lib.prompts.store import TemplateStore
from lib.ui.compare_view import (
    NO_JUDGE,
    TEMPLATE_MODEL,
    answer_markdown,
    answer_text,
    batch_checks,
    case_records,
    cases_frame,
    chosen_variants,
    create_set,
    experiment_caption,
    finished_caption,
    first_version_index,
    follow_pair,
    live_start_label,
    new_pair,
    pick_variant,
    progress_line,
    promote_b,
    promote_question,
    review_sides,
    row_verdict,
    rows_table,
    save_cases,
    save_pair_vote,
    save_row_vote,
    sets_by_name,
    side_markdown,
    start_live,
    vote_choices,
)


def test_the_template_model_choice_keeps_the_versions_own_model_and_any_other_names_it():
    assert pick_variant(2, TEMPLATE_MODEL) == Variant(2, None)
    assert pick_variant(1, "acme/m1") == Variant(1, "acme/m1")


def test_a_starts_on_the_version_before_the_newest_and_b_on_the_newest():
    assert (first_version_index("A", 3), first_version_index("B", 3)) == (1, 0)
    assert first_version_index("A", 1) == 0  # a template with one version puts both sides on it


def test_empty_batch_boxes_leave_their_checks_off():
    assert batch_checks("", 0, NO_JUDGE) == Checks()
    assert batch_checks(r"\d", 500, "acme/m1") == Checks(regex=r"\d", max_chars=500, judge_model="acme/m1")


def test_the_progress_line_counts_rows_and_failures_and_an_empty_run_does_not_divide_by_zero():
    assert progress_line(3, RunProgress(total=6, done=3, failed=1)) == (0.5, "Run #3: 3/6 rows, 1 failed")
    assert progress_line(4, RunProgress(total=0)) == (0.0, "Run #4: 0/0 rows, 0 failed")


def test_case_records_put_the_expected_answer_beside_each_cases_values():
    cases = [Case(1, {"question": "open?"}, "eight"), Case(2, {"question": "close?"})]
    assert case_records(cases) == [{"question": "open?", "expected": "eight"}, {"question": "close?", "expected": None}]


def test_a_missing_answer_has_no_text_and_is_shown_as_a_dash():
    assert answer_text(None) is None and answer_text({"text": "hi"}) == "hi"
    assert answer_markdown("A", None) == "**A**\n\n—"
    assert answer_markdown("Answer 1", {"text": "We open at 8."}) == "**Answer 1**\n\nWe open at 8."


def test_blind_review_hides_the_names_and_a_swapped_row_shows_b_first():
    assert review_sides(False, True) == [("A", "A"), ("B", "B")]  # not blind: never swapped
    assert review_sides(True, False) == [("A", "Answer 1"), ("B", "Answer 2")]
    assert review_sides(True, True) == [("B", "Answer 1"), ("A", "Answer 2")]


def test_a_blind_vote_for_the_first_answer_goes_to_the_side_shown_first():
    swapped = review_sides(True, True)
    assert [row_verdict(p, swapped) for p in ("first", "second", "tie", "both_bad")] == ["B", "A", "tie", "both_bad"]
    assert row_verdict("first", review_sides(False, False)) == "A"
    assert all(row_verdict(p, swapped) in VERDICTS for p in vote_choices(True))


def test_vote_choices_name_answers_by_position_only_in_blind_review():
    assert list(vote_choices(True).values()) == ["Answer 1 better", "Answer 2 better", "Tie", "Both bad"]
    assert list(vote_choices(False).values()) == ["A better", "B better", "Tie", "Both bad"]


def test_the_experiment_caption_names_both_versions_and_bs_share():
    exp = Experiment(id="exp-1", template_name="t", version_a=1, version_b=2, share_b=0.25, status="active")
    assert experiment_caption(exp) == "Running exp-1: A v1, B v2, 25% of users on B."


def test_follow_pair_accumulates_each_sides_text_and_adds_numbers_when_it_finishes():
    done = VariantAnswer(text="Hi there", tokens=5, cost_usd=None, latency_ms=12.4)
    last: dict = {}
    shown = list(follow_pair([("A", "Hi", None), ("B", "Yo", None), ("A", " there", done)], last))
    assert shown[:2] == [("A", "Hi"), ("B", "Yo")]
    assert shown[2] == ("A", "Hi there\n\n`5 tokens · unpriced · 12 ms`")
    assert (last["A"], last["B"], last["shown"]["B"]) == ("Hi there", "Yo", "Yo")
    assert side_markdown("x", VariantAnswer(error="boom")).startswith("x\n\n:red[boom]\n\n")


def test_rows_table_shows_an_error_in_place_of_the_answer():
    row = {
        "values": {"q": "open?"},
        "A": {"text": "8", "checks": {"regex": True}},
        "B": {"text": "", "error": "down"},
        "judge": "A",
        "vote": None,
    }
    assert rows_table([row]) == [
        {
            "q": "open?",
            "A": "8",
            "B": "down",
            "A checks": {"regex": True},
            "B checks": None,
            "judge": "A",
            "your vote": None,
        }
    ]


def test_the_promotion_question_names_the_template_and_bs_version_and_model():
    run = {"template_name": "support.reply", "B": Variant(2, "acme/m2")}
    assert shown(promote_question(run)) == "Yes, point production of support.reply at B (v2 · acme/m2)"


NAME = "support.reply"


@pytest.fixture
def store(fresh_engine):
    store = TemplateStore(fresh_engine)
    store.create(Template(name=NAME, user="Q: {{ question }}"), "ada", labels=("production",))
    store.save_version(Template(name=NAME, user="Question: {{ question }}", model="acme/m2"), "ada")
    return store


def votes(engine) -> list[CompareVote]:
    with Session(engine) as s:
        return list(s.scalars(select(CompareVote).order_by(CompareVote.id)))


def test_the_variant_boxes_give_each_sides_variant_and_its_saved_template(store):
    variants, templates = chosen_variants(store, NAME, {"A": (1, TEMPLATE_MODEL), "B": (2, "acme/m1")})
    assert variants == {"A": Variant(1), "B": Variant(2, "acme/m1")}
    assert (templates["A"].user, templates["B"].user) == ("Q: {{ question }}", "Question: {{ question }}")


def test_a_side_by_side_vote_goes_to_the_variants_and_inputs_that_gave_the_answers(store):
    pair = new_pair(NAME, {"A": Variant(1), "B": Variant(2)}, {"question": "open?"})
    pair.update(A="At 8.", B="We open at eight.")
    assert save_pair_vote(store.engine, pair, "B", "ada", " warmer ") == "Vote saved: B better."
    (vote,) = votes(store.engine)
    assert (vote.verdict, vote.comment, vote.inputs, vote.answer_b, vote.variant_b) == (
        "B",
        "warmer",
        {"question": "open?"},
        "We open at eight.",
        {"version": 2, "model": None},
    )


def test_a_test_set_is_created_from_an_upload_or_empty_and_its_cases_are_edited_as_a_table(fresh_engine):
    csv = b"question,expected\nopen?,eight\nclose?,six\n"
    assert create_set(fresh_engine, " hours ", ["question"], "ada", csv) == "Created hours with 2 cases."
    assert create_set(fresh_engine, "empty", ["question"], "ada", None) == "Created empty with 0 cases."
    with pytest.raises(TestSetError):
        create_set(fresh_engine, "broken", ["question"], "ada", b"other\nx\n")
    sets = sets_by_name(fresh_engine)
    assert sorted(sets) == ["empty", "hours"]
    frame = cases_frame(fresh_engine, sets["hours"])
    assert frame.to_dict("records") == [
        {"question": "open?", "expected": "eight"},
        {"question": "close?", "expected": "six"},
    ]
    assert list(cases_frame(fresh_engine, sets["empty"]).columns) == ["question", "expected"]
    assert save_cases(fresh_engine, sets["hours"]["id"], frame.iloc[:1]) == "Saved 1 cases."
    assert [c.values for c in load_cases(fresh_engine, sets["hours"]["id"])] == [{"question": "open?"}]


def test_a_row_vote_stores_the_side_shown_in_the_picked_position_and_replaces_the_old_one(store):
    engine = store.engine
    set_id = create_test_set(engine, "hours", ["question"], "ada", [Case(None, {"question": "open?"})])
    run_id = start_run(engine, NAME, set_id, Variant(1), Variant(2), Checks(), "ada")
    run, (row,) = get_run(engine, run_id), run_rows(engine, run_id, "ada")
    swapped = review_sides(True, True)
    save_row_vote(engine, run, row, "first", swapped, "ada", blind=True)
    save_row_vote(engine, run, row, "second", swapped, "ada", blind=True)
    (vote,) = votes(engine)
    assert (vote.verdict, vote.blind, vote.run_id, vote.case_id) == ("A", True, run_id, row["case_id"])
    assert finished_caption(engine, run_id) == f"Run #{run_id} is running; open it on the Results tab."


def test_promoting_b_moves_production_and_says_where_it_points(store):
    run = {"template_name": NAME, "A": Variant(1), "B": Variant(2)}
    assert promote_b(store, run, "ada") == "production now points at v2."
    assert store.get_by_label(NAME, "production").version == 2


def test_a_live_experiment_starts_between_the_chosen_versions(store):
    variants = {"A": Variant(1), "B": Variant(2, "acme/m9")}  # the model is not part of a live experiment
    assert live_start_label(variants) == "Start live experiment: A v1 vs B v2"
    exp_id = start_live(store.engine, store, NAME, variants, "ada", 0.25)
    exp = active_experiment(store.engine, NAME)
    assert (exp.id, exp.version_a, exp.version_b, exp.share_b) == (exp_id, 1, 2, 0.25)
