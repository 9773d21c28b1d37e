"""Plain chat: the prompt keeps the system message and the newest turns within the token budget."""

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from lib.chat.prompt import build_chat_messages
from lib.chat.turn import describe_result
from lib.gateway.client import CallResult
from lib.gateway.tokens import estimate_message_tokens, estimate_tokens, trim_history


def history(n: int) -> list[dict[str, str]]:
    turns = []
    for i in range(n):
        turns.append({"role": "user", "content": f"question {i} " + "word " * 50})
        turns.append({"role": "assistant", "content": f"answer {i} " + "word " * 50})
    return [*turns, {"role": "user", "content": "the newest question"}]


def test_a_short_conversation_is_sent_whole_after_the_system_prompt():
    msgs = build_chat_messages(history(2), budget=10_000, system_prompt="Be kind.")
    assert isinstance(msgs[0], SystemMessage) and msgs[0].content == "Be kind."
    assert [type(m) for m in msgs[1:]] == [HumanMessage, AIMessage] * 2 + [HumanMessage]


def test_a_long_conversation_drops_the_oldest_turns_to_fit_the_budget():
    msgs = build_chat_messages(history(40), budget=600, system_prompt="Be kind.")
    assert estimate_message_tokens(msgs) <= 600
    assert msgs[0].content == "Be kind."
    assert msgs[-1].content == "the newest question"
    assert "question 0 " not in " ".join(m.content for m in msgs)
    assert "answer 39 " in msgs[-2].content


def test_the_newest_question_is_kept_even_when_it_alone_exceeds_the_budget():
    msgs = build_chat_messages([{"role": "user", "content": "long " * 5000}], budget=100)
    assert msgs[-1].content.startswith("long")


def test_a_trimmed_conversation_opens_on_a_question_never_on_an_answer():
    for budget in range(150, 1500, 13):  # every cut point: after a question and after an answer
        msgs = build_chat_messages(history(10), budget=budget, system_prompt="Be kind.")
        assert isinstance(msgs[0], SystemMessage) and isinstance(msgs[1], HumanMessage), (budget, msgs[1])
        assert estimate_message_tokens(msgs) <= budget
        assert msgs[-1].content == "the newest question"


def test_a_prompt_that_fits_is_sent_as_it_is_even_when_it_opens_on_an_answer():
    few_shot = [SystemMessage("Answer like the example."), AIMessage("Example: 4."), HumanMessage("2 + 2?")]
    assert trim_history(few_shot, budget=1000) == few_shot


def test_token_estimates_grow_with_text_and_are_zero_for_nothing():
    assert estimate_tokens("") == 0
    assert 2 <= estimate_tokens("Hello, world!") <= 5
    assert estimate_tokens("word " * 1000) >= 1000


def test_the_answer_summary_says_unpriced_instead_of_zero_dollars():
    priced = CallResult(
        "r", "openai/gpt-4o", "openai", prompt_tokens=10, completion_tokens=5, cost_usd=0.000125, latency_ms=1500
    )
    unpriced = CallResult("r", "acme/x", "acme", prompt_tokens=10, completion_tokens=5, cost_usd=None)
    assert describe_result(priced) == "openai/gpt-4o · 10 in / 5 out tokens · $0.000125 · 1.50 s"
    assert "cost unknown" in describe_result(unpriced) and "$0" not in describe_result(unpriced)


def test_trimming_a_10000_message_conversation_measures_each_message_once(monkeypatch):
    from lib.gateway import tokens

    measured = []
    real = tokens.estimate_tokens
    monkeypatch.setattr(tokens, "estimate_tokens", lambda text: measured.append(1) or real(text))
    turns = [SystemMessage("Be kind.")]
    for i in range(5000):
        turns += [HumanMessage(f"question {i} " + "word " * 50), AIMessage(f"answer {i} " + "word " * 50)]
    kept = trim_history([*turns, HumanMessage("the newest question")], budget=30_000)
    assert len(measured) <= len(turns) + 1  # trim_messages re-counted kept lists while it searched: 33,172
    assert isinstance(kept[1], HumanMessage) and kept[-1].content == "the newest question"
    assert 29_000 < estimate_message_tokens(kept) <= 30_000


def test_a_turn_with_tool_calls_that_does_not_fit_keeps_each_tool_result_with_its_call():
    from langchain_core.messages import ToolMessage

    call = {"name": "search_documents", "args": {"query": "x"}, "id": "call_1", "type": "tool_call"}
    turn = [
        SystemMessage("Be kind."),
        HumanMessage("old question " + "word " * 400),
        AIMessage("old answer"),
        HumanMessage("the newest question " + "word " * 400),
        AIMessage("", tool_calls=[call]),
        ToolMessage("passage " * 400, tool_call_id="call_1"),
    ]
    kept = trim_history(turn, budget=50)  # not even the question fits
    assert [type(m) for m in kept] == [SystemMessage, HumanMessage, AIMessage, ToolMessage]
    assert kept[1].content.startswith("the newest question") and kept[2].tool_calls[0]["id"] == "call_1"
    plain = trim_history([SystemMessage("Be kind."), HumanMessage("word " * 400)], budget=50)
    assert [type(m) for m in plain] == [SystemMessage, HumanMessage]
