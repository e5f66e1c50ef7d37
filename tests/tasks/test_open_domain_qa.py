"""Open-domain QA (SearchQA / Quasar-T): distant supervision over retrieved paragraphs for training,
the best span over all paragraphs of a question at evaluation, SQuAD EM/F1."""
from __future__ import annotations

import pytest
import torch
from task_kit import batch_of, fit

from kadapt.data.formats import read_records
from kadapt.core.errors import DataError
from kadapt.tasks.open_domain_qa import SEPARATOR, locate_answer


@pytest.fixture
def searchqa(fixtures):
    return read_records("searchqa", fixtures / "searchqa" / "train.json")


def test_locate_answer_is_case_insensitive_on_whole_words():
    assert locate_answer("The Nile flows north", ["the nile"]) == ("The Nile", 0)
    assert locate_answer("Nileton is a town", ["Nile"]) is None  # not inside a longer word
    assert locate_answer("In 1915 , Albert Einstein", ["Einstein", "Albert Einstein"]) == ("Einstein", 17)


def test_training_uses_answer_bearing_paragraphs_only(head_model, searchqa):
    head = head_model("open_domain_qa").head
    train = head.prepare_records(searchqa, "train", 0)
    # Einstein: paragraphs 0 and 2 hold an answer; Nile: paragraph 1; Jupiter: none
    assert [(r.id, r.answers[0]) for r in train] == [
        ("train-1-p0", ("Albert Einstein", 10)), ("train-1-p2", ("Einstein", 0)), ("train-2-p1", ("Nile", 4))]
    assert all(r.context[s:s + len(t)] == t for r in train for t, s in r.answers)
    assert head.last_train_counts == {"paragraphs": 7, "paragraphs_without_answer": 4,
                                      "questions": 3, "questions_without_answer": 1}
    assert head.prepare_records(searchqa, "test", 0) is searchqa  # evaluation keeps whole questions
    capped = head_model("open_domain_qa", {"max_paragraphs": 1}).head
    assert [r.id for r in capped.prepare_records(searchqa, "train", 0)] == ["train-1-p0"]


def test_evaluation_picks_the_best_span_over_all_paragraphs(head_model, searchqa):
    model = head_model("open_domain_qa", {"doc_stride": 8})
    record = searchqa[1]  # "this river flows through cairo": paragraphs "Cairo is ...", "The Nile flows ..."
    batch = batch_of(model, [record], 128)
    assert batch["input_ids"].shape[1] == 2  # one window per (short) paragraph
    context = SEPARATOR.join(record.paragraphs)
    starts = batch["start_char"][0].tolist()
    ends = batch["end_char"][0].tolist()
    nile = context.index("Nile")
    w, i = next((w, row.index(nile)) for w, row in enumerate(starts) if nile in row)
    assert w == 1  # "Nile" lies in the second paragraph's window
    j = ends[1].index(nile + len("Nile"))
    logits = torch.full((*batch["input_ids"].shape, 2), -5.0)
    c_i, c_j = starts[0].index(0), ends[0].index(len("Cairo"))
    logits[0, 0, c_i, 0] = logits[0, 0, c_j, 1] = 3.0  # "Cairo" in paragraph 0 scores 6
    logits[0, 1, i, 0] = logits[0, 1, j, 1] = 4.0  # "Nile" in paragraph 1 scores 8: the best over both
    assert model.head.best_spans(logits, batch) == ["Nile"]
    assert model.head.count(logits, batch) == {"n": 1.0, "exact_match": 1.0, "f1": 1.0}
    logits[0, 0, c_i, 0] = logits[0, 0, c_j, 1] = 5.0  # now "Cairo" wins: EM 0, F1 0
    assert model.head.best_spans(logits, batch) == ["Cairo"]
    assert model.head.count(logits, batch) == {"n": 1.0, "exact_match": 0.0, "f1": 0.0}


def test_loss_goes_down_on_distantly_supervised_paragraphs(head_model, searchqa):
    model = head_model("open_domain_qa", {"doc_stride": 8})
    batch = batch_of(model, model.head.prepare_records(searchqa, "train", 0), 128)
    losses = fit(model, batch, steps=25)
    assert losses[-1] < losses[0] * 0.7


def test_squad_records_are_refused_for_training(head_model, fixtures):
    head = head_model("open_domain_qa").head
    squad = read_records("squad", fixtures / "squad_v1.json")
    with pytest.raises(DataError, match="open_domain_qa needs SearchQA/Quasar-T records, got QAExample"):
        head.prepare_records(squad, "train", 0)
