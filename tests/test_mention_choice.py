"""The learned choice of the mentions a pair is read from when no sentence names both (``mention_choice``)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from laart_lab.attention import SoftmaxAttention
from laart_lab.data.clutrr import parse_row
from laart_lab.data.clutrr_text import TextCollator, WordTokenizer
from laart_lab.models.mention_choice import DISTANCE_SCALE, LearnedMentionChoice
from laart_lab.models.story_reader import StoryReader
from tests.test_laart import DOROTHY, INDEX

pytestmark = pytest.mark.usefixtures("one_thread")

#: Guillermina is Christopher's daughter, said across two sentences; her mention in the sister sentence is closer
APART = (
    "[Lucille] plays with her sister [Guillermina] . [Christopher] loves movies with his daughter . "
    "Her name is [Guillermina] ."
)


def apart_batch():
    row = parse_row({**DOROTHY, "story": APART, "query": "('Christopher', 'Guillermina')"}, "r")
    short = parse_row({**DOROTHY, "story": "[Michael] is the brother of [Dorothy] .",
                       "query": "('Michael', 'Dorothy')"}, "r2")  # fmt: skip
    tokenizer = WordTokenizer.build([row.story, short.story], min_count=1)
    return tokenizer, TextCollator(tokenizer, INDEX, 4, training=False)([row, short])


def naive_states(choice: LearnedMentionChoice, h, position, owner, n_entities):
    """Loop over entity pairs and their mention pairs: softmax of score minus distance / 8, the states weighted."""
    b, m = position.shape
    d = h.shape[-1]
    out_x, out_y = torch.zeros(b, n_entities, n_entities, d), torch.zeros(b, n_entities, n_entities, d)
    for s, x, y in itertools.product(range(b), range(n_entities), range(n_entities)):
        pairs = [(i, j) for i in range(m) for j in range(m) if owner[s, i] == x and owner[s, j] == y]
        if not pairs:
            continue
        mention = [h[s, int(position[s, i])] for i in range(m)]
        scores = []
        for i, j in pairs:
            qi, qj = choice.query(mention[i]), choice.query(mention[j])
            ki, kj = choice.key(mention[i]), choice.key(mention[j])
            learned = (qi @ kj + ki @ qj) / math.sqrt(d)
            scores.append(learned - abs(int(position[s, i]) - int(position[s, j])) / DISTANCE_SCALE)
        weights = torch.stack(scores).softmax(0)
        for w, (i, j) in zip(weights, pairs):
            out_x[s, x, y] += w * mention[i]
            out_y[s, x, y] += w * mention[j]
    return out_x, out_y


def test_the_choice_weighs_every_mention_pair_of_the_two_people_as_a_loop_by_hand_does() -> None:
    _, batch = apart_batch()
    torch.manual_seed(0)
    choice = LearnedMentionChoice(8)
    torch.nn.init.normal_(choice.query.weight)  # a trained-looking score, not the zero start
    h = torch.randn(2, batch.story.tokens.shape[1], 8)
    position, owner = StoryReader._mention_list(batch.story)
    n = batch.story.entity_slot.shape[1]
    with torch.no_grad():
        got = choice(h, position, owner, n)
        expected = naive_states(choice, h, position, owner, n)
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(got[0][1, 2:], torch.zeros_like(got[0][1, 2:]))  # padded people (the short story): nothing


def test_at_the_start_the_closer_pair_weighs_more_and_training_can_move_the_choice_to_the_far_pair() -> None:
    tokenizer, batch = apart_batch()
    position, owner = StoryReader._mention_list(batch.story)
    christopher, guillermina = 2, 1  # entities in order of first mention: Lucille, Guillermina, Christopher
    torch.manual_seed(0)
    choice = LearnedMentionChoice(16)
    h = torch.randn(1, batch.story.tokens.shape[1], 16)
    sister_mention, stated_mention = [int(p) for p, o in zip(position[0], owner[0]) if o == guillermina]

    def weight_on_the_stating_mention() -> float:
        _, state_y = choice(h, position[:1], owner[:1], 3)
        # y's state is a mixture of Guillermina's two mentions: how much of it is the stating one
        a, b = h[0, sister_mention], h[0, stated_mention]
        return float(((state_y[0, christopher, guillermina] - a) @ (b - a)) / ((b - a) @ (b - a)))

    with torch.no_grad():
        assert weight_on_the_stating_mention() < 0.5  # the prior: the sister sentence's mention is closer
    optimizer = torch.optim.Adam(choice.parameters(), lr=0.05)
    for _ in range(100):  # a loss that wants the pair read where the fact is stated
        _, state_y = choice(h, position[:1], owner[:1], 3)
        loss = (state_y[0, christopher, guillermina] - h[0, stated_mention]).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert weight_on_the_stating_mention() > 0.9


def test_pairs_within_a_sentence_read_as_the_closest_mentions_and_apart_pairs_read_the_choice() -> None:
    tokenizer, batch = apart_batch()
    torch.manual_seed(0)
    closest = StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=2).eval()
    learned = StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=2,
                          mention_choice="learned").eval()  # fmt: skip
    missing, unexpected = learned.load_state_dict(closest.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("mention_choice.") for name in missing)
    torch.nn.init.normal_(learned.mention_choice.query.weight)
    with torch.no_grad():
        plain = closest(batch.story).pair_logits
        out = learned(batch.story).pair_logits
    pos_x, pos_y = closest._closest_mentions(batch.story, batch.story.entity_slot.shape[1])
    same = closest._same_sentence(batch.story, pos_x, pos_y)
    real = batch.story.entity_mask.unsqueeze(2) & batch.story.entity_mask.unsqueeze(1)
    within, apart = same & real, ~same & real
    assert bool(within.any()) and bool(apart[0, 2, 1])  # Christopher and Guillermina: no shared sentence
    torch.testing.assert_close(out[within], plain[within])
    assert not torch.allclose(out[apart], plain[apart])
    with pytest.raises(ValueError, match="mention_choice"):
        StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, mention_choice="nearest")
