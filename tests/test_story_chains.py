"""Long validation stories joined from short ones (laart_lab.data.story_chains) and the data module's val_chained."""

from __future__ import annotations

import pytest

from laart_lab.data.clutrr import parse_row
from laart_lab.data.clutrr_text import WordTokenizer, encode_story, gold_entity_edges
from laart_lab.data.kinship_algebra import compose
from laart_lab.data.story_chains import chained_stories, joined_story
from tests.test_laart import generated_text_module

ANN = {  # Ann's son Bob, Bob's sister Cat: Cat is Ann's daughter
    "id": "ann",
    "story": "[Ann] took her son [Bob] to the park. [Bob] played with his sister [Cat]",
    "query": "('Ann', 'Cat')",
    "target": "daughter",
    "story_edges": "[(0, 1), (1, 2)]",
    "edge_types": "['son', 'sister']",
    "query_edge": "(0, 2)",
    "genders": "Ann:female,Bob:male,Cat:female",
}
DEE = {  # Dee's brother Ed, Ed's son Fred: Fred is Dee's nephew
    "id": "dee",
    "story": "[Dee] called her brother [Ed]. [Ed]'s son [Fred] was there.",
    "query": "('Dee', 'Fred')",
    "target": "nephew",
    "story_edges": "[(0, 1), (1, 2)]",
    "edge_types": "['brother', 'son']",
    "query_edge": "(0, 2)",
    "genders": "Dee:female,Ed:male,Fred:male",
}


def test_two_stories_join_at_the_query_people_hand_worked() -> None:
    ann, dee = parse_row(dict(ANN), "ann"), parse_row(dict(DEE), "dee")
    joined = joined_story([ann, dee], order_seed=0)
    assert joined is not None
    # Dee becomes Cat (both female); Dee's other people are renamed apart from Ann's
    assert joined.names == ["Ann", "Bob", "Cat", "Ed 1", "Fred 1"]
    sentences = {"[Ann] took her son [Bob] to the park. [Bob] played with his sister [Cat] .",
                 "[Cat] called her brother [Ed 1]. [Ed 1]'s son [Fred 1] was there."}  # fmt: skip
    assert joined.story in {" ".join(order) for order in (sorted(sentences), sorted(sentences, reverse=True))}
    assert joined.edges == [(0, 1, "son"), (1, 2, "sister"), (2, 3, "brother"), (3, 4, "son")]
    assert joined.query == (0, 4) and joined.query_text == "('Ann', 'Fred 1')"
    assert joined.path == ["son", "sister", "brother", "son"] and joined.k == 4
    assert joined.target == "grandson"  # Ann's daughter's brother's son: her son's son
    assert joined.genders == [1, 2, 1, 2, 2] and joined.id == "ann+dee"
    # the joined story reads as any story: every gold edge is found between its mentioned people
    tokenizer = WordTokenizer.build([joined.story], min_count=1)
    encoded = encode_story(joined, tokenizer)
    assert [encoded.entity_names[i] for i in encoded.query] == ["ann", "fred 1"]
    assert len(gold_entity_edges(joined, encoded)) == 4


def test_stories_that_cannot_join_are_not_built() -> None:
    ann, dee = parse_row(dict(ANN), "ann"), parse_row(dict(DEE), "dee")
    to_a_man = parse_row({**DEE, "genders": "Dee:male,Ed:male,Fred:male"}, "dee")
    assert joined_story([ann, to_a_man], 0) is None  # Cat is a woman, this Dee a man
    assert compose("nephew", "daughter") is None  # a nephew's daughter: no CLUTRR relation
    assert joined_story([dee, ann], 0) is None  # Fred (a man) cannot be Ann (a woman) anyway
    with pytest.raises(ValueError, match="parts are the numbers of stories"):
        chained_stories([ann, dee], 1, 0, parts=(1,))


def test_chained_stories_compose_their_parts_answers() -> None:
    rows = generated_text_module(generated_train_rows=300).val_set
    chains = chained_stories(rows, 40, seed=3, max_entities=12)
    assert len(chains) == 40
    by_id = {row.id: row for row in rows}
    for story in chains:
        parts = [by_id[i] for i in story.id.split("+")]
        assert len(parts) in (2, 3) and len({p.id for p in parts}) == len(parts)
        expected = parts[0].target
        for previous, part in zip(parts[:-1], parts[1:]):
            assert previous.genders[previous.query[1]] == part.genders[part.query[0]]
            expected = compose(expected, part.target)
        assert story.target == expected and story.k == sum(p.k for p in parts)
        assert story.path == [r for p in parts for r in p.path] and len(story.names) <= 12
    assert [s.id for s in chained_stories(rows, 40, seed=3, max_entities=12)] == [s.id for s in chains]


def test_val_chained_adds_long_stories_to_validation_only() -> None:
    plain = generated_text_module()
    chained = generated_text_module(val_chained=30)
    assert [e.id for e in chained.train_set] == [e.id for e in plain.train_set]
    long = chained.val_set[len(plain.val_set) :]
    assert [e.id for e in chained.val_set[: len(plain.val_set)]] == [e.id for e in plain.val_set]
    assert len(long) == 30 and all(e.k >= 4 for e in long)
    batch = next(iter(chained.val_dataloader()))
    assert batch.supervision is None  # evaluation batches carry no gold graph, long or short
    assert all(len(edges) == e.k for e, edges in zip(long, chained.gold_edges([e.id for e in long])))
    by_id, ids = {e.id: e for e in chained.val_set}, batch.meta["id"]  # gold genders, kept aside like the edges
    for ident, names, genders in zip(ids, batch.meta["entity_names"], chained.gold_genders(ids)):
        gender_of = {name.lower(): g for name, g in zip(by_id[ident].names, by_id[ident].genders)}
        assert genders == [gender_of[name] for name in names] and all(g in (1, 2) for g in genders)
    with pytest.raises(ValueError, match="val_chained counts long validation stories"):
        generated_text_module(val_chained=-1)
