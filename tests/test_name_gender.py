"""First-name gender evidence: the name list, the batches that carry it, and the reader that adds it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from laart_lab.attention import SoftmaxAttention
from laart_lab.data.clutrr import parse_row
from laart_lab.data.clutrr_text import TextCollator, WordTokenizer
from laart_lab.data.name_gender import NameGenderLexicon
from laart_lab.errors import UserError
from laart_lab.models.laart import LaartModel
from laart_lab.models.story_reader import StoryReader
from tests.test_laart import DOROTHY, INDEX, generated_text_module

pytestmark = pytest.mark.usefixtures("one_thread")


def test_log_odds_by_hand() -> None:
    """Frequencies 0.3 / 0.1 (a woman's name more often): log((0.3 + s) / (0.1 + s)); a name in one list only is
    rare in the other (the smoothing), clipped; unknown names are no evidence; only the first word counts."""
    lexicon = NameGenderLexicon({"ann": 0.3, "lee": 0.1}, {"lee": 0.2, "bob": 0.5}, smoothing=0.01, clip=3.0)
    assert lexicon.log_odds("Ann") == pytest.approx(min(3.0, math.log(0.31 / 0.01)))  # 3.43, clipped to 3
    assert lexicon.log_odds("lee") == pytest.approx(math.log(0.11 / 0.21))
    assert lexicon.log_odds(" BOB ") == pytest.approx(-3.0)  # log(0.01 / 0.51) = -3.93, clipped
    assert lexicon.log_odds("Lee Ann") == lexicon.log_odds("lee")
    assert lexicon.log_odds("Zebedee") == 0.0 and lexicon.log_odds("") == 0.0
    assert "Ann Marie" in lexicon and "zebedee" not in lexicon and len(lexicon) == 3
    with pytest.raises(ValueError, match="smoothing and clip"):
        NameGenderLexicon({}, {}, smoothing=0.0)


def test_csv_lists_and_their_errors(tmp_path: Path) -> None:
    good = tmp_path / "names.csv"
    good.write_text("name,female,male\nAnn,30,10\nBob,0,50\n")
    lexicon = NameGenderLexicon.load(str(good))
    assert lexicon.log_odds("ann") == pytest.approx(math.log(30.001 / 10.001))
    assert lexicon.log_odds("bob") == -6.0  # clipped
    missing = tmp_path / "missing.csv"
    missing.write_text("name,female\nAnn,3\n")
    header = r"missing.csv: the header must name the columns name,female,male; missing \['male'\]"
    with pytest.raises(UserError, match=header):
        NameGenderLexicon.load(str(missing))
    bad = tmp_path / "bad.csv"
    bad.write_text("name,female,male\nAnn,3,1\nBob,x,5\n")
    with pytest.raises(UserError, match="bad.csv, row 3: female and male must be numbers"):
        NameGenderLexicon.load(str(bad))
    negative = tmp_path / "negative.csv"
    negative.write_text("name,female,male\nAnn,-3,1\n")
    with pytest.raises(UserError, match="row 2: frequencies cannot be negative"):
        NameGenderLexicon.load(str(negative))
    with pytest.raises(UserError, match="is not a file; give 'census'"):
        NameGenderLexicon.load(str(tmp_path / "nowhere.csv"))


def test_census_lists_know_common_names() -> None:
    lexicon = NameGenderLexicon.load("census")
    assert len(lexicon) > 5000
    assert lexicon.log_odds("Mary") > 4 and lexicon.log_odds("Jason") < -4  # both lists, one side overwhelmingly
    assert abs(lexicon.log_odds("Jordan")) < abs(lexicon.log_odds("Jason"))  # given to both: weaker evidence


def one_story_batch(lexicon: NameGenderLexicon | None):  # type: ignore[no-untyped-def]
    example = parse_row(dict(DOROTHY), "row 1")  # [Dorothy], [Michael], [Donald]
    tokenizer = WordTokenizer.build([example.story], min_count=1)
    return tokenizer, TextCollator(tokenizer, INDEX, 4, training=False, name_genders=lexicon)([example])


def test_batches_carry_each_persons_name_evidence_in_entity_order() -> None:
    lexicon = NameGenderLexicon({"dorothy": 0.7}, {"michael": 0.9, "donald": 0.2})
    _, batch = one_story_batch(lexicon)
    names = batch.meta["entity_names"][0]
    assert names == ["dorothy", "michael", "donald"]
    expected = torch.tensor([lexicon.log_odds(name) for name in names])
    assert torch.equal(batch.story.name_gender[0], expected)
    assert expected[0] > 0 > expected[1]
    assert one_story_batch(None)[1].story.name_gender is None
    module = generated_text_module(name_genders=None)
    assert next(iter(module.val_dataloader())).story.name_gender is None
    module = generated_text_module()  # the default: the census lists
    batch = next(iter(module.val_dataloader()))
    assert batch.story.name_gender is not None and bool((batch.story.name_gender[batch.story.entity_mask] != 0).any())


def test_the_reader_adds_weighted_name_log_odds_at_evaluation_only() -> None:
    """Female minus male gender log-odds move by exactly ``weight * name log-odds`` for every person, at evaluation;
    in training they do not move; without name evidence in the batch the error names the data option."""
    lexicon = NameGenderLexicon({"dorothy": 0.7}, {"michael": 0.9, "donald": 0.2})
    tokenizer, batch = one_story_batch(lexicon)
    torch.manual_seed(0)
    reader = StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=1).eval()

    def female_odds(weight: float) -> torch.Tensor:
        reader.name_gender_weight = weight
        logits = reader(batch.story).gender_logits[0]
        return logits[:, 0] - logits[:, 1]

    without = female_odds(0.0)
    torch.testing.assert_close(female_odds(1.5) - without, 1.5 * batch.story.name_gender[0])
    reader.train()
    torch.manual_seed(1)
    trained_read = female_odds(1.5)
    reader.name_gender_weight = 0.0
    torch.manual_seed(1)  # the same dropout draws
    torch.testing.assert_close(trained_read, reader(batch.story).gender_logits[0] @ torch.tensor([1.0, -1.0]))
    reader.eval()
    reader.name_gender_weight = 1.0
    with pytest.raises(ValueError, match="data.init_args.name_genders: census"):
        reader(one_story_batch(None)[1].story)


def test_the_model_passes_the_weight_to_its_reader_and_refuses_a_negative_one() -> None:
    module = generated_text_module()
    model = LaartModel(reasoner={"class_path": "slrm"}, d_model=16, n_layers=1, n_heads=1, name_gender_weight=2.0,
                       **module.data_facts())  # fmt: skip
    assert model.reader.name_gender_weight == 2.0
    with pytest.raises(ValueError, match="name_gender_weight weighs name evidence"):
        LaartModel(reasoner={"class_path": "slrm"}, name_gender_weight=-1.0, **module.data_facts())


def test_name_input_adds_each_persons_log_odds_to_their_mentions_only() -> None:
    """``name_gender_input``: the transformer's input at every mention of a person moves by the learned direction
    times their name log-odds / 4; other tokens do not move (compared with the same reader's input without it)."""
    lexicon = NameGenderLexicon({"dorothy": 0.7}, {"michael": 0.9, "donald": 0.2})
    tokenizer, batch = one_story_batch(lexicon)
    torch.manual_seed(0)
    reader = StoryReader(
        len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=1, name_gender_input=True
    ).eval()
    captured: list[torch.Tensor] = []
    reader.encoder.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    reader(batch.story)
    direction = reader.name_gender_input
    reader.name_gender_input = None
    reader(batch.story)
    moved = captured[0] - captured[1]  # [1, T, D]
    mention_of = batch.story.token_entity[0]
    for t, entity in enumerate(mention_of.tolist()):
        odds = batch.story.name_gender[0, entity] if entity >= 0 else torch.tensor(0.0)
        torch.testing.assert_close(moved[0, t], direction.weight[:, 0] * odds / 4)
    assert bool((mention_of >= 0).any()) and bool((mention_of < 0).any())
    with pytest.raises(ValueError, match="name_gender_input read each person's first-name gender"):
        StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, name_gender_input=True)(
            one_story_batch(None)[1].story
        )
