"""A validation split whose stories are worded in ways the training split never shows.

Why: CLUTRR's test stories are written with paraphrases that training never shows (about 5% of
data_089907f8's test sentences, names masked, appear verbatim in its training stories), but a random
split of the training file puts 92% of the validation sentences verbatim in the training split too. A
model chosen on such a split is chosen for reading wording it has memorised. This split holds out
*wording* instead of stories:

* a story's **sentences** are its sentence templates: each sentence lower-cased with every ``[Name]``
  replaced by ``[X]``;
* two stories that share a **rare** sentence (used by at most ``shared_limit`` training stories) are
  tied: they land on the same side of the split. The ties form connected groups (union-find);
* validation takes whole groups, in a seeded order, until it holds ``fraction`` of the stories. A group
  too large to fit in what is left is skipped (on data_089907f8 one group holds a quarter of the
  stories; it stays in training).

Common sentences ("His name is [X].") may still appear on both sides: tying on them would make one
group of everything. On data_089907f8 (train k=2,3, ``shared_limit=10``, 10% validation) 59% of the
validation sentences appear verbatim in training, against 92% for a random split and 5% for the test.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from laart_lab.data.clutrr_text import people_named, story_sentences

_NAME = re.compile(r"\[([^\]]+)\]")


def sentence_templates(story: str) -> list[str]:
    """The story's sentences, lower-cased, each ``[Name]`` replaced by ``[X]`` (in order, repeats kept)."""
    return [_template(sentence) for sentence in story_sentences(story)]


def _template(sentence: str) -> str:
    return _NAME.sub("[X]", sentence.lower())


def held_out_wording_split(
    stories: Sequence[str], fraction: float, seed: int, shared_limit: int = 10
) -> tuple[list[int], list[int]]:
    """``(train indices, validation indices)``, each sorted: validation stories share no rare sentence
    with training stories (see the module docstring).

    Args:
        stories: the story texts of the training file.
        fraction: the share of stories to put in validation (reached as closely as whole groups allow).
        seed: the order in which groups are tried.
        shared_limit: a sentence used by at most this many stories ties them together.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if shared_limit < 1:
        raise ValueError(f"shared_limit must be >= 1, got {shared_limit}")
    templates = [set(sentence_templates(story)) for story in stories]
    uses = Counter(t for story in templates for t in story)
    parent = list(range(len(stories)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_story: dict[str, int] = {}
    for i, story in enumerate(templates):
        for template in sorted(story):
            if uses[template] > shared_limit:
                continue
            if template in first_story:
                parent[root(i)] = root(first_story[template])
            else:
                first_story[template] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(stories)):
        groups.setdefault(root(i), []).append(i)
    order = list(groups.values())  # by first member: groups are created in story order
    random.Random(seed).shuffle(order)
    target = max(1, round(len(stories) * fraction))
    held: list[int] = []
    for members in order:
        if len(held) >= target:
            break
        if len(held) + len(members) <= target:
            held.extend(members)
    if not held:
        raise ValueError(
            f"no group of stories tied by shared wording fits in a {fraction:.0%} validation split of "
            f"{len(stories)} stories; raise val_fraction or lower the shared-sentence limit"
        )
    held_set = set(held)
    return [i for i in range(len(stories)) if i not in held_set], sorted(held)


EdgeWording = Literal["unseen", "seen", "apart"]


def edge_wording(
    story: str, entity_names: Sequence[str], edges: Sequence[tuple[int, int, str]], training_templates: set[str]
) -> list[EdgeWording]:
    """Per gold edge ``(a, b, relation)`` of ``story``: how the story states it, against training's wording.

    ``"unseen"``: every sentence that names both people is worded unlike any training sentence (the
    test's case: the reader must read a paraphrase it never saw); ``"seen"``: one of them is a training
    sentence, names masked; ``"apart"``: no single sentence names both (a pronoun or a later sentence
    links them). ``entity_names`` are the story's entities as the tokenizer reads them (lower-cased).
    """
    sentences = story_sentences(story)
    named = [people_named(sentence) for sentence in sentences]
    templates = [_template(sentence) for sentence in sentences]
    wording: list[EdgeWording] = []
    for a, b, _ in edges:
        stating = [t for t, names in zip(templates, named) if entity_names[a] in names and entity_names[b] in names]
        if not stating:
            wording.append("apart")
        else:
            wording.append("seen" if any(t in training_templates for t in stating) else "unseen")
    return wording
