"""Mandarin syllable → phone pair, the "opencpop-strict" convention of the official frontend.

pypinyin (strict mode) gives every syllable as an initial (`""` for y/w/zero-initial syllables) and a
final with a tone digit (`"iou3"`, `"uei4"`, `"v2"`, `"ing2"`...). The official frontend first spells
the syllable the usual way (`x` + `iou` → `xiu`, `""` + `ing` → `ying`, `""` + `van` → `yuan`) and
then looks that spelling up in a 429-entry table that gives the (initial, final) phone pair, the tone
digit going onto the final. This module generates that table from its rules instead of shipping it:

- consonant initials are kept; the final is written as spelled (`iu`, `ui`, `un`), except that after
  j/q/x/y a written `u` is ü and becomes `v` (`ju` → `j v`, `quan` → `q van`, `yue` → `y ve`); the
  table also accepts the `v` spellings (`jv`, `qvan`...) that pypinyin produces after j/q/x;
- the apical vowels: `zi/ci/si` → final `i0`, `zhi/chi/shi/ri` → final `ir`;
- y/w stay initials: `yi` → `y i`, `ya` → `y a`, `ye` → `y E`, `yan` → `y En`, `wu` → `w u`,
  `wo` → `w o`...;
- syllables without an initial get a pseudo-initial from their first letter: `a*` → `AA`, `e*`/`er`
  → `EE`, `o*` → `OO`.

The inventory below lists, per initial, the finals that form a syllable (spelled form).
"""

from __future__ import annotations

from functools import cache

# Spelled finals per initial ("" = syllables with no initial). Syllables written with y/w are listed
# under "y"/"w" with the part after the letter. Spelled forms of the apical vowels are "i".
_INVENTORY: dict[str, str] = {
    "": "a ai an ang ao e ei en eng er o ou",
    "b": "a ai an ang ao ei en eng i ian iao ie in ing o u",
    "p": "a ai an ang ao ei en eng i ian iao ie in ing o ou u",
    "m": "a ai an ang ao e ei en eng i ian iao ie in ing iu o ou u",
    "f": "a an ang ei en eng o ou u",
    "d": "a ai an ang ao e ei en eng i ia ian iao ie ing iu ong ou u uan ui un uo",
    "t": "a ai an ang ao e ei eng i ian iao ie ing ong ou u uan ui un uo",
    "n": "a ai an ang ao e ei en eng i ian iang iao ie in ing iu ong ou u uan un uo v ve",
    "l": "a ai an ang ao e ei eng i ia ian iang iao ie in ing iu o ong ou u uan un uo v ve",
    "g": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "k": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "h": "a ai an ang ao e ei en eng ong ou u ua uai uan uang ui un uo",
    "j": "i ia ian iang iao ie in ing iong iu u uan ue un",
    "q": "i ia ian iang iao ie in ing iong iu u uan ue un",
    "x": "i ia ian iang iao ie in ing iong iu u uan ue un",
    "zh": "a ai an ang ao e ei en eng i ong ou u ua uai uan uang ui un uo",
    "ch": "a ai an ang ao e en eng i ong ou u ua uai uan uang ui un uo",
    "sh": "a ai an ang ao e ei en eng i ou u ua uai uan uang ui un uo",
    "r": "an ang ao e en eng i ong ou u ua uan ui un uo",
    "z": "a ai an ang ao e ei en eng i ong ou u uan ui un uo",
    "c": "a ai an ang ao e ei en eng i ong ou u uan ui un uo",
    "s": "a ai an ang ao e en eng i ong ou u uan ui un uo",
    "y": "a an ang ao e i in ing o ong ou u uan ue un",
    "w": "a ai an ang ei en eng o u",
}

_UMLAUT_INITIALS = ("j", "q", "x", "y")
_APICAL = {"z": "i0", "c": "i0", "s": "i0", "zh": "ir", "ch": "ir", "sh": "ir", "r": "ir"}
_Y_SPECIAL = {"e": "E", "an": "En"}
_ZERO_INITIAL = {"a": "AA", "e": "EE", "o": "OO"}


def _phone_final(initial: str, spelled: str) -> str:
    """The final phone (without tone) of the spelled syllable initial+spelled."""
    if initial in _APICAL and spelled == "i":
        return _APICAL[initial]
    if initial == "y" and spelled in _Y_SPECIAL:
        return _Y_SPECIAL[spelled]
    if initial in _UMLAUT_INITIALS and spelled.startswith("u"):
        return "v" + spelled[1:]
    return spelled


@cache
def syllable_table() -> dict[str, tuple[str, str]]:
    """Spelled syllable (no tone) → (initial phone, final phone): the 429 opencpop-strict entries."""
    table: dict[str, tuple[str, str]] = {}
    for initial, finals in _INVENTORY.items():
        for spelled in finals.split():
            if initial == "":
                table[spelled] = (_ZERO_INITIAL[spelled[0]], spelled)
                continue
            final = _phone_final(initial, spelled)
            table[initial + spelled] = (initial, final)
            if initial in _UMLAUT_INITIALS and spelled.startswith("u"):
                table[initial + "v" + spelled[1:]] = (initial, final)  # jv, qvan, yve... spellings
    return table


# pypinyin strict finals → spelled finals after a consonant.
_CONTRACTED = {"uei": "ui", "iou": "iu", "uen": "un"}
# Whole strict finals that are spelled differently when the syllable has no initial.
_ZERO_WHOLE = {"ing": "ying", "i": "yi", "in": "yin", "u": "wu"}
# Otherwise the first letter of a zero-initial final is respelled.
_ZERO_FIRST = {"v": "yu", "i": "y", "u": "w"}


def spell(initial: str, final: str) -> str:
    """Spell a pypinyin strict (initial, toneless final) pair as the table keys do.

    ("x", "iou") → "xiu"; ("", "ing") → "ying"; ("", "van") → "yuan"; ("", "uo") → "wo";
    ("j", "v") → "jv"; ("", "er") → "er".
    """
    if initial:
        return initial + _CONTRACTED.get(final, final)
    if final in _ZERO_WHOLE:
        return _ZERO_WHOLE[final]
    if final and final[0] in _ZERO_FIRST:
        return _ZERO_FIRST[final[0]] + final[1:]
    return final


def syllable_phones(initial: str, final_with_tone: str) -> tuple[str, str] | None:
    """(initial, final+tone) from pypinyin → the two phones, or None if the syllable is not in the table.

    `final_with_tone` ends in a tone digit 1-5 (5 = neutral), e.g. ("x", "iou3") → ("x", "iu3"),
    ("", "er2") → ("EE", "er2"), ("zh", "i1") → ("zh", "ir1").
    """
    if len(final_with_tone) < 2 or final_with_tone[-1] not in "12345":
        return None
    tone = final_with_tone[-1]
    key = spell(initial, final_with_tone[:-1])
    entry = syllable_table().get(key)
    if entry is None:
        return None
    return entry[0], entry[1] + tone
