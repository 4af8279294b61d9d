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
* The output files have CLUTRR's names and columns (``<tasks>_train.csv``, ``1.<k>_test.csv``,
  ``config.json``; ``story``, ``query``, ``target``, ``story_edges``, ``edge_types``, ``query_edge``,
  ``genders``, ...). Unlike CLUTRR's test files, stories are simple paths (no back-and-forth edges).
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
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


def _row(world: World, walk: list[int], types: list[str], target: str, k: int, split: str, uid: str) -> dict:
    names = [world.people[i].name for i in walk]
    sentences = [f"[{names[i + 1]}] is the {types[i]} of [{names[i]}]." for i in range(len(types))]
    return {
        "id": uid,
        "story": " ".join(sentences),
        "query": str((names[0], names[-1])),
        "target": target,
        "story_edges": str([(i, i + 1) for i in range(len(types))]),
        "edge_types": str(types),
        "query_edge": str((0, len(types))),
        "genders": ",".join(f"{world.people[i].name}:{world.people[i].gender}" for i in walk),
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
) -> Path:
    """Write a CLUTRR-like data set (same file names and columns as a CLUTRR release) to ``out_dir``.

    Train rows are spread evenly over ``train_ks``; each test k gets ``test_rows`` rows. The composition
    rules are those of the seed's worlds (also written to ``config.json``). Deterministic for a seed.
    """
    if not train_ks or not test_ks or min(*train_ks, *test_ks) < 1:
        raise ValueError(f"train_ks and test_ks must be non-empty lists of k >= 1, got {train_ks} and {test_ks}")
    rng = random.Random(seed)
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
                rows.append(_row(world, walk, types, target, k, split, f"{tag}-{k}-{len(rows)}"))
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
        "train_task": {train_tasks: f"{train_tasks}_train.csv"},
        "test_tasks": {f"1.{k}": f"1.{k}_test.csv" for k in test_ks},
        "rules": {f"{a}∘{b}": r for (a, b), r in sorted(rules.items())},
    }
    (out / "config.json").write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")
    return out
