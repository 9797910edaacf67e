"""Sentiment of a customer message, scored offline with a support-domain lexicon, and its trend over a conversation."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A lexicon tuned to support conversations, scored like VADER (Hutto and Gilbert, 2014):
# word valences from -4 to +4, negation flips and damps, intensifiers and capitals
# amplify, "but" shifts the weight to what follows, exclamation marks add emphasis,
# and the sum is squashed into -1..1.
_LEXICON_TEXT = """
terrible -3 awful -3 horrible -3 worst -3.2 useless -2.5 rubbish -2.5 garbage -2.5 pathetic -3
disgrace -3 disgraceful -3 ridiculous -2.5 unacceptable -3 outrageous -3 appalling -3.2 furious -3.5
angry -3 livid -3.5 annoyed -2 annoying -2 frustrated -2.2 frustrating -2.2 disappointed -2
disappointing -2 unhappy -2 upset -2 hate -3 hated -3 hopeless -2.5 incompetent -3 rude -2.5 scam -3
broken -1.5 fail -1.5 failed -1.5 failing -1.5 failure -1.8 problem -1 problems -1 issue -0.7
issues -0.7 error -0.8 wrong -1.2 bad -2 poor -2 slow -1 late -1 delayed -1 missing -1 lost -1
damaged -1.5 faulty -1.5 defective -1.8 crash -1.5 crashes -1.5 crashed -1.5 stuck -1 worried -1.5
confused -1 confusing -1.2 nightmare -3 disaster -3 waste -2 wasted -2 unfortunately -1 sadly -1
sad -1.5 stupid -2.5 damn -2 bloody -1.5 crap -2.5 shit -3 shitty -3 fuck -3.5 fucking -3.5 wtf -3
ignored -2 ignoring -2 lied -3 lying -3 liar -3 liars -3 cheated -3 overcharged -2 unreliable -2
mess -2 sucks -3 dreadful -3 shocking -2.5 shocked -2 unbelievable -1.5 regret -2 complain -1.5
complaint -1.5 struggling -1.5 impossible -1.5 inconvenient -1.5 inconvenience -1.5 difficult -1
joke -1.5 fraud -2 hacked -2 freezing -1 disgusted -3 embarrassing -2 misleading -2.5 worse -2.2
thanks 1.5 thank 1.5 thx 1.5 ty 1.2 cheers 1.2 great 2.5 good 1.5 excellent 3 amazing 3 awesome 3
perfect 3 brilliant 3 fantastic 3 wonderful 3 love 3 loved 3 happy 2 pleased 2 glad 2 helpful 2
appreciate 2 appreciated 2 works 1 working 0.8 fixed 1.5 sorted 1.2 resolved 1.5 solved 1.5 nice 1.8
lovely 2.5 quick 1 fast 1 easy 1.5 smooth 1.2 recommend 1.5 satisfied 2 impressed 2.5 super 2 kind 1.5
ok 0.4 okay 0.4 fine 0.8 best 2 superb 3 delighted 3 grateful 2.5 legend 2.5 cool 1.3 yay 2
"""
LEXICON = {w: float(v) for w, v in zip(*[iter(_LEXICON_TEXT.split())] * 2)}
# Phrases are scored whole and their words skipped, so "fed up" is not read as "fed" + "up".
PHRASES = {
    "not working": -1.5, "doesn't work": -1.5, "does not work": -1.5, "didn't work": -1.5, "stopped working": -1.8,
    "still not working": -2, "still doesn't work": -2, "still does not work": -2, "still not": -1.2,
    "still waiting": -1.8, "still broken": -2, "waste of time": -2.5, "waste of money": -2.5,
    "fed up": -2.5, "sick of": -2.5, "sick and tired": -3, "had enough": -2.5, "ripped off": -3, "a joke": -2,
    "not happy": -2.2, "not good enough": -2.2, "let down": -2, "for ages": -1, "again and again": -1.5,
    "nobody cares": -2.5, "no one cares": -2.5, "no response": -1.5, "no reply": -1.5, "never again": -2.5,
    "thank you": 2, "many thanks": 2.2, "works now": 2, "working now": 2, "all good": 1.5, "no problem": 0.8,
    "no worries": 0.8, "well done": 2.2, "spot on": 2,
}
_PHRASE_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(PHRASES, key=len, reverse=True)) + r")\b")
NEGATIONS = {"not", "no", "never", "without", "hardly", "nothing", "nobody", "none", "neither", "nor", "cannot"}
BOOSTERS = {"very": 0.3, "really": 0.3, "so": 0.3, "extremely": 0.45, "totally": 0.35, "absolutely": 0.45,
            "completely": 0.4, "utterly": 0.45, "incredibly": 0.45, "super": 0.3, "too": 0.2, "most": 0.3}
DAMPERS = {"slightly": -0.3, "somewhat": -0.25, "bit": -0.3, "little": -0.25, "kinda": -0.3, "fairly": -0.2}
EMOJI = {":)": 1.5, ":-)": 1.5, ":D": 2, ":(": -1.5, ":-(": -1.5, "🙂": 1.5, "😊": 2, "😀": 2, "👍": 1.5,
         "❤️": 2.5, "😡": -3, "😠": -2.5, "🤬": -3.5, "👎": -2, "😞": -2, "😢": -2}
_TOKEN_RE = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
LEVELS = ("very_negative", "negative", "neutral", "positive", "very_positive")


@dataclass
class Sentiment:
    """A message's sentiment: a level from very_negative to very_positive and a score in -1..1."""

    level: str
    score: float


def sentiment_level(score: float) -> str:
    """The level of a score: cut at -0.6, -0.15, 0.15 and 0.6."""
    if score <= -0.6:
        return "very_negative"
    if score <= -0.15:
        return "negative"
    if score < 0.15:
        return "neutral"
    if score < 0.6:
        return "positive"
    return "very_positive"


def analyse_sentiment(text: str) -> Sentiment:
    """Score one message offline with the support-domain lexicon (see docs/triage.md)."""
    total = sum(v for e, v in EMOJI.items() if e in text)
    lowered = text.lower().replace("’", "'")
    for match in _PHRASE_RE.finditer(lowered):
        total += PHRASES[match.group(1)]
    lowered = _PHRASE_RE.sub(" ", lowered)
    original = [t for t in _TOKEN_RE.findall(text.replace("’", "'"))]
    shouting = sum(t.isupper() and len(t) > 1 for t in original) / max(1, len(original)) > 0.6
    tokens = _TOKEN_RE.findall(lowered)
    caps = {t.lower() for t in original if t.isupper() and len(t) > 1}
    # "but" moves the weight onto the clause after it.
    pivot = tokens.index("but") if "but" in tokens else -1
    for i, token in enumerate(tokens):
        valence = LEXICON.get(token)
        if valence is None:
            continue
        before = tokens[max(0, i - 3):i]
        scale = 1.0
        for j, word in enumerate(reversed(before[-2:])):
            if word in BOOSTERS:
                scale += BOOSTERS[word] * (1 if j == 0 else 0.8)
            elif word in DAMPERS:
                scale += DAMPERS[word]
        if (token in caps and not shouting) or shouting:
            scale += 0.3
        if any(w in NEGATIONS or w.endswith("n't") for w in before):
            scale *= -0.6
        if pivot >= 0:
            scale *= 0.5 if i < pivot else 1.5
        total += valence * scale
    bangs = min(text.count("!"), 4)
    if total and bangs:
        total += (0.3 if total > 0 else -0.3) * bangs
    score = total / (total * total + 15) ** 0.5
    return Sentiment(level=sentiment_level(score), score=float(score))


def sentiment_trend(scores: list[float], window: int = 4, change: float = 0.4) -> str:
    """Direction of the last `window` scores: the least-squares slope times the span, against `change`."""
    recent = scores[-window:]
    if len(recent) < 2:
        return "stable"
    n = len(recent)
    mean_x, mean_y = (n - 1) / 2, sum(recent) / n
    slope = sum((i - mean_x) * (s - mean_y) for i, s in enumerate(recent)) / sum((i - mean_x) ** 2 for i in range(n))
    delta = slope * (n - 1)
    if delta <= -change:
        return "deteriorating"
    if delta >= change:
        return "improving"
    return "stable"
