"""The offline answerer quotes the prompt's most relevant sentences, with citations, or says it doesn't know."""

from langchain_core.messages import HumanMessage, SystemMessage

from lib.gateway.offline import NOTHING_TO_QUOTE, OfflineExtractiveChat, split_sentences

RAG_PROMPT = """Context:
[1] (handbook.pdf, p. 4)
Employees receive 30 days of paid leave per year. Leave requests go to your manager.
[2] (cafeteria.txt)
The cafeteria serves lunch from noon until two. Vegetarian dishes are available daily.

Question: How many days of paid leave do employees get?"""


def test_it_quotes_the_sentence_that_answers_and_cites_its_context_number(local_embeddings):
    model = OfflineExtractiveChat(embeddings=local_embeddings)
    answer = model.invoke([SystemMessage("Answer from context."), HumanMessage(RAG_PROMPT)])
    assert "Employees receive 30 days of paid leave per year. [1]" in answer.content
    assert "cafeteria" not in answer.content
    assert answer.usage_metadata["input_tokens"] > 0


def test_it_says_it_does_not_know_when_nothing_is_relevant(local_embeddings):
    model = OfflineExtractiveChat(embeddings=local_embeddings)
    prompt = RAG_PROMPT.rsplit("Question:", 1)[0] + "Question: What is the capital of Mongolia's space agency budget?"
    assert model.invoke([HumanMessage(prompt)]).content == NOTHING_TO_QUOTE
    assert model.invoke([HumanMessage("Hello there")]).content == NOTHING_TO_QUOTE


def test_streaming_gives_the_same_text_and_usage_at_the_end(local_embeddings):
    model = OfflineExtractiveChat(embeddings=local_embeddings)
    chunks = list(model.stream([HumanMessage(RAG_PROMPT)]))
    assert "".join(c.content for c in chunks) == model.invoke([HumanMessage(RAG_PROMPT)]).content
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.usage_metadata["output_tokens"] > 0


def test_sentences_split_on_stops_and_paragraphs():
    assert split_sentences("One thing. Two things!\n\nThree") == ["One thing.", "Two things!", "Three"]
