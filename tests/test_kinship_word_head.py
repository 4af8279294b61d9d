"""The kinship-word relation head: the lexicon, the head against a per-pair loop, and LaartModel's switch."""

from __future__ import annotations

import itertools

import pytest
import torch

from laart_lab.attention import SoftmaxAttention
from laart_lab.data.clutrr import parse_row
from laart_lab.data.clutrr_text import TextCollator, WordTokenizer
from laart_lab.data.kinship_words import KINSHIP_WORDS, in_law_kinds, token_kinds, vocabulary_kinds
from laart_lab.errors import UserError
from laart_lab.models.kinship_word_head import KinshipLexicon
from laart_lab.models.laart import LaartModel, inverse_kinds, relation_factors, relation_kinds
from laart_lab.models.story_reader import StoryReader
from laart_lab.models.token_positions import distance_bucket
from tests.test_laart import DOROTHY, INDEX, RELATIONS, generated_text_module

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = relation_kinds(RELATIONS)


def kinds_of(story: str) -> list[str | None]:
    """The kind :func:`token_kinds` reads for each token of ``story`` (None: no kinship word)."""
    tokenizer = WordTokenizer.build([story], min_count=1)
    ids, _ = tokenizer.encode(story)
    law = tokenizer.index.get("law")
    word_kind = torch.tensor(vocabulary_kinds(tokenizer.words, KINDS))
    read = token_kinds(torch.tensor([ids]), word_kind, torch.tensor(in_law_kinds(KINDS)), law)[0].tolist()
    return [KINDS[k] if k >= 0 else None for k in read]


def test_the_lexicon_reads_synonyms_plurals_and_in_law_terms() -> None:
    story = "[A]'s mom [B] took her kids. [C] married [D]. [E] is the son - in - law of [F], whose sister - in - law ."
    words = ["[a]", "'s", "mom", "[b]", "took", "her", "kids", ".", "[c]", "married", "[d]", ".", "[e]", "is", "the",
             "son", "-", "in", "-", "law", "of", "[f]", ",", "whose", "sister", "-", "in", "-", "law", "."]  # fmt: skip
    expected = {"mom": "parent", "kids": "child", "married": "spouse", "son": "child_in_law"}
    read = kinds_of(story)
    assert len(read) == len(words)
    assert {w: k for w, k in zip(words, read) if k is not None} == expected  # "sister-in-law": no CLUTRR relation
    assert kinds_of("[A]'s son [B] went to law school .")[2] == "child_in_law"  # the window is 4 tokens: documented
    assert kinds_of("[A]'s son [B] went off to law school .")[2] == "child"
    assert set(KINSHIP_WORDS.values()) <= set(KINDS)


def brother_story(story: str):  # noqa: ANN201
    example = parse_row({**DOROTHY, "story": story, "query": "('Michael', 'Dorothy')"}, "r")
    tokenizer = WordTokenizer.build([example.story], min_count=1)
    return tokenizer, TextCollator(tokenizer, INDEX, 4, training=False)([example])


def reader_with_words(tokenizer: WordTokenizer, seed: int = 0) -> StoryReader:
    torch.manual_seed(seed)
    factors = relation_factors(RELATIONS)
    return StoryReader(
        len(tokenizer), len(RELATIONS), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=2,
        relation_factors=factors, inverse_kinds=inverse_kinds(RELATIONS),
        kinship_lexicon=KinshipLexicon.build(tokenizer.words, KINDS),
    ).eval()  # fmt: skip


def test_the_head_matches_a_per_pair_loop() -> None:
    """Each pair's kind distribution, computed by hand from the head's own layers, one candidate at a time."""
    tokenizer, batch = brother_story(
        "[Dorothy] sang with her son [Donald] . [Michael] is the brother of [Dorothy] . [Donald] laughed ."
    )
    reader = reader_with_words(tokenizer)
    head = reader.kinship_word_head
    assert head is not None
    captured: dict = {}
    head.register_forward_hook(lambda module, args, out: captured.update(args=args, out=out))
    with torch.no_grad():
        reader(batch.story)
    story, tokens, h, pos_x, pos_y, free, route_logits = captured["args"]
    out, sayable, evidence = captured["out"].log_probs, captured["out"].sayable, captured["out"].evidence
    kinds = token_kinds(tokens, head.word_kind, head.in_law_kind, head.law_id)[0]
    n = pos_x.shape[1]
    for x in range(n):
        for y in range(n):
            px, py = int(pos_x[0, x, y]), int(pos_y[0, x, y])
            window = {int(story.sentence[0, px]), int(story.sentence[0, py])}
            candidates = [t for t in range(tokens.shape[1]) if kinds[t] >= 0 and int(story.sentence[0, t]) in window]
            none, stated, implied = torch.cat([free[0, x, y, -1:], route_logits[0, x, y]]).softmax(0)
            p_free = free[0, x, y, :-1].softmax(0)
            if not candidates:  # the free head on both routes
                expected = torch.cat([(stated + implied) * p_free, none.view(1)])
                assert torch.allclose(out[0, x, y].exp(), expected, atol=1e-5), (x, y)
                assert not bool(sayable[0, x, y].any()) and int(evidence[0, x, y]) == -1
                continue
            scores, names = [], []
            for t in candidates:
                hidden = (
                    head.word(h[0, t]) + head.mention_x(h[0, px]) + head.mention_y(h[0, py])
                    + head.to_x(distance_bucket(torch.tensor(t - px), head.distance_buckets))
                    + head.to_y(distance_bucket(torch.tensor(t - py), head.distance_buckets))
                )  # fmt: skip
                with torch.no_grad():
                    score, name = head.out(hidden)
                scores.append(score)
                names.append(torch.sigmoid(name))
            choice = torch.stack([head.other.detach(), *scores]).softmax(0)
            p_word = torch.full((len(KINDS),), float(choice[0]) / len(KINDS))
            for t, p, said in zip(candidates, choice[1:], names):
                kind = int(kinds[t])
                p_word[kind] += p * said
                p_word[int(head.inverse_kind[kind])] += p * (1 - said)
            expected = torch.cat([stated * p_word + implied * p_free, none.view(1)])
            assert torch.allclose(out[0, x, y].exp(), expected, atol=1e-5), (x, y)
            said = {int(kinds[t]) for t in candidates} | {int(head.inverse_kind[kinds[t]]) for t in candidates}
            assert set(torch.nonzero(sayable[0, x, y]).flatten().tolist()) == said
            assert int(evidence[0, x, y]) == candidates[int(torch.stack(scores).argmax())]


def test_a_stated_pair_whose_sentence_says_brother_is_read_as_siblings_whatever_the_context() -> None:
    """On the stated route with "other" switched off, a pair can only take the word's kind or its inverse."""
    tokenizer, batch = brother_story("[Michael] is the brother of [Dorothy] , a lovely girl .")
    for seed in range(3):
        reader = reader_with_words(tokenizer, seed)
        assert reader.kinship_word_head is not None
        with torch.no_grad():
            reader.kinship_word_head.other.fill_(-1e4)
            reader.pair_head[-1].bias[-2].fill_(1e4)  # the route logits: stated
        out = reader(batch.story)
        sibling = KINDS.index("sibling")
        relations = out.pair_logits[0, 0, 1, : len(RELATIONS)].exp()  # y = Dorothy is Michael's ...
        related = relations.sum()
        sister, brother = relations[INDEX["sister"]], relations[INDEX["brother"]]
        assert float(sister + brother) == pytest.approx(float(related), abs=1e-5)
        assert reader.relation_kind is not None and int(reader.relation_kind[INDEX["sister"]]) == sibling


def test_the_model_trains_with_the_kinship_word_head_and_refuses_the_other_reading() -> None:
    module = generated_text_module()
    facts = module.data_facts()
    model = LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2,
                       relation_head="kinship_word", **facts)  # fmt: skip
    loss = model.training_step(next(iter(module.train_dataloader())), 0)
    loss.backward()
    head = model.reader.kinship_word_head
    assert head is not None and torch.isfinite(loss)
    assert head.word.weight.grad is not None and head.word.weight.grad.abs().sum() > 0
    old = {"hyper_parameters": {"d_model": 32}}  # written before relation_head existed: the pair head
    with pytest.raises(UserError, match="relation_head='pair'.*--model.init_args.relation_head pair"):
        model.on_load_checkpoint(old)
    with pytest.raises(ValueError, match="relation_head must be one of"):
        LaartModel(reasoner={"class_path": "slrm"}, relation_head="pointer", **facts)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs gender-factorised relations"):
        LaartModel(reasoner={"class_path": "slrm"}, relation_head="kinship_word", gender_factorised=False, **facts)


def test_a_pair_goes_by_word_when_a_word_near_it_can_say_its_label() -> None:
    """One sentence, three people: the gold edges and their inverses have a word of their kind (brother,
    son; mother is son's inverse); the uncle/nephew pair the chain implies has none, so it goes free."""
    from laart_lab.data.clutrr_text import IGNORE

    row = {**DOROTHY, "story": "[Dorothy]'s brother [Michael] and son [Donald] went out.",
           "query": "('Donald', 'Michael')", "target": "uncle", "story_edges": "[(0, 1), (1, 2)]",
           "edge_types": "['mother', 'brother']", "genders": "Donald:male,Dorothy:female,Michael:male"}  # fmt: skip
    example = parse_row(row, "r")
    module = generated_text_module()
    facts = {**module.data_facts(), "vocabulary": None}
    tokenizer = WordTokenizer.build([example.story], min_count=1)
    facts["vocabulary"] = tokenizer.words
    model = LaartModel(reasoner={"class_path": "slrm"}, d_model=16, n_layers=1, n_heads=2,
                       relation_head="kinship_word", **facts)  # fmt: skip
    batch = TextCollator(tokenizer, INDEX, 4, training=True)([example])
    assert batch.supervision is not None
    out = model.reader(batch.story)
    assert out.sayable_kinds is not None
    labels = batch.supervision.pair_labels
    dorothy, michael, donald = (batch.meta["entity_names"][0].index(n) for n in ("dorothy", "michael", "donald"))
    assert int(labels[0, donald, michael]) == INDEX["uncle"] and int(labels[0, michael, donald]) == INDEX["nephew"]
    assert batch.supervision.pair_stated is not None
    stated = batch.supervision.pair_stated
    routes = model.route_targets(out.sayable_kinds, labels, stated)[0]
    word, free = 0, 1
    expected = torch.full((3, 3), IGNORE)
    for x, y in itertools.permutations((dorothy, michael, donald), 2):
        expected[x, y] = free if {x, y} == {michael, donald} else word
    assert routes.tolist() == expected.tolist()
    # a stated pair whose words cannot say it (here: the sentence's words marked as not stated) goes free
    assert model.route_targets(out.sayable_kinds, labels, torch.zeros_like(stated))[0, dorothy, michael] == free


def test_predictions_say_which_word_each_fact_was_read_from() -> None:
    module = generated_text_module()
    model = LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2,
                       relation_head="kinship_word", **module.data_facts()).eval()  # fmt: skip
    batch = next(iter(module.val_dataloader()))
    with torch.no_grad():
        rows = model.predict_step(batch, 0)
    facts = [fact for row in rows for fact in row["extracted_edges"]]
    assert facts and all(fact["route"] in ("word", "free") for fact in facts)
    by_word = [fact for fact in facts if fact["route"] == "word"]
    assert by_word and all(fact["read_from"] in KINSHIP_WORDS for fact in by_word)
