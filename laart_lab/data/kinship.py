"""A seeded, CLUTRR-*like* kinship world generator (it is not CLUTRR, and its numbers are not CLUTRR's).

Why it exists: so every recipe, test and tutorial runs without any download. It mimics the CLUTRR
generator (Sinha et al., 2019) closely enough that one reader serves both:

* **worlds** are family trees over a few generations, with genders and marriages: every child of the
  tree marries someone from outside it, whose parents exist too (so in-laws exist);
* **relations** are CLUTRR's 20 kinship terms, "x's <relation> is y", named by the gender of y;
* **composition rules** ``r1 ∘ r2 = r`` are the pairs that *always* give the same named relation in
  these worlds (e.g. father ∘ father = grandfather, son ∘ wife = daughter-in-law); pairs whose result
  depends on the world (grandfather ∘ son: father or uncle?) are not rules;
* **stories** are made by backward chaining as in CLUTRR: start from two people and their relation,
  then k-1 times replace one edge ``x -r-> y`` by ``x -r1-> z -r2-> y`` with a rule ``r1 ∘ r2 = r`` and
  a person z of the world not yet in the story. The answer is therefore fixed by the rules.
* **story text** (:func:`write_story`) is CLUTRR-like: each fact is written with one of several
  paraphrase templates per kind of relation, stated from either side ("[x] took her daughter [y] to the
  park." / "[y] loves visiting her mother [x]."), with the people's genders in his/her; some sentences
  state two facts at once ("[a] has a sister, [b], whose son is [c]."; "[a] and her husband [b] took
  their son [c] fishing." when [c] is the child of both); the sentences are shuffled (seeded); a minority
  refer to a person by he/she ("She also has a brother, [y].") only right after a sentence that names
  that person as its only one of that gender, so the other person of the fact is always bracketed and
  every person is bracketed somewhere in the story.
* **distractors**: ``distractors`` extra sentences per story on average (0-2; 0 gives clean stories)
  state a true relation between a story person and a new person of the same world. The new person is an
  extra node (appended to ``genders``) and the fact is an *untyped* edge listed in ``story_edges`` after
  the typed ones, exactly like CLUTRR's robustness releases (:mod:`laart_lab.data.clutrr` reads it as
  ``ClutrrExample.untyped_edges``; graph models ignore it).
* **held-out paraphrases** (``heldout_templates=True``): about a third of the templates of each kind are
  used by the test files only, as CLUTRR's test stories use paraphrases training never shows, so the
  test files measure generalisation to unseen wording as well as to longer chains.
* The output files have CLUTRR's names and columns (``<tasks>_train.csv``, ``1.<k>_test.csv``,
  ``config.json``; ``story``, ``query``, ``target``, ``story_edges``, ``edge_types``, ``query_edge``,
  ``genders``, ...). ``genders`` lists ``Name:gender`` per node in node order (node i is the i-th name;
  text models map ``[Name]`` to nodes by it). k is the number of typed edges. Unlike CLUTRR's test files,
  the typed edges form a simple path (no back-and-forth edges).
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RELATIONS: tuple[str, ...] = (
    "father", "mother", "son", "daughter", "husband", "wife", "brother", "sister",
    "grandfather", "grandmother", "grandson", "granddaughter", "uncle", "aunt", "nephew", "niece",
    "father-in-law", "mother-in-law", "son-in-law", "daughter-in-law",
)  # fmt: skip
# (male term, female term) for each kind of link "y is x's <kind>"
_TERMS: dict[str, tuple[str, str]] = {
    "parent": ("father", "mother"),
    "child": ("son", "daughter"),
    "spouse": ("husband", "wife"),
    "sibling": ("brother", "sister"),
    "grandparent": ("grandfather", "grandmother"),
    "grandchild": ("grandson", "granddaughter"),
    "parent_sibling": ("uncle", "aunt"),
    "sibling_child": ("nephew", "niece"),
    "parent_in_law": ("father-in-law", "mother-in-law"),
    "child_in_law": ("son-in-law", "daughter-in-law"),
}
MALE_NAMES = [
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Edward",
    "Ronald",
    "Timothy",
    "Jason",
    "Jeffrey",
    "Ryan",
    "Jacob",
    "Gary",
    "Nicholas",
    "Eric",
    "Jonathan",
    "Stephen",
    "Larry",
    "Justin",
    "Scott",
    "Brandon",
    "Benjamin",
    "Samuel",
    "Frank",
    "Gregory",
    "Raymond",
    "Alexander",
    "Patrick",
    "Jack",
    "Dennis",
    "Jerry",
    "Tyler",
    "Aaron",
    "Henry",
    "Adam",
    "Douglas",
    "Nathan",
    "Peter",
    "Zachary",
    "Kyle",
    "Walter",
    "Harold",
    "Carl",
]
FEMALE_NAMES = [
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Lisa",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Dorothy",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Kathleen",
    "Amy",
    "Shirley",
    "Angela",
    "Helen",
    "Anna",
    "Brenda",
    "Pamela",
    "Nicole",
    "Emma",
    "Samantha",
    "Katherine",
    "Christine",
    "Debra",
    "Rachel",
    "Catherine",
    "Carolyn",
    "Janet",
    "Ruth",
    "Maria",
    "Heather",
    "Diane",
    "Virginia",
    "Julie",
    "Joyce",
    "Victoria",
    "Olivia",
    "Kelly",
]
MALE, FEMALE = "male", "female"


@dataclass
class Person:
    name: str
    gender: str
    father: int | None = None
    mother: int | None = None
    spouse: int | None = None
    children: list[int] = field(default_factory=list)


class World:
    """One family tree and the named relation between every pair of its people."""

    def __init__(self, rng: random.Random, levels: int = 4, min_children: int = 2, max_children: int = 3) -> None:
        self.people: list[Person] = []
        names = {MALE: rng.sample(MALE_NAMES, len(MALE_NAMES)), FEMALE: rng.sample(FEMALE_NAMES, len(FEMALE_NAMES))}
        self._names = names
        root = self._add(MALE)
        self._marry(root, rng)
        generation = [root]
        for _ in range(levels - 1):
            next_generation = []
            for parent in generation:
                for _ in range(rng.randint(min_children, max_children)):
                    child = self._add(rng.choice((MALE, FEMALE)))
                    self._set_parents(child, parent)
                    next_generation.append(child)
            for child in next_generation:
                self._marry(child, rng, with_parents=True)
            generation = next_generation
        self.relations: list[dict[int, str]] = [self._named_relations(x) for x in range(len(self.people))]

    def _add(self, gender: str) -> int:
        pool = self._names[gender]
        name = pool.pop() if pool else f"{gender[0].upper()}{len(self.people)}"
        self.people.append(Person(name, gender))
        return len(self.people) - 1

    def _set_parents(self, child: int, parent: int) -> None:
        a, b = parent, self.people[parent].spouse
        father, mother = (a, b) if self.people[a].gender == MALE else (b, a)
        self.people[child].father, self.people[child].mother = father, mother
        for p in (father, mother):
            if p is not None:
                self.people[p].children.append(child)

    def _marry(self, person: int, rng: random.Random, with_parents: bool = False) -> None:
        gender = FEMALE if self.people[person].gender == MALE else MALE
        spouse = self._add(gender)
        self.people[person].spouse, self.people[spouse].spouse = spouse, person
        if with_parents:  # the outsider's parents, so that in-laws exist
            father, mother = self._add(MALE), self._add(FEMALE)
            self.people[father].spouse, self.people[mother].spouse = mother, father
            self.people[spouse].father, self.people[spouse].mother = father, mother
            self.people[father].children.append(spouse)
            self.people[mother].children.append(spouse)

    def _kin(self, x: int) -> dict[str, set[int]]:
        p = self.people
        parents = {q for q in (p[x].father, p[x].mother) if q is not None}
        children = set(p[x].children)
        spouse: set[int] = {s for s in (p[x].spouse,) if s is not None}
        siblings = {
            c for q in parents for c in p[q].children
            if c != x and p[c].father == p[x].father and p[c].mother == p[x].mother and p[x].father is not None
        }  # fmt: skip
        return {
            "parent": parents,
            "child": children,
            "spouse": spouse,
            "sibling": siblings,
            "grandparent": {g for q in parents for g in (p[q].father, p[q].mother) if g is not None},
            "grandchild": {g for c in children for g in p[c].children},
            "parent_sibling": {u for q in parents for u in self._siblings(q)},
            "sibling_child": {n for s in siblings for n in p[s].children},
            "parent_in_law": {g for s in spouse for g in (p[s].father, p[s].mother) if g is not None},
            "child_in_law": {s for c in children if (s := p[c].spouse) is not None},
        }

    def _siblings(self, x: int) -> set[int]:
        p = self.people
        father = p[x].father
        if father is None:
            return set()
        return {c for c in p[father].children if c != x and p[c].mother == p[x].mother}

    def _named_relations(self, x: int) -> dict[int, str]:
        named: dict[int, str] = {}
        for kind, members in self._kin(x).items():
            for y in members:
                if y != x and y not in named:
                    named[y] = _TERMS[kind][0 if self.people[y].gender == MALE else 1]
        return named


def composition_rules(worlds: list[World]) -> dict[tuple[str, str], str]:
    """Pairs ``(r1, r2)`` whose composition gives the same named relation in every observed case."""
    seen: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for world in worlds:
        for x, around_x in enumerate(world.relations):
            for z, r1 in around_x.items():
                for y, r2 in world.relations[z].items():
                    if y != x:
                        seen[(r1, r2)][around_x.get(y)] += 1
    return {pair: next(iter(c)) for pair, c in seen.items() if len(c) == 1 and None not in c}


def _expand(world: World, rules_by_result: dict[str, list[tuple[str, str]]], k: int, rng: random.Random):
    """Backward chaining: a walk of k edges from head to tail whose composition is fixed by the rules."""
    heads = [
        (x, y) for x, around in enumerate(world.relations) for y in around if world.relations[x][y] in rules_by_result
    ]
    x, y = rng.choice(heads)
    walk = [x, y]
    types = [world.relations[x][y]]
    for _ in range(k - 1):
        order = list(range(len(types)))
        rng.shuffle(order)
        for index in order:
            a, b, r = walk[index], walk[index + 1], types[index]
            used = set(walk)
            options = [
                (z, world.relations[a][z], world.relations[z][b])
                for z in world.relations[a]
                if z not in used
                and b in world.relations[z]
                and (world.relations[a][z], world.relations[z][b]) in rules_by_result[r]
            ]
            if options:
                z, r1, r2 = rng.choice(options)
                walk.insert(index + 1, z)
                types[index : index + 1] = [r1, r2]
                break
        else:
            return None
    return walk, types, world.relations[x][y]


# ------------------------------------------------------------------------------------------------
# story text
# ------------------------------------------------------------------------------------------------
KIND_OF: dict[str, str] = {term: kind for kind, terms in _TERMS.items() for term in terms}
INVERSE_KIND: dict[str, str] = {
    "parent": "child", "child": "parent", "spouse": "spouse", "sibling": "sibling",
    "grandparent": "grandchild", "grandchild": "grandparent", "parent_sibling": "sibling_child",
    "sibling_child": "parent_sibling", "parent_in_law": "child_in_law", "child_in_law": "parent_in_law",
}  # fmt: skip


@dataclass(frozen=True)
class Template:
    """A sentence pattern. Single facts "x's {rel} is y" fill ``{x}``, ``{y}`` (bracketed names), ``{xp}``/
    ``{yp}`` (his/her), ``{rel}`` (x's relation to y), ``{inv}`` (y's relation to x), ``{a_rel}``/``{a_inv}``
    (with a/an) and ``{XS}`` (He/She for x); two-fact templates ("a's r1 is b, b's r2 is c") fill ``{a}``,
    ``{b}``, ``{c}``, ``{ap}``, ``{r1}``, ``{r2}``, ``{a_r1}``."""

    id: str
    text: str
    heldout: bool = False  #: used by test files only (with ``heldout_templates=True``)


def _t(id: str, text: str, heldout: bool = False) -> Template:
    return Template(id, text, heldout)


#: single-fact templates that suit every kind of relation
GENERIC_TEMPLATES: tuple[Template, ...] = (
    _t("any.x0", "[{x}] took {xp} {rel} [{y}] out for lunch."),
    _t("any.x1", "[{x}] called {xp} {rel} [{y}] to catch up."),
    _t("any.x2", "[{y}] is the {rel} of [{x}]."),
    _t("any.x3", "[{x}] baked cookies for {xp} {rel} [{y}].", heldout=True),
    _t("any.x4", "[{x}]'s {rel}, [{y}], came over for dinner.", heldout=True),
    _t("any.y0", "[{y}] loves visiting {yp} {inv} [{x}]."),
    _t("any.y1", "[{y}] asked {yp} {inv} [{x}] for some advice."),
    _t("any.y2", "[{y}] went shopping with {yp} {inv}, [{x}]."),
    _t("any.y3", "[{y}] wrote a long letter to {yp} {inv} [{x}].", heldout=True),
)
#: single-fact templates of one kind of relation ("x's <kind> is y")
KIND_TEMPLATES: dict[str, tuple[Template, ...]] = {
    "parent": (
        _t("parent.x0", "[{x}] was picked up from school by {xp} {rel} [{y}]."),
        _t("parent.y0", "[{y}] read a bedtime story to {yp} {inv} [{x}].", heldout=True),
    ),
    "child": (
        _t("child.x0", "[{x}] was very proud of {xp} {rel} [{y}] for winning the race."),
        _t("child.x1", "[{x}] taught {xp} {rel} [{y}] how to ride a bike.", heldout=True),
    ),
    "spouse": (
        _t("spouse.x0", "[{x}] and {xp} {rel} [{y}] celebrated their anniversary."),
        _t("spouse.x1", "[{x}] surprised {xp} {rel} [{y}] with flowers.", heldout=True),
    ),
    "sibling": (
        _t("sibling.x0", "[{x}] and {xp} {rel} [{y}] grew up playing in the same garden."),
        _t("sibling.x1", "[{x}] shares a room with {xp} {rel} [{y}] on holidays.", heldout=True),
    ),
    "grandparent": (
        _t("grandparent.x0", "[{x}] spent the summer at the farm of {xp} {rel} [{y}]."),
        _t("grandparent.y0", "[{y}] knitted a scarf for {yp} {inv} [{x}].", heldout=True),
    ),
    "grandchild": (
        _t("grandchild.x0", "[{x}] showed old photos to {xp} {rel} [{y}]."),
        _t("grandchild.y0", "[{y}] helped {yp} {inv} [{x}] in the orchard.", heldout=True),
    ),
    "parent_sibling": (
        _t("parent_sibling.x0", "[{x}] stayed with {xp} {rel} [{y}] over the weekend."),
        _t("parent_sibling.y0", "[{y}] bought {yp} {inv} [{x}] a birthday present.", heldout=True),
    ),
    "sibling_child": (
        _t("sibling_child.x0", "[{x}] took {xp} {rel} [{y}] to the zoo."),
        _t("sibling_child.x1", "[{x}] babysat {xp} {rel} [{y}] on Friday night.", heldout=True),
    ),
    "parent_in_law": (
        _t("parent_in_law.x0", "[{x}] had dinner with {xp} {rel} [{y}] on Sunday."),
        _t("parent_in_law.y0", "[{y}] gets along well with {yp} {inv} [{x}].", heldout=True),
    ),
    "child_in_law": (
        _t("child_in_law.x0", "[{x}] welcomed {xp} {rel} [{y}] into the family."),
        _t("child_in_law.y0", "[{y}] fixed the roof for {yp} {inv} [{x}].", heldout=True),
    ),
}
#: x is referred to by he/she (the previous sentence names x as its only person of x's gender)
PRONOUN_TEMPLATES: tuple[Template, ...] = (
    _t("pron.0", "{XS} also has {a_rel}, [{y}]."),
    _t("pron.1", "{XS} often goes hiking with {xp} {rel} [{y}]."),
    _t("pron.2", "{XS} later phoned {xp} {rel} [{y}].", heldout=True),
)
#: two facts: a's r1 is b and b's r2 is c
PAIR_TEMPLATES: tuple[Template, ...] = (
    _t("pair.0", "[{a}] has {a_r1}, [{b}], whose {r2} is [{c}]."),
    _t("pair.1", "[{c}] is the {r2} of [{b}], who is the {r1} of [{a}]."),
    _t("pair.2", "[{a}] met {ap} {r1} [{b}] and [{b}]'s {r2} [{c}] at the fair.", heldout=True),
)
#: two facts, a's spouse is b and b's child is c, where c is the child of a too ("their son")
COUPLE_TEMPLATES: tuple[Template, ...] = (
    _t("couple.0", "[{a}] and {ap} {r1} [{b}] took their {r2} [{c}] fishing."),
    _t("couple.1", "[{a}] and {ap} {r1} [{b}] drove their {r2} [{c}] to school.", heldout=True),
)
PAIR_PROBABILITY = 0.25  # chance that two consecutive path edges are stated in one sentence
PRONOUN_PROBABILITY = 0.5  # chance that an eligible fact refers to its person by he/she


def all_templates() -> list[Template]:
    """Every template (each id once)."""
    kinds = [t for group in KIND_TEMPLATES.values() for t in group]
    return [*GENERIC_TEMPLATES, *kinds, *PRONOUN_TEMPLATES, *PAIR_TEMPLATES, *COUPLE_TEMPLATES]


@dataclass
class Sentence:
    """One sentence of a story and the facts it states (``(a, b)`` node pairs: "a's relation is b")."""

    text: str
    facts: list[tuple[int, int]]
    template: str  #: template id
    pronoun: int | None = None  #: the node referred to by he/she instead of its bracketed name
    mentions: list[int] = field(default_factory=list)  #: nodes named in [brackets]


def _article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _pool(templates: Sequence[Template], split: str, heldout_templates: bool) -> list[Template]:
    if not heldout_templates:
        return list(templates)
    return [t for t in templates if t.heldout == (split == "test")]


def _term(kind: str, gender: str) -> str:
    return _TERMS[kind][0 if gender == MALE else 1]


def write_story(
    names: Sequence[str],
    genders: Sequence[str],
    edges: Sequence[tuple[int, int, str]],
    rng: random.Random,
    split: str = "train",
    heldout_templates: bool = True,
    relation: Callable[[int, int], str | None] | None = None,
    pair_edges: Sequence[tuple[int, int, str]] | None = None,
) -> list[Sentence]:
    """Sentences stating every edge ``(x, y, rel)`` ("x's rel is y") once, in a seeded random order.

    ``names``/``genders`` are per node. ``pair_edges`` (default: all of ``edges``) is the chain whose
    consecutive edges may share a sentence; ``relation(a, c)`` gives the true relation between two nodes
    (the "their son" sentences need c to be the child of both a and b; without it they are not used).
    ``split`` ``'test'`` draws held-out templates only when ``heldout_templates``; ``'train'`` never does.
    """
    ps = {MALE: "his", FEMALE: "her"}
    subj = {MALE: "He", FEMALE: "She"}
    chain = list(edges if pair_edges is None else pair_edges)
    units: list[list[tuple[int, int, str]]] = []  # each: the facts of one sentence
    used: set[int] = set()
    index_of = {edge: i for i, edge in enumerate(edges)}
    i = 0
    while i < len(chain):
        if i + 1 < len(chain) and chain[i][1] == chain[i + 1][0] and rng.random() < PAIR_PROBABILITY:
            units.append([chain[i], chain[i + 1]])
            used.update((index_of[chain[i]], index_of[chain[i + 1]]))
            i += 2
        else:
            i += 1
    units += [[edge] for j, edge in enumerate(edges) if j not in used]
    rng.shuffle(units)

    def single(x: int, y: int, rel: str, pool: Sequence[Template], pronoun: bool) -> Sentence:
        kind = KIND_OF[rel]
        inv = _term(INVERSE_KIND[kind], genders[x])
        template = rng.choice(pool)
        text = template.text.format(
            x=names[x], y=names[y], xp=ps[genders[x]], yp=ps[genders[y]], rel=rel, inv=inv,
            a_rel=_article(rel), a_inv=_article(inv), XS=subj[genders[x]],
        )  # fmt: skip
        return Sentence(text, [(x, y)], template.id, x if pronoun else None, [y] if pronoun else [x, y])

    sentences: list[Sentence] = []
    for facts in units:
        if len(facts) == 2:
            (a, b, r1), (_, c, r2) = facts
            couple = (
                KIND_OF[r1] == "spouse" and KIND_OF[r2] == "child" and relation is not None and relation(a, c) == r2
            )
            pool = _pool(COUPLE_TEMPLATES if couple else PAIR_TEMPLATES, split, heldout_templates)
            template = rng.choice(pool)
            text = template.text.format(a=names[a], b=names[b], c=names[c], ap=ps[genders[a]], r1=r1, r2=r2,
                                        a_r1=_article(r1))  # fmt: skip
            sentences.append(Sentence(text, [(a, b), (b, c)], template.id, None, [a, b, c]))
            continue
        x, y, rel = facts[0]
        previous = sentences[-1] if sentences else None
        if previous is not None and previous.pronoun is None and rng.random() < PRONOUN_PROBABILITY:
            # he/she is unambiguous for a person the previous sentence names as its only one of that gender
            sides = ((x, y, rel), (y, x, _term(INVERSE_KIND[KIND_OF[rel]], genders[x])))
            chosen = [
                side for side in sides if [m for m in previous.mentions if genders[m] == genders[side[0]]] == [side[0]]
            ]
            if chosen:
                person, other, term = chosen[0]
                sentence = single(person, other, term, _pool(PRONOUN_TEMPLATES, split, heldout_templates), pronoun=True)
                sentence.facts = [(x, y)]
                sentences.append(sentence)
                continue
        kind = KIND_OF[rel]
        pool = _pool([*GENERIC_TEMPLATES, *KIND_TEMPLATES[kind]], split, heldout_templates)
        sentences.append(single(x, y, rel, pool, pronoun=False))
    return sentences


def _distractors(world: World, walk: list[int], expected: float, rng: random.Random) -> list[tuple[int, int, str]]:
    """0-2 true facts (story person, new person of the world, relation); ``expected`` on average."""
    facts: list[tuple[int, int, str]] = []
    taken = set(walk)
    for _ in range(2):
        if rng.random() >= expected / 2:
            continue
        options = [(s, t, r) for s in walk for t, r in world.relations[s].items() if t not in taken]
        if options:
            s, t, r = rng.choice(options)
            facts.append((s, t, r))
            taken.add(t)
    return facts


def _row(
    world: World,
    walk: list[int],
    types: list[str],
    target: str,
    k: int,
    split: str,
    uid: str,
    text_rng: random.Random,
    distractors: float = 1.0,
    heldout_templates: bool = True,
) -> dict:
    noise = _distractors(world, walk, distractors, text_rng)
    people = [*walk, *(t for _, t, _ in noise)]  # node i is people[i]; distractor people come last
    node = {person: i for i, person in enumerate(people)}
    names = [world.people[p].name for p in people]
    genders = [world.people[p].gender for p in people]
    typed = [(i, i + 1, types[i]) for i in range(len(types))]
    untyped = [(node[s], node[t], r) for s, t, r in noise]
    sentences = write_story(
        names,
        genders,
        [*typed, *untyped],
        text_rng,
        split=split,
        heldout_templates=heldout_templates,
        relation=lambda a, b: world.relations[people[a]].get(people[b]),
        pair_edges=typed,
    )
    return {
        "id": uid,
        "story": " ".join(sentence.text for sentence in sentences),
        "query": str((names[0], names[len(types)])),
        "target": target,
        "story_edges": str([(a, b) for a, b, _ in [*typed, *untyped]]),
        "edge_types": str(types),
        "query_edge": str((0, len(types))),
        "genders": ",".join(f"{name}:{gender}" for name, gender in zip(names, genders)),
        "f_comb": "-".join(types),
        "task_name": f"task_1.{k}",
        "task_split": split,
    }


COLUMNS = [
    "id",
    "story",
    "query",
    "target",
    "story_edges",
    "edge_types",
    "query_edge",
    "genders",
    "f_comb",
    "task_name",
    "task_split",
]


def generate_kinship(
    out_dir: str | Path,
    seed: int = 0,
    train_ks: tuple[int, ...] | list[int] = (2, 3),
    test_ks: tuple[int, ...] | list[int] = tuple(range(2, 11)),
    train_rows: int = 5000,
    test_rows: int = 100,
    num_worlds: int = 64,
    distractors: float = 1.0,
    heldout_templates: bool = True,
) -> Path:
    """Write a CLUTRR-like data set (same file names and columns as a CLUTRR release) to ``out_dir``.

    Train rows are spread evenly over ``train_ks``; each test k gets ``test_rows`` rows. The composition
    rules are those of the seed's worlds (also written to ``config.json``). Deterministic for a seed.
    ``distractors``: expected number (0 to 2) of distractor facts per story (untyped edges to new people);
    0 gives clean stories. ``heldout_templates``: test files are written with paraphrase templates that
    the training file never uses (``False``: both use every template). The story text has its own random
    stream, so the typed edges, queries and targets of a seed do not depend on these two arguments.
    """
    if not train_ks or not test_ks or min(*train_ks, *test_ks) < 1:
        raise ValueError(f"train_ks and test_ks must be non-empty lists of k >= 1, got {train_ks} and {test_ks}")
    if not 0.0 <= distractors <= 2.0:
        raise ValueError(f"distractors is the expected number of distractor facts per story, 0 to 2; got {distractors}")
    rng = random.Random(seed)
    text_rng = random.Random(f"laart_lab.kinship.text-{seed}")
    worlds = [World(rng) for _ in range(num_worlds)]
    rules = composition_rules(worlds)
    rules_by_result: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair, result in sorted(rules.items()):
        rules_by_result[result].append(pair)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def sample(k: int, n: int, split: str, tag: str) -> list[dict]:
        rows: list[dict] = []
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 200 * n + 1000:
                raise RuntimeError(f"could not generate {n} stories of length k={k}; use larger worlds or smaller k")
            world = rng.choice(worlds)
            made = _expand(world, rules_by_result, k, rng)
            if made is not None:
                walk, types, target = made
                uid = f"{tag}-{k}-{len(rows)}"
                rows.append(_row(world, walk, types, target, k, split, uid, text_rng, distractors, heldout_templates))
        return rows

    train_tasks = ",".join(f"1.{k}" for k in train_ks)
    per_k = [train_rows // len(train_ks) + (1 if i < train_rows % len(train_ks) else 0) for i in range(len(train_ks))]
    train = [row for k, n in zip(train_ks, per_k) for row in sample(k, n, "train", "train")]
    rng.shuffle(train)
    files = {f"{train_tasks}_train.csv": train}
    for k in test_ks:
        files[f"1.{k}_test.csv"] = sample(k, test_rows, "test", "test")
    for name, rows in files.items():
        with open(out / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    config = {
        "generator": "laart_lab.data.kinship (CLUTRR-like, not CLUTRR)",
        "seed": seed,
        "distractors": distractors,
        "heldout_templates": heldout_templates,
        "train_task": {train_tasks: f"{train_tasks}_train.csv"},
        "test_tasks": {f"1.{k}": f"1.{k}_test.csv" for k in test_ks},
        "rules": {f"{a}∘{b}": r for (a, b), r in sorted(rules.items())},
    }
    (out / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")
    return out
