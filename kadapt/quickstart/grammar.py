"""A small seeded English-like grammar that emits dependency trees (UD conventions).

Used by :mod:`kadapt.quickstart.world` to build linguistic-infusion data (CoNLL-U) and a
downstream syntax task. Every generated string has exactly one tree under the rules below,
so head prediction is learnable from the surface alone:

* ``S -> NP VP [and (VP | S)] .`` — VP coordination (second verb ``conj`` of the first, shares
  the subject) or clause coordination (second clause has its own subject).
* ``NP -> PROPN | DET ADJ* NOUN [PP_noun | relative clause] [and NP]`` — a noun-attaching PP
  (``of``/``with``/``without``) is ``nmod`` of the nearest preceding noun; an NP carries a PP
  *or* a relative clause, never both, and only a bare NP is coordinated, so no attachment is
  ambiguous.
* ``VP -> VERB_tr NP | VERB_in`` followed by verb-attaching PPs (``near``, ``under``, ...: ``obl``
  of the nearest preceding verb) and an optional adverb (``advmod``).
* Relative clauses: subject-relative ``that VERB NP`` (``that`` = ``nsubj``) or object-relative
  ``that NP VERB`` (``that`` = ``obj``); the clause verb is ``acl:relcl`` of the noun.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

DETERMINERS = ("the", "a", "every", "some", "this", "my")
ADJECTIVES = ("small", "red", "old", "happy", "quiet", "bright", "green", "tall", "young",
              "strange", "heavy", "clever")
NOUNS = ("dog", "cat", "bird", "farmer", "teacher", "river", "garden", "house", "table", "book",
         "letter", "boat", "king", "child", "horse", "window", "apple", "road", "singer", "lamp")
TRANSITIVE = (("saw", "see"), ("chased", "chase"), ("found", "find"), ("liked", "like"),
              ("painted", "paint"), ("followed", "follow"), ("visited", "visit"),
              ("carried", "carry"), ("watched", "watch"), ("helped", "help"))
INTRANSITIVE = (("slept", "sleep"), ("laughed", "laugh"), ("ran", "run"), ("waited", "wait"),
                ("arrived", "arrive"), ("smiled", "smile"))
NOUN_PREPS = ("of", "with", "without")
VERB_PREPS = ("near", "under", "behind", "after", "before", "during")
RELATIVE_PRONOUNS = ("that", "which")
ADVERBS = ("quickly", "yesterday", "often", "slowly", "again")
CLAUSE_CONJUNCTIONS = ("and", "but")
NP_CONJUNCTIONS = ("and", "or")

#: Every lowercase word form the grammar can emit (proper nouns excluded).
VOCABULARY: frozenset[str] = frozenset(
    DETERMINERS + ADJECTIVES + NOUNS + tuple(f for f, _ in TRANSITIVE + INTRANSITIVE)
    + NOUN_PREPS + VERB_PREPS + RELATIVE_PRONOUNS + ADVERBS + CLAUSE_CONJUNCTIONS + NP_CONJUNCTIONS
    + ("an", "."))


@dataclass
class Token:
    """One syntactic word of a generated sentence (1-based ``head``; 0 = root)."""

    form: str
    lemma: str
    upos: str
    head: int = -1
    deprel: str = ""


@dataclass
class Tree:
    """A generated sentence: its tokens in order, heads filled in."""

    tokens: list[Token] = field(default_factory=list)

    def add(self, form: str, upos: str, lemma: str | None = None) -> int:
        """Append a token and return its 1-based index."""
        self.tokens.append(Token(form, lemma if lemma is not None else form.lower(), upos))
        return len(self.tokens)

    def attach(self, dep: int, head: int, deprel: str) -> None:
        """Make token ``dep`` depend on ``head`` (both 1-based; head 0 = root)."""
        tok = self.tokens[dep - 1]
        tok.head, tok.deprel = head, deprel

    @property
    def words(self) -> list[str]:
        """The word forms, in order."""
        return [t.form for t in self.tokens]

    @property
    def text(self) -> str:
        """The sentence as space-separated words (punctuation is its own word)."""
        return " ".join(self.words)


@dataclass(frozen=True)
class GrammarConfig:
    """Probabilities and limits of the generator (defaults give 4-22 words, mean ~10)."""

    p_proper_noun: float = 0.2
    p_adjective: float = 0.35
    p_noun_pp: float = 0.2
    p_relative: float = 0.2
    p_np_coordination: float = 0.08
    p_transitive: float = 0.65
    p_verb_pp: float = 0.35
    p_adverb: float = 0.2
    p_vp_coordination: float = 0.1
    p_clause_coordination: float = 0.1
    min_words: int = 4
    max_words: int = 22


class SentenceGenerator:
    """Draws dependency trees from the grammar with a private :class:`random.Random`."""

    def __init__(self, rng: random.Random, proper_nouns: list[str],
                 config: GrammarConfig | None = None) -> None:
        if not proper_nouns:
            raise ValueError("SentenceGenerator needs at least one proper noun")
        self.rng = rng
        self.proper_nouns = list(proper_nouns)
        self.cfg = config or GrammarConfig()

    def sentence(self) -> Tree:
        """Return one tree whose length lies in ``[min_words, max_words]``."""
        while True:
            tree = Tree()
            root = self._clause(tree, allow_coordination=True)
            tree.attach(root, 0, "root")
            tree.attach(tree.add(".", "PUNCT"), root, "punct")
            if self.cfg.min_words <= len(tree.tokens) <= self.cfg.max_words:
                first = tree.tokens[0]
                if first.upos != "PROPN":
                    first.form = first.form.capitalize()
                return tree

    # -- clauses ---------------------------------------------------------------------------
    def _clause(self, tree: Tree, allow_coordination: bool) -> int:
        """Subject + predicate; returns the verb index (the caller attaches it).

        A second, coordinated clause gets an uncoordinated subject: "saw the cat and the bird
        and the dog slept" would otherwise have two trees.
        """
        subj = self._np(tree, depth=0, allow_coordination=allow_coordination)
        verb = self._predicate(tree, depth=0)
        tree.attach(subj, verb, "nsubj")
        if allow_coordination:
            roll = self.rng.random()
            if roll < self.cfg.p_vp_coordination:
                cc = tree.add(self.rng.choice(CLAUSE_CONJUNCTIONS), "CCONJ")
                verb2 = self._predicate(tree, depth=0)
                tree.attach(cc, verb2, "cc")
                tree.attach(verb2, verb, "conj")
            elif roll < self.cfg.p_vp_coordination + self.cfg.p_clause_coordination:
                cc = tree.add(self.rng.choice(CLAUSE_CONJUNCTIONS), "CCONJ")
                verb2 = self._clause(tree, allow_coordination=False)
                tree.attach(cc, verb2, "cc")
                tree.attach(verb2, verb, "conj")
        return verb

    def _predicate(self, tree: Tree, depth: int) -> int:
        """Verb [object] [verb PPs] [adverb]; returns the verb index."""
        rng, cfg = self.rng, self.cfg
        if rng.random() < cfg.p_transitive:
            form, lemma = rng.choice(TRANSITIVE)
            verb = tree.add(form, "VERB", lemma)
            obj = self._np(tree, depth=depth)
            tree.attach(obj, verb, "obj")
            if any(t.head == obj and t.deprel == "acl:relcl" for t in tree.tokens):
                # "saw the cat that chased the bird near the river": a PP here could
                # belong to either verb, so an object with a relative clause ends the VP.
                return verb
        else:
            form, lemma = rng.choice(INTRANSITIVE)
            verb = tree.add(form, "VERB", lemma)
        self._verb_pps(tree, verb, depth)
        if depth == 0 and rng.random() < cfg.p_adverb:
            tree.attach(tree.add(rng.choice(ADVERBS), "ADV"), verb, "advmod")
        return verb

    def _verb_pps(self, tree: Tree, verb: int, depth: int) -> None:
        for _ in range(2 if depth == 0 else 1):
            if self.rng.random() >= self.cfg.p_verb_pp:
                break
            tree.attach(self._pp(tree, VERB_PREPS, depth + 1), verb, "obl")

    # -- noun phrases ----------------------------------------------------------------------
    def _np(self, tree: Tree, depth: int, allow_coordination: bool = True) -> int:
        """A noun phrase; returns its head noun index (the caller attaches it)."""
        rng, cfg = self.rng, self.cfg
        if rng.random() < cfg.p_proper_noun:
            head = tree.add(rng.choice(self.proper_nouns), "PROPN", None)
            tree.tokens[head - 1].lemma = tree.tokens[head - 1].form
            bare = True
        else:
            det = tree.add(rng.choice(DETERMINERS), "DET")
            n_adj = 0
            while n_adj < 2 and rng.random() < cfg.p_adjective:
                n_adj += 1
            adjectives = [tree.add(a, "ADJ") for a in rng.sample(ADJECTIVES, n_adj)]
            head = tree.add(rng.choice(NOUNS), "NOUN")
            tree.attach(det, head, "det")
            if tree.tokens[det - 1].form == "a" and tree.tokens[det].form[0] in "aeiou":
                tree.tokens[det - 1].form = "an"
            for adj in adjectives:
                tree.attach(adj, head, "amod")
            bare = True
            roll = rng.random()
            if depth < 2 and roll < cfg.p_noun_pp:
                tree.attach(self._pp(tree, NOUN_PREPS, depth + 1), head, "nmod")
                bare = False
            elif depth == 0 and roll < cfg.p_noun_pp + cfg.p_relative:
                tree.attach(self._relative(tree, depth + 1), head, "acl:relcl")
                bare = False
        if bare and allow_coordination and depth == 0 and rng.random() < cfg.p_np_coordination:
            cc = tree.add(rng.choice(NP_CONJUNCTIONS), "CCONJ")
            second = self._np(tree, depth + 1, allow_coordination=False)
            tree.attach(cc, second, "cc")
            tree.attach(second, head, "conj")
        return head

    def _pp(self, tree: Tree, prepositions: tuple[str, ...], depth: int) -> int:
        """Preposition + NP; returns the noun (UD: the ADP is a ``case`` dependent)."""
        prep = tree.add(self.rng.choice(prepositions), "ADP")
        noun = self._np(tree, depth, allow_coordination=False)
        tree.attach(prep, noun, "case")
        return noun

    def _relative(self, tree: Tree, depth: int) -> int:
        """A relative clause; returns its verb (the caller attaches it as ``acl:relcl``)."""
        rng = self.rng
        pron = tree.add(rng.choice(RELATIVE_PRONOUNS), "PRON")
        if rng.random() < 0.5:  # subject relative: "that chased the cat"
            verb = self._predicate(tree, depth)
            tree.attach(pron, verb, "nsubj")
        else:  # object relative: "that the cat chased"
            subj = self._np(tree, depth, allow_coordination=False)
            form, lemma = rng.choice(TRANSITIVE)
            verb = tree.add(form, "VERB", lemma)
            tree.attach(subj, verb, "nsubj")
            tree.attach(pron, verb, "obj")
        return verb


def to_conllu(tree: Tree, sent_id: str) -> str:
    """Render a tree as one CoNLL-U block (comment lines, 10 columns, trailing blank line)."""
    lines = [f"# sent_id = {sent_id}", f"# text = {tree.text}"]
    for i, tok in enumerate(tree.tokens, start=1):
        lines.append("\t".join((str(i), tok.form, tok.lemma, tok.upos, "_", "_",
                                str(tok.head), tok.deprel, "_", "_")))
    return "\n".join(lines) + "\n\n"


def check_tree(heads: list[int]) -> str | None:
    """Return why ``heads`` (1-based, 0 = root) is not a single rooted tree, or None if it is."""
    n = len(heads)
    if sum(1 for h in heads if h == 0) != 1:
        return "not exactly one root"
    for i, h in enumerate(heads, start=1):
        if not 0 <= h <= n or h == i:
            return f"bad head {h} for word {i}"
    for i in range(1, n + 1):
        seen, node = set(), i
        while node != 0:
            if node in seen:
                return f"cycle through word {i}"
            seen.add(node)
            node = heads[node - 1]
    return None
