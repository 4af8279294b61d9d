"""LAART: the text side of CLUTRR, the reader, the read-chain search, the check, and the CLI end to end."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch

from laart_lab.cli import main
from laart_lab.components.reasoner import ReasoningBatch
from laart_lab.data.clutrr import ClutrrDataModule, parse_row
from laart_lab.data.clutrr_text import (
    ENTITY_ID,
    IGNORE,
    UNK_ID,
    LaartBatch,
    StoryBatch,
    TextCollator,
    WordTokenizer,
    encode_story,
    mixed_story,
    pair_labels,
)
from laart_lab.data.kinship_algebra import compose, inverse_relation
from laart_lab.models.laart import LaartModel
from laart_lab.reasoning.read_paths import best_paths
from laart_lab.reasoning.slrm import SLRM, leaf_distributions, viterbi_derivation, viterbi_reduce
from tests.benchmark_scripts import load_benchmark

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
RELATIONS = sorted(
    ["aunt", "brother", "daughter", "father", "granddaughter", "grandfather", "grandmother", "grandson", "husband",
     "mother", "nephew", "niece", "sister", "son", "uncle", "wife", "father-in-law", "mother-in-law", "son-in-law",
     "daughter-in-law"]
)  # fmt: skip
INDEX = {name: i for i, name in enumerate(RELATIONS)}
DOROTHY = {  # the first row of CLUTRR data_089907f8's training file
    "id": "row-1",
    "story": "[Dorothy]'s brother [Michael] and her went to get ice cream. "
    "[Michael] is the proud father of the lovely [Donald]",
    "query": "('Donald', 'Dorothy')",
    "target": "aunt",
    "story_edges": "[(0, 1), (1, 2)]",
    "edge_types": "['father', 'sister']",
    "query_edge": "(0, 2)",
    "genders": "Donald:male,Michael:male,Dorothy:female",
}
SMALL_GENERATED = [
    "--data.init_args.generated_train_rows", "160",
    "--data.init_args.generated_test_rows", "6",
    "--data.init_args.generated_test_ks", "[2, 4]",
    "--data.init_args.batch_size", "16",
    "--model.init_args.d_model", "32",
    "--model.init_args.n_layers", "1",
    "--data.init_args.val_chained", "12",  # the recipe's long validation stories, fewer
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def dorothy():
    return parse_row(dict(DOROTHY), "test, row 1")


# ---- the text side ---------------------------------------------------------------------------------
def test_tokenizer_and_entities_round_trip() -> None:
    example = dorothy()
    tokenizer = WordTokenizer.build([example.story], min_count=1)
    story = encode_story(example, tokenizer)
    words = [tokenizer.words[t] for t in story.tokens]
    rebuilt = [f"[{story.entity_names[e]}]" if e >= 0 else w for w, e in zip(words, story.token_entity)]
    assert rebuilt == ["[dorothy]", "'s", "brother", "[michael]", "and", "her", "went", "to", "get", "ice", "cream",
                       ".", "[michael]", "is", "the", "proud", "father", "of", "the", "lovely", "[donald]"]  # fmt: skip
    assert story.entity_names == ["dorothy", "michael", "donald"]  # first-mention order
    assert story.query == (2, 0)  # Donald -> Dorothy, read from the query text
    assert story.node_of_entity == [2, 1, 0]  # genders column order: Donald, Michael, Dorothy
    assert story.sentence[11] == 0 and story.sentence[12] == 1  # split after "."
    unseen = encode_story(parse_row({**DOROTHY, "story": DOROTHY["story"].replace("proud", "happy")}, "r"), tokenizer)
    assert unseen.tokens[15] == UNK_ID and unseen.tokens[12] == ENTITY_ID


def test_pair_labels_hand_worked() -> None:
    """Dorothy's brother Michael; Michael is Donald's father. Gold: Donald -father-> Michael -sister-> Dorothy."""
    example = dorothy()
    story = encode_story(example, WordTokenizer.build([example.story], min_count=1))
    labels = pair_labels(example, story, INDEX)
    dorothy_, michael, donald = 0, 1, 2
    none = len(INDEX)
    assert labels[michael][dorothy_] == INDEX["sister"]  # gold edge
    assert labels[dorothy_][michael] == INDEX["brother"]  # its inverse, by Michael's gender
    assert labels[donald][michael] == INDEX["father"]
    assert labels[michael][donald] == INDEX["son"]
    assert labels[donald][dorothy_] == none and labels[dorothy_][donald] == none  # never in one sentence
    assert labels[0][0] == IGNORE


def test_kinship_algebra() -> None:
    assert inverse_relation("son", "female") == "mother" and inverse_relation("uncle", "male") == "nephew"
    assert inverse_relation("son", None) is None
    assert compose("father", "wife") == "mother" and compose("father", "father") == "grandfather"
    assert compose("son", "aunt") is None  # sister or sister-in-law: no rule


def generated_text_module(**kwargs) -> ClutrrDataModule:
    args = dict(source="generated", view="text", generated_train_rows=120, generated_test_rows=6,
                generated_test_ks=[2, 5], batch_size=8)  # fmt: skip
    args.update(kwargs)
    module = ClutrrDataModule(**args)
    module.setup()
    return module


GOLD_WORDS = {"edges", "edge_types", "genders", "node_genders", "path", "story_edges", "pair_labels", "gold_path"}


def test_evaluation_batches_hold_no_gold_graph() -> None:
    module = generated_text_module()
    for loader in [module.val_dataloader(), *module.test_dataloader()]:
        batch = next(iter(loader))
        assert isinstance(batch, LaartBatch)
        assert batch.supervision is None
        assert not {f.name for f in fields(StoryBatch)} & GOLD_WORDS
        assert not set(batch.meta) & GOLD_WORDS
        assert batch.target is not None  # the answer, to score against
    train = next(iter(module.train_dataloader()))
    assert train.supervision is not None and (train.supervision.pair_labels != IGNORE).any()


def test_training_slots_are_random_and_evaluation_slots_fixed() -> None:
    module = generated_text_module()
    rows = module.train_set[:8]
    train = TextCollator(module.tokenizer, module._index, 32, training=True)
    batches = [train(rows).story for _ in range(3)]
    draws = [b.entity_slot for b in batches]
    for slots, mask in zip(batches[0].entity_slot, batches[0].entity_mask):
        assert len(set(slots[mask].tolist())) == int(mask.sum())  # distinct per story
    assert not all(torch.equal(draws[0], d) for d in draws[1:])
    evaluation = TextCollator(module.tokenizer, module._index, 32, training=False)(rows)
    n = evaluation.story.entity_slot.shape[1]
    assert torch.equal(evaluation.story.entity_slot[0, : int(evaluation.story.entity_mask[0].sum())],
                       torch.arange(int(evaluation.story.entity_mask[0].sum())))  # fmt: skip
    assert n == max(len(encode_story(e, module.tokenizer).entity_names) for e in rows)


def test_too_many_people_names_the_story_and_the_fix() -> None:
    module = generated_text_module()
    collate = TextCollator(module.tokenizer, module._index, 2, training=False)
    with pytest.raises(ValueError, match=r"max_entities=2.*raise data.init_args.max_entities"):
        collate(module.val_set[:4])


# ---- the read chain and the SLRM over distributions ------------------------------------------------------
def brute_force_path(cost: list[list[float]], head: int, tail: int) -> float:
    n = len(cost)
    others = [x for x in range(n) if x not in (head, tail)]
    best = math.inf
    for length in range(len(others) + 1):
        for middle in itertools.permutations(others, length):
            chain = [head, *middle, tail]
            best = min(best, sum(cost[a][b] for a, b in zip(chain[:-1], chain[1:])))
    return best


def test_best_paths_match_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    related = torch.rand(20, 5, 5, generator=generator) ** 3
    mask = torch.ones(20, 5, dtype=torch.bool)
    query = torch.tensor([[0, 4]] * 20)
    for b, path in enumerate(best_paths(related, mask, query, max_steps=10, step_cost=0.05)):
        cost = (-torch.log(related[b].clamp(1e-6, 1.0)) + 0.05).tolist()
        assert path[0] == 0 and path[-1] == 4 and len(set(path)) == len(path)
        assert sum(cost[a][c] for a, c in zip(path[:-1], path[1:])) == pytest.approx(brute_force_path(cost, 0, 4))


def test_slrm_reads_one_hot_distributions_as_ids() -> None:
    torch.manual_seed(0)
    slrm = SLRM(6, num_concepts=2).eval()
    path = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    zeros = torch.zeros(2, 5, dtype=torch.long)
    batch = ReasoningBatch(path, mask, zeros[:, :3].view(2, 1, 3), mask[:, :1], zeros[:, :2], zeros)
    soft = ReasoningBatch(**{**batch.__dict__, "path_probs": torch.nn.functional.one_hot(path, 6).float()})
    assert torch.allclose(slrm(batch).logits, slrm(soft).logits, atol=1e-5)
    slrm.train()
    assert torch.allclose(slrm(batch).logits, slrm(soft).logits, atol=1e-5)


def test_derivation_is_the_best_viterbi_derivation() -> None:
    torch.manual_seed(1)
    slrm = SLRM(6, num_concepts=2).eval()
    probs = torch.softmax(torch.randn(1, 4, 6) * 3, -1)
    path = probs.argmax(-1)
    table = slrm.composition_tensor().detach()
    reduced = viterbi_reduce(path, torch.tensor([4]), table, None, probs)
    tree = viterbi_derivation(leaf_distributions(path, 8, probs, torch.float32)[0], table)
    assert tree.log_prob == pytest.approx(float(reduced.score[0]), abs=1e-4)
    assert tree.relation == int(reduced.dist[0].argmax())
    assert len(tree.steps()) == 3 and tree.steps()[-1] is tree


# ---- the model -------------------------------------------------------------------------------------
def tiny_model(module: ClutrrDataModule, reasoner: dict) -> LaartModel:
    return LaartModel(reasoner=reasoner, d_model=32, n_layers=1, n_heads=2, **module.data_facts())


def test_the_check_keeps_or_replaces_the_fast_answer() -> None:
    module = generated_text_module()
    model = tiny_model(module, {"class_path": "slrm"})
    records = {
        "target": torch.tensor([0, 1, 2, 3]),
        "fast": torch.tensor([0, 1, 9, 9]),
        "slow": torch.tensor([5, 5, 2, 3]),
        "consistency": torch.tensor([0.9, 0.8, 0.1, 0.2]),
    }
    assert model._choose_threshold(records) == 0.8  # 0.3 .. 0.8 keep 0.9, 0.8 and replace 0.1, 0.2: the largest
    assert model._combined(records, 0.8).tolist() == [0, 1, 2, 3]
    assert model._combined(records, 0.0).tolist() == [0, 1, 9, 9]  # 0: always fast
    assert model._combined(records, 1.01).tolist() == [5, 5, 2, 3]  # above 1: always slow


REASONERS = [
    {"class_path": "slrm"},
    {"class_path": "gru"},
    {"class_path": "gnn"},
    {"class_path": "transformer"},
]
try:
    import laart_ctm  # noqa: F401

    REASONERS.append({"class_path": "ctm", "init_args": {"iterations": 4}})
except ImportError:  # the contrib plugin is not installed: the registered four still run
    pass


@pytest.mark.parametrize("reasoner", REASONERS, ids=lambda r: r["class_path"])
def test_every_reasoner_fits_the_slow_slot(reasoner: dict) -> None:
    module = generated_text_module()
    model = tiny_model(module, reasoner)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = module.train_dataloader()
    for _, batch in zip(range(3), loader):
        loss = model.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.reasoner.parameters())
    model.eval()
    with torch.no_grad():
        out = model(next(iter(module.val_dataloader())))
    assert out.slow.logits.shape == (out.fast_pred.shape[0], model.num_relations)
    assert ((out.consistency >= 0) & (out.consistency <= 1)).all()


def test_read_temperature_softens_the_slow_systems_leaves_at_evaluation_only() -> None:
    module = generated_text_module()
    model = LaartModel(
        reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, read_temperature=2.0, **module.data_facts()
    )
    batch = next(iter(module.val_dataloader()))
    reader = model.reader(batch.story, 0.0)
    paths = [[0, 1, 2] for _ in range(batch.batch_size)]
    read = reader.pair_logits[:, 0, 1, : model.num_relations].float().softmax(-1)  # the first step, as read
    softened = read.sqrt() / read.sqrt().sum(-1, keepdim=True)  # p ** (1 / 2), renormalised
    model.eval()
    evaluated = model._read_batch(reader, paths, None)
    torch.testing.assert_close(evaluated.path_probs[:, 0], softened)
    assert torch.equal(evaluated.path, model.train()._read_batch(reader, paths, None).path)  # same argmax chain
    torch.testing.assert_close(model._read_batch(reader, paths, None).path_probs[:, 0], read)  # training: as read
    with pytest.raises(ValueError, match="read_temperature"):
        LaartModel(reasoner={"class_path": "slrm"}, read_temperature=0.0, **module.data_facts())


@pytest.mark.parametrize("pair_context", [False, True])
def test_the_answer_trains_the_reader_through_the_slrm(pair_context: bool) -> None:
    module = generated_text_module()
    model = LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, pair_context=pair_context,
                       **module.data_facts())  # fmt: skip
    batch = next(iter(module.train_dataloader()))
    out = model(batch)
    model.reasoner.loss(out.slow, batch.target).backward()
    assert model.reader.pair_head[-1].weight.grad.abs().sum() > 0  # gradient through path_probs
    if pair_context:  # and on into where each pair's mentions attend
        assert model.reader.pair_context is not None
        assert model.reader.pair_context.query.weight.grad.abs().sum() > 0


# ---- the CLI end to end -------------------------------------------------------------------------------
@pytest.mark.slow
def test_story_graph_figure_shows_each_persons_read_gender_and_every_fact() -> None:
    """A hand-made prediction row: the figure names each person with the gender read for them, labels each read
    fact with its relation and confidence, and prints the answers and the derivation."""
    import matplotlib.pyplot as plt

    from laart_lab.callbacks.laart_story_graph import story_graph_figure

    row = {
        "query": ["gabrielle", "lisa"], "gold": "daughter", "fast": "son", "slow": "daughter", "laart": "daughter",
        "check": {"consistency": 0.1, "threshold": 0.4, "kept_fast": False},
        "extracted_edges": [
            {"head": "gabrielle", "relation": "husband", "tail": "jason", "confidence": 0.98},
            {"head": "jason", "relation": "daughter", "tail": "lisa", "confidence": 0.91},
        ],
        "genders": {"gabrielle": {"gender": "female", "confidence": 0.97},
                    "jason": {"gender": "male", "confidence": 0.99}, "lisa": {"gender": "male", "confidence": 0.96}},
        "path": ["gabrielle", "jason", "lisa"],
        "chain": [{"head": "gabrielle", "relation": "husband", "tail": "jason"},
                  {"head": "jason", "relation": "daughter", "tail": "lisa"}],
        "derivation": ["gabrielle -husband-> jason -daughter-> lisa: gabrielle's daughter is lisa"],
    }  # fmt: skip
    figure = story_graph_figure(row, "[Jason] and his wife [Gabrielle] baked a cake for [Lisa], his daughter.")
    texts = {t.get_text() for axes in figure.axes for t in axes.texts}
    plt.close(figure)
    assert {"gabrielle\nfemale 0.97", "jason\nmale 0.99", "lisa\nmale 0.96"} <= texts
    assert {"husband 0.98", "daughter 0.91"} <= texts
    panel = next(t for t in texts if "derivation" in t)
    assert "laart: daughter" in panel and "took slow" in panel and "1. gabrielle -husband-> jason" in panel


def test_fit_test_predict_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = [
        "--config", str(RECIPES / "laart_clutrr_generated.yaml"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.version", "v",
        *SMALL_GENERATED,
    ]  # fmt: skip
    assert main(["fit", *common, "--trainer.max_epochs", "2"]) == 0
    run = tmp_path / "laart_clutrr_generated" / "v"
    best = sorted((run / "checkpoints").glob("epoch*.ckpt"))[0]
    ckpt = torch.load(best, weights_only=True)  # plain data only
    assert ckpt["hyper_parameters"]["reasoner"]["class_path"] in ("slrm", "laart_lab.reasoning.slrm.SLRM")
    assert "check_threshold" in ckpt["state_dict"]
    capsys.readouterr()
    assert main(["test", *common, "--ckpt_path", str(best)]) == 0
    table = capsys.readouterr().out
    assert "LAART test accuracy per k" in table and "fast" in table and "laart" in table
    out_file = tmp_path / "predictions.jsonl"
    predict = ["predict", *common, "--ckpt_path", str(best), "--trainer.callbacks+=laart_predictions",
               f"--trainer.callbacks.init_args.path={out_file}"]  # fmt: skip
    assert main(predict) == 0
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(rows) == 12  # 6 stories for each of k = 2, 4
    names = set(ckpt["hyper_parameters"]["relation_names"])
    for row in rows:
        assert {"id", "k", "query", "gold", "fast", "slow", "laart", "extracted_edges", "path", "derivation"} <= set(
            row
        )
        assert {row["fast"], row["slow"], row["laart"], row["gold"]} <= names
        assert row["path"][0] == row["query"][0] and row["path"][-1] == row["query"][1]
        assert len(row["derivation"]) == len(row["path"]) - 2  # k steps compose in k - 1 derivation steps
        assert row["laart"] == (row["fast"] if row["check"]["kept_fast"] else row["slow"])
        assert set(row["path"]) <= set(row["genders"])  # every person read, with the gender head's answer
        assert all(g["gender"] in ("female", "male") and 0.5 <= g["confidence"] <= 1 for g in row["genders"].values())
        # the recipe reads first names (census lists): each person's name evidence is in the row; the generator's
        # names all have the right sign in the lists, and at weight 2 they decide the read gender here
        odds = {person: g["name_log_odds_female"] for person, g in row["genders"].items()}
        assert all(abs(value) > 1 for value in odds.values())
        assert all((odds[p] > 0) == (g["gender"] == "female") for p, g in row["genders"].items())


def test_mixed_stories_keep_both_facts_apart() -> None:
    first = dorothy()
    second = parse_row(
        {**DOROTHY, "story": "[Michael] and his daughter [Jennifer] like to read poems together. [Jason] is the "
         "proud father of the lovely [Michael]", "genders": "Jennifer:female,Michael:male,Jason:male",
         "edge_types": "['father', 'father']", "query": "('Jennifer', 'Jason')"}, "row 2"
    )  # fmt: skip
    mixed = mixed_story(first, second, seed=3)
    assert mixed.story.count("[") == 8  # every mention of both stories
    story = encode_story(mixed, WordTokenizer.build([mixed.story], min_count=1))
    assert len(story.entity_names) == 6  # the second story's Michael is another person
    assert story.entity_names[story.query[0]] == "donald" and story.entity_names[story.query[1]] == "dorothy"
    labels = pair_labels(mixed, story, INDEX)
    entity = {name.split(" ")[0] + ("2" if " " in name else ""): i for i, name in enumerate(story.entity_names)}
    assert labels[entity["jennifer2"]][entity["michael2"]] == INDEX["father"]  # the second story's facts
    assert labels[entity["michael2"]][entity["jason2"]] == INDEX["father"]
    assert labels[entity["donald"]][entity["jason2"]] == len(INDEX)  # across stories: none
    assert labels[entity["michael"]][entity["dorothy"]] == INDEX["sister"]


def sang_then_brother() -> tuple[WordTokenizer, LaartBatch]:
    """[Dorothy] and [Michael]: 2 tokens apart across a sentence end, 5 apart inside the next sentence."""
    story = "[Dorothy] sang . [Michael] is the brother of [Dorothy] ."
    example = parse_row({**DOROTHY, "story": story, "query": "('Michael', 'Dorothy')"}, "r")
    tokenizer = WordTokenizer.build([example.story], min_count=1)
    return tokenizer, TextCollator(tokenizer, INDEX, 4, training=False)([example])


def test_a_pair_is_read_where_one_sentence_states_it() -> None:
    """[A] and [B] are 2 tokens apart across a sentence end, 5 apart inside the next sentence."""
    from laart_lab.attention import SoftmaxAttention
    from laart_lab.models.story_reader import StoryReader

    tokenizer, batch = sang_then_brother()
    reader = StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=1)
    captured = {}
    reader.distance.register_forward_hook(lambda module, args, out: captured.update(bucket=args[0]))
    reader(batch.story)
    dorothy_, michael = 0, 1
    assert int(captured["bucket"][0, michael, dorothy_]) == 5  # "[Michael] is the brother of [Dorothy]": +5


def tiny_reader_capturing_states(tokenizer: WordTokenizer, gender_evidence: str) -> tuple[Any, dict[str, Any]]:
    """A one-layer reader in eval mode, and a dict its encoder's output states are captured into ("states")."""
    from laart_lab.attention import SoftmaxAttention
    from laart_lab.models.story_reader import StoryReader

    torch.manual_seed(0)
    reader = StoryReader(
        len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=16, n_layers=1, n_heads=1,
        gender_evidence=gender_evidence,  # type: ignore[arg-type]
    ).eval()  # fmt: skip
    captured: dict[str, Any] = {}
    reader.encoder.register_forward_hook(lambda module, args, out: captured.update(states=out))
    return reader, captured


def test_gender_from_mentions_sums_each_mentions_log_odds() -> None:
    """``gender_evidence="mentions"``: an entity's gender logits are the sum of the head on each of its
    mentions (here [Dorothy] twice, [Michael] once), compared with the head applied by hand."""
    from laart_lab.attention import SoftmaxAttention
    from laart_lab.models.story_reader import StoryReader

    tokenizer, batch = sang_then_brother()
    reader, captured = tiny_reader_capturing_states(tokenizer, "mentions")
    out = reader(batch.story)
    per_token = reader.gender_head(captured["states"][0])  # [T, 2]
    mentions = batch.story.token_entity[0]
    for entity in (0, 1):
        expected = per_token[mentions == entity].sum(0)
        assert torch.allclose(out.gender_logits[0, entity], expected, atol=1e-5)
    assert int((mentions == 0).sum()) == 2 and int((mentions == 1).sum()) == 1
    with pytest.raises(ValueError, match="gender_evidence must be"):
        StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, gender_evidence="mean")  # type: ignore[arg-type]


def test_gender_from_pairs_adds_what_each_pair_in_one_sentence_says() -> None:
    """``gender_evidence="pairs"``: an entity's gender logits are its mentions' log-odds plus the pair head's
    last two outputs at every pair (x, y) whose closest mentions share a sentence, compared by hand: [Dorothy]
    and [Michael] share the second sentence; [Ann] shares none, so she has her mentions' evidence alone."""
    story = "[Dorothy] sang . [Michael] is the brother of [Dorothy] . [Ann] ran ."
    example = parse_row({**DOROTHY, "story": story, "query": "('Michael', 'Dorothy')"}, "r")
    tokenizer = WordTokenizer.build([example.story], min_count=1)
    batch = TextCollator(tokenizer, INDEX, 4, training=False)([example])
    reader, captured = tiny_reader_capturing_states(tokenizer, "pairs")
    reader.pair_head.register_forward_hook(lambda module, args, out: captured.update(pairs=out))
    out = reader(batch.story)
    assert out.pair_logits.shape[-1] == captured["pairs"].shape[-1] - 2  # the two gender outputs are not a relation
    per_token = reader.gender_head(captured["states"][0])
    mentions = batch.story.token_entity[0]
    said_by_pair = captured["pairs"][0, ..., -2:]  # [x, y, 2]: y's gender as the pair (x, y) says it
    dorothy_, michael, ann = 0, 1, 2
    expected = {
        dorothy_: per_token[mentions == dorothy_].sum(0) + said_by_pair[michael, dorothy_],
        michael: per_token[mentions == michael].sum(0) + said_by_pair[dorothy_, michael],
        ann: per_token[mentions == ann].sum(0),
    }
    for entity, logits in expected.items():
        assert torch.allclose(out.gender_logits[0, entity], logits, atol=1e-5), entity
    two = parse_row({**DOROTHY, "story": "[Michael] is the brother of [Dorothy] .", "query": "('Michael', 'Dorothy')"},
                    "row 2")  # fmt: skip
    both = TextCollator(tokenizer, INDEX, 4, training=False)([two, example])  # the first has no third person
    assert not bool(both.story.entity_mask[0, 2])
    assert torch.equal(reader(both.story).gender_logits[0, 2], torch.zeros(2))  # no mentions, no pairs: no evidence


def test_pair_context_pools_where_both_mentions_attend() -> None:
    """``pair_context``: the pair head's last d_model inputs are, per pair, the token states weighted by the product
    of the two closest mentions' attentions (per head, averaged over heads, renormalised), against a loop over
    pairs and tokens by hand; padding gets no weight (a batch of two stories, the first the shorter)."""
    from laart_lab.attention import SoftmaxAttention
    from laart_lab.models.story_reader import StoryReader

    long = parse_row({**DOROTHY, "story": "[Dorothy] sang . [Michael] is the brother of [Dorothy] . [Ann] ran .",
                      "query": "('Michael', 'Dorothy')"}, "r")  # fmt: skip
    short = parse_row({**DOROTHY, "story": "[Michael] is the brother of [Dorothy] .",
                       "query": "('Michael', 'Dorothy')"}, "r2")  # fmt: skip
    tokenizer = WordTokenizer.build([long.story], min_count=1)
    batch = TextCollator(tokenizer, INDEX, 4, training=False)([short, long])
    torch.manual_seed(0)
    d, heads = 16, 2
    reader = StoryReader(len(tokenizer), len(INDEX), 4, SoftmaxAttention, d_model=d, n_layers=1, n_heads=heads,
                         pair_context=True).eval()  # fmt: skip
    captured: dict[str, Any] = {}
    reader.encoder.register_forward_hook(lambda module, args, out: captured.update(states=out))
    reader.pair_head.register_forward_pre_hook(lambda module, args: captured.update(features=args[0]))
    reader(batch.story)
    h, context = captured["states"], captured["features"][..., -d:]
    pos_x, pos_y = reader._closest_mentions(batch.story, batch.story.entity_slot.shape[1])
    pc, dh = reader.pair_context, d // heads
    for b in range(2):
        tokens = [t for t in range(h.shape[1]) if bool(batch.story.padding_mask[b, t])]
        for x, y in itertools.product(range(3), repeat=2):
            if not (batch.story.entity_mask[b, x] and batch.story.entity_mask[b, y]):
                continue
            weight = torch.zeros(h.shape[1])
            for head in range(heads):
                cut = slice(head * dh, (head + 1) * dh)
                attend = []
                for position in (int(pos_x[b, x, y]), int(pos_y[b, x, y])):
                    q = pc.query(h[b, position])[cut]
                    scores = torch.tensor([float(q @ pc.key(h[b, t])[cut]) / math.sqrt(dh) for t in tokens])
                    attend.append(scores.softmax(0))
                weight[tokens] += attend[0] * attend[1] / heads
            expected = (weight / weight.sum()) @ h[b]
            assert torch.allclose(context[b, x, y], expected, atol=1e-5), (b, x, y)
    assert batch.story.padding_mask[0].sum() < batch.story.padding_mask[1].sum()  # the first story has padding


def test_edge_scores_count_the_unseen_wording_edges_apart() -> None:
    """Hand-worked: three gold edges, two stated in unseen wording; the reader gets one of those right."""
    from types import SimpleNamespace

    from laart_lab.models.story_reader import ReaderOutput

    model = tiny_model(generated_text_module(), {"class_path": "slrm"})
    father, son = model._relation_index["father"], model._relation_index["son"]
    logits = torch.full((1, 3, 3, model.num_relations + 1), -5.0)
    logits[0, 0, 1, father] = logits[0, 1, 2, son] = logits[0, 2, 0, son] = 5.0
    data = SimpleNamespace(
        gold_edges=lambda ids: [[(0, 1, "father"), (1, 2, "father"), (2, 0, "son")]],
        gold_edge_wording=lambda ids: [["unseen", "unseen", "seen"]],
    )
    model.trainer = SimpleNamespace(datamodule=data)  # type: ignore[assignment]
    reader = ReaderOutput(pair_logits=logits, gender_logits=torch.zeros(1, 3, 2), fast_logits=torch.zeros(1, 1))
    counts = model._edge_scores(SimpleNamespace(meta={"id": ["s"]}, batch_size=1), reader)  # type: ignore[arg-type]
    assert {name: int(value[0]) for name, value in counts.items()} == {
        "edge_total": 3, "edge_right": 2, "edge_found": 3, "edge_strict": 2, "edge_unseen_total": 2,
        "edge_unseen_right": 1, "gender_total": 0, "gender_right": 0,
    }  # fmt: skip


def test_gender_scores_count_the_people_of_known_gender() -> None:
    """Hand-worked: four people, one of unknown gender; the gender head reads two of the other three right."""
    from types import SimpleNamespace

    from laart_lab.models.story_reader import ReaderOutput

    model = tiny_model(generated_text_module(), {"class_path": "slrm"})
    data = SimpleNamespace(gold_edges=lambda ids: [[]], gold_genders=lambda ids: [[1, 2, 0, 2]])
    model.trainer = SimpleNamespace(datamodule=data)  # type: ignore[assignment]
    female, male = [2.0, -2.0], [-2.0, 2.0]
    genders = torch.tensor([[female, male, female, female]])  # the fourth, male, is read as female
    reader = ReaderOutput(
        pair_logits=torch.zeros(1, 4, 4, model.num_relations + 1), gender_logits=genders, fast_logits=torch.zeros(1, 1)
    )
    counts = model._edge_scores(SimpleNamespace(meta={"id": ["s"]}, batch_size=1), reader)  # type: ignore[arg-type]
    assert (int(counts["gender_total"][0]), int(counts["gender_right"][0])) == (3, 2)


def test_laart_time_schedule_ends_the_cosine_with_max_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lr_schedule: time``: with half of max_time spent, the lr is half-way down the cosine at any step;
    without a max_time it is a clear error."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Timer

    module = generated_text_module()
    model = LaartModel(
        reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, warmup_steps=2, lr_schedule="time",
        **module.data_facts(),
    )  # fmt: skip
    trainer = Trainer(max_time={"seconds": 100}, logger=False, enable_checkpointing=False, accelerator="cpu")
    model.trainer = trainer
    monkeypatch.setattr(type(trainer), "estimated_stepping_batches", property(lambda self: 10_000))
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Timer))
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 50.0)
    scheduler = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    factor = scheduler.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.5)  # warm-up stays step-based
    assert factor(5) == pytest.approx(0.1 + 0.9 * 0.5)
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 100.0)
    assert factor(5) == pytest.approx(0.1)
    untimed = LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, lr_schedule="time",
                         **module.data_facts())  # fmt: skip
    untimed.trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    with pytest.raises(ValueError, match="LaartModel lr_schedule='time'.*trainer.max_time"):
        untimed.configure_optimizers()
    with pytest.raises(ValueError, match="lr_schedule must be 'steps' or 'time'"):
        LaartModel(reasoner={"class_path": "slrm"}, lr_schedule="epochs", **module.data_facts())  # type: ignore[arg-type]


def test_a_checkpoint_read_another_way_is_refused_with_the_fix() -> None:
    from laart_lab.errors import UserError

    module = generated_text_module()
    pooled = tiny_model(module, {"class_path": "slrm"})
    mentions = LaartModel(
        reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, gender_evidence="mentions",
        **module.data_facts(),
    )  # fmt: skip
    old = {"hyper_parameters": {"d_model": 32}}  # written before gender_evidence existed: pooled
    pooled.on_load_checkpoint(old)
    with pytest.raises(UserError, match="gender_evidence='pooled'.*--model.init_args.gender_evidence pooled"):
        mentions.on_load_checkpoint(old)
    mentions.on_load_checkpoint({"hyper_parameters": dict(mentions.hparams)})


def test_generated_augmentation_adds_training_stories_only() -> None:
    plain = generated_text_module()
    augmented = generated_text_module(augment_generated=40)
    assert len(augmented.train_set) == len(plain.train_set) + 40
    assert [e.id for e in augmented.val_set] == [e.id for e in plain.val_set]  # validation stays the release's
    assert augmented.release.tests.keys() == plain.release.tests.keys()


@pytest.mark.parametrize(
    "components",
    [{"attention": {"class_path": "linear"}}, {"memory": {"class_path": "concept_growth"}}],
    ids=["linear_attention", "concept_growth_memory"],
)
def test_the_reader_takes_attention_and_memory_plugins(components: dict) -> None:
    module = generated_text_module()
    model = LaartModel(
        reasoner={"class_path": "slrm"}, d_model=32, n_layers=2, n_heads=2, **components, **module.data_facts()
    )
    loss = model.training_step(next(iter(module.train_dataloader())), 0)
    loss.backward()
    assert torch.isfinite(loss)
    name = next(iter(components.values()))["class_path"]
    assert model.hparams[next(iter(components))]["class_path"] == name  # plain data for the checkpoint


# benchmarks/laart_clutrr.py: the chosen checkpoint's validation figures, a validation-only mode with no test,
# and testing a validation-only run's checkpoint once the decision is made
ONE_EPOCH = [*SMALL_GENERATED, "--trainer.max_epochs", "1", "--trainer.max_time", "null",
             "--model.init_args.lr_schedule", "steps"]  # fmt: skip


def load_laart_benchmark():  # type: ignore[no-untyped-def]
    return load_benchmark("laart_clutrr")


@pytest.mark.slow
def test_validation_only_runs_no_test_and_reports_the_chosen_checkpoint(tmp_path: Path) -> None:
    bench = load_laart_benchmark()
    judged = bench.run("laart_clutrr_generated", 0, str(tmp_path / "v"), ONE_EPOCH, test=False)
    assert "test" not in judged
    assert set(judged["val_best"]) >= {"acc", "fast_acc", "slow_acc", "edge_acc"}
    # one epoch: the chosen checkpoint is the last epoch's, so validating it again gives the same figures
    assert judged["val_best"]["acc"] == pytest.approx(judged["val_last_epoch"]["acc"])
    text = bench.summarise([judged])
    assert "validation, the checkpoint chosen on val/acc" in text and "seed 0:" in text
    assert "GPT-4" not in text  # no test table

    # the decision made, the judged checkpoint is tested by a later process, after validating it again
    tested_later = bench.tested_after_validation(judged, str(tmp_path / "v"))
    assert set(tested_later["test"]["acc"]) == {2, 4}
    assert tested_later["check_threshold"] == judged["check_threshold"]  # chosen again, on the same validation
    assert "GPT-4" in bench.summarise([tested_later])
    tampered = {
        **judged,
        "val_best": {**judged["val_best"], "acc": {k: v + 0.01 for k, v in judged["val_best"]["acc"].items()}},
    }
    with pytest.raises(SystemExit, match="other figures than its run recorded.*--evaluation-changed"):
        bench.tested_after_validation(tampered, str(tmp_path / "v"))  # not the checkpoint that was judged
    # evaluation settings changed on purpose: the new validation figures are recorded, the run's kept beside them
    revalidated = bench.tested_after_validation(tampered, str(tmp_path / "v"), evaluation_changed=True)
    assert revalidated["val_best"]["acc"] == pytest.approx(judged["val_best"]["acc"])
    assert revalidated["val_best_at_fit"] == tampered["val_best"] and "test" in revalidated
    with pytest.raises(SystemExit, match="names no checkpoint that exists"):
        bench.tested_after_validation({**judged, "best_checkpoint": str(tmp_path / "gone.ckpt")}, str(tmp_path / "v"))

    tested = bench.run("laart_clutrr_generated", 0, str(tmp_path / "t"), ONE_EPOCH)
    assert set(tested["test"]["acc"]) == {2, 4} and "val_best" in tested
    table = bench.summarise([tested])
    assert "GPT-4" in table and "validation, the checkpoint chosen on val/acc" in table
