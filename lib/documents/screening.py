"""Prompt-injection screening of document text: normalise, decode what hides, then look for instructions aimed
at the model (override phrasings in eight languages, chat role markers, exfiltration, persona switches).

A flagged chunk is still indexed; answers show its passage as "treat as data". Every pattern is bounded (no
nested or unbounded repeats over the same characters), so screening stays linear on hostile input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import sys
import unicodedata

MAX_DECODED_RUNS = 16  # base64 runs decoded per text, each at most 8,192 characters
_HIDDEN_RUN = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]{3,}")  # text hidden between invisible characters
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{24,8192}={0,2}")
_FOLDS = {"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}
_SPACES = re.compile(r"[ \t\r\f\v]{1,64}")  # runs of spaces become one (longer runs are cut in pieces, also one each)


@functools.cache
def _translation() -> dict[int, str | None]:
    """Format characters (zero-width, bidi) and combining marks dropped; look-alike letters mapped to ASCII.

    Built on first use from Unicode's confusables table (PyPI confusable-homoglyphs) and the character database.
    """
    from confusable_homoglyphs.confusables import confusables_data  # loads its JSON: only when first needed

    table: dict[int, str | None] = {}
    for char, glyphs in confusables_data.items():
        if len(char) == 1 and not char.isascii():
            ascii_glyph = next((g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii()), None)
            if ascii_glyph is not None and ascii_glyph.isalnum():
                table[ord(char)] = ascii_glyph
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category == "Cf" or category == "Mn":
            table[code] = None
    table.update({ord(k): v for k, v in _FOLDS.items()})
    table.update({ord(k.upper()): v for k, v in _FOLDS.items() if len(k.upper()) == 1 and k.upper() != k})
    return table


def normalise(text: str) -> str:
    """Text as the screen reads it: NFKC, no format characters or accents, look-alikes as ASCII, lower case,
    single spaces (line breaks kept, so a role marker still starts a line)."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text)).translate(_translation())
    return _SPACES.sub(" ", text.casefold())


def decoded_runs(text: str) -> list[str]:
    """Readable text hidden in base64 runs of `text` (at most MAX_DECODED_RUNS, each bounded)."""
    found: list[str] = []
    for match in _BASE64.finditer(text):
        if len(found) >= MAX_DECODED_RUNS:
            break
        run = match.group()
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars=b"-_" if "-" in run or "_" in run else None)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded and sum(c.isprintable() or c.isspace() for c in decoded) / len(decoded) > 0.9:
            found.append(decoded)
    return found


# Override phrasings: a verb of ignoring, a scope (previous, above, all, your, system) and an object (instructions,
# rules, prompt) in one clause, in any order: "ignore all previous instructions", "the instructions above are to
# be disregarded", "vergiss alle vorherigen Anweisungen", "ignorez les instructions précédentes". Stems are the
# normalised spellings (no accents, lower case); each word ends after at most 15 more letters.
_VERBS = (
    # en
    r"ignor(?:e|ing|ed)\b|disregard|forget|forgot|overrid(?:e|ing|den)\b|overrule|bypass|neglect|discard|abandon"
    r"|set aside|pay no attention|do not (?:follow|obey)|don'?t (?:follow|obey)|stop (?:following|obeying)"
    r"|no longer (?:follow|obey)|nullif|void\b|"
    # de
    r"ignorier|vergiss|vergesst|vergessen|missacht|uberschreib|ausser acht|hinwegsetz|verwirf|verwerfen"
    r"|nicht (?:mehr )?befolg|befolge nicht|"
    # fr
    r"ignor(?:ez|er|es)\b|oubli|ne tiens pas compte|ne tenez pas compte|sans tenir compte|fais abstraction"
    r"|faites abstraction|ne suis plus|ne suivez plus|ne suivez pas|"
    # es, it, pt
    r"ignora|olvid|haz caso omiso|hagan caso omiso|no hagas caso|no sigas|omite|descart|dimentic|non seguire"
    r"|non tenere conto|trascura|esquec|desconsider|nao sigas?\b|despreze|"
    # nl
    r"negeer|negeren|vergeet|niet (?:meer )?volgen|volg niet|houd geen rekening|"
    # pl
    r"zignoruj|ignoruj|zapomnij|nie stosuj|nie przestrzegaj|pomin"
)
_SCOPES = (
    r"previous|prior\b|above|earlier|preceding|foregoing|former|original|initial|all\b|any\b|every|your\b|system"
    r"|hidden|developer|so far|before\b|"
    r"vorherig|vorige|bisherig|obig|vorangegangen|vorangehend|fruher|alle\b|alles|deine|ihre|ursprunglich|zuvor"
    r"|vorher|"
    r"precedent|ci-dessus|ci dessus|anterieur|toutes|tous\b|tes\b|vos\b|systeme|initiales|plus haut|"
    r"anterior|previa|previo|todas|todos|tus\b|sus\b|sistema|de arriba|iniciales|"
    r"tutte|tutti|tue\b|sopra|iniziali|"
    r"eerdere|bovenstaande|voorgaande|oorspronkelijke|jouw|systeem|"
    r"acima|iniciais|tuas|suas|"
    r"poprzedni|wczesniejsz|wszystki|powyzsz|twoje|systemow|dotychczasow"
)
_OBJECTS = (
    r"instruction|prompt|rules\b|rule\b|directions\b|directive|guideline|guardrail|constraint|programming"
    r"|system message|commands\b|"
    r"anweisung|instruktion|befehl|regeln|vorgabe|richtlinie|anordnung|"
    r"consigne|regles|directives|"
    r"instruccion|indicacion|reglas|directriz|directrices|ordenes|comando|"
    r"istruzion|regole|direttiv|indicazion|comandi|"
    r"instructie|opdracht|regels|richtlijn|aanwijzing|"
    r"instruc|regras|diretriz|"
    r"instrukcj|polecen|regul|zasad|wytyczn|komend"
)
_NEGATIONS = r"not|never|n't|nicht|nie\b|niemals|ne\b|n'|pas\b|no\b|non\b|nao\b|niet\b|nunca|mai\b|jamais"
_WORDS = re.compile(
    rf"(?P<stop>[.;!?,\n])|\b(?:(?P<verb>{_VERBS})|(?P<neg>{_NEGATIONS})|(?P<scope>{_SCOPES})|(?P<object>{_OBJECTS}))"
    r"[a-z]{0,15}"
)
_PAIR_GAP = 40  # scope and object belong together: "previous instructions", "instructions précédentes"
_CLAUSE = 110  # a verb this close to the pair, with no comma or full stop between
_NEGATED = 14  # "do not ignore", "never disregard": a warning, not an injection


def _overrides(text: str) -> bool:
    verb = scope = obj = neg = -(10**9)
    for m in _WORDS.finditer(text):
        kind, at = m.lastgroup, m.start()
        if kind == "stop":
            verb = scope = obj = -(10**9)
            continue
        if kind == "neg":
            neg = m.end()
            continue
        if kind == "verb":
            if at - neg <= _NEGATED:
                continue
            verb = at
        elif kind == "scope":
            scope = at
        else:
            obj = at
        if abs(scope - obj) <= _PAIR_GAP and max(verb, scope, obj) - min(verb, scope, obj) <= _CLAUSE:
            return True
    return False


_ROLE_MARKERS = re.compile(
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id)\|?>"
    r"|\[/?inst\]|<<\s{0,3}/?sys\s{0,3}>>|</?(?:system|assistant)>|\[(?:system|assistant)\]"
    r"|(?:^|\n)[ ]{0,8}#{1,6}[ ]{0,4}(?:system|assistant|developer|instructions?)(?:[ ]{0,4}(?:prompt|message))?"
    r"[ ]{0,4}:?[ ]{0,4}(?:\n|$)"
    r"|(?:^|\n)[ ]{0,8}#{1,6}[ ]{0,4}(?:system|assistant|developer)[ ]{0,4}:"
    r"|(?:^|\n)[ ]{0,8}assistant[ ]{0,4}:"
    r"|(?:^|\n)[ ]{0,8}system(?:[ ]{0,4}(?:prompt|message|override|note))?[ ]{0,4}:[ ]{0,4}(?:\[[^\]\n]{0,40}\][ ]?)?"
    r"(?:you|your|ignore|from now|new|the (?:assistant|ai|model)|act|respond|answer|always|never|do not|disregard"
    r"|forget|override|reveal|print|output)"
)
_EXFILTRATION = re.compile(
    # a markdown image whose query carries data (a key such as q= or d=, or a {placeholder}); ?v=3 is a version
    r"!\[[^\]\n]{0,200}\]\([ ]{0,4}(?:https?:)?//[^)\s?]{1,400}\?(?:(?:[^)\s]{0,200}?&)?"
    r"(?:q|d|data|msg|message|text|conv|conversation|chat|history|secret|token|key|prompt|content|info|u|user|log)="
    r"|[^)\s]{0,200}?(?:\{|%7b|<))"
    r"|\b(?:send|post|forward|transmit|upload|exfiltrate|leak)\b[^\n]{0,60}?\bto (?:this|the following|my|our)"
    r" (?:url|endpoint|webhook|server|address|link)"
    r"|\b(?:reveal|print|output|repeat|show|leak|disclose|display|tell me|give me|write out|verrate|zeige|gib"
    r"|revele|affiche|muestra|revela|mostra|rivela|toon|onthul|pokaz|ujawnij)\b[^\n]{0,40}?"
    r"\b(?:system ?prompt|your (?:instructions|prompt|rules|guidelines)|hidden (?:instructions|prompt)"
    r"|initial (?:instructions|prompt)|systemprompt|prompt (?:systeme|del sistema|di sistema|do sistema))"
)
# "Render an image whose URL carries the conversation": a verb of showing and an image or link word (one bounded
# gap), then what would leak within the next 120 characters (checked on the slice, so no second gap to backtrack).
_RENDER = re.compile(
    r"\b(?:render|insert|include|add|embed|output|display|show|print|append|write|put|place|respond with|reply with"
    r"|end (?:your|each|every) (?:answer|reply|response) with|fuge|einfugen|insere|inserez|ajoute|inserta|incluye"
    r"|inserisci|includi|voeg|insira|wstaw)\b[^\n]{0,60}?"
    r"\b(?:image|img|picture|pixel|markdown link|hyperlink|link|url|bild|imagen|immagine|afbeelding|imagem|obraz)"
)
_LEAKED = re.compile(
    r"https?://|\bdata\b|conversation|chat history|secret|password|api key|token|the user'?s|query"
    r"|parameter|\?[a-z_]{1,20}=|daten|donnees|datos|dati|gegevens|dados|dane|historique|verlauf|historial"
)


# "Send the conversation to https://…": what is sent must be something to leak ("upload your receipts to the
# portal at https://…" is an ordinary instruction), checked on the match (one bounded gap in the pattern).
_SEND = re.compile(
    r"\b(?:send|post|forward|transmit|upload|exfiltrate|leak|submit|email|e-mail|sende|schicke|envoie|envoyez|envia"
    r"|invia|stuur|wyslij)\b[^\n]{0,100}?https?://"
)
_SENT = re.compile(
    r"conversation|chat|history|context|documents|\bdata\b|summary|question|answers|everything|password|secret"
    r"|api key|token|the user'?s|e-?mail address|retrieved|salar|gesprach|verlauf|historique|historial|cronologia"
)


def _renders_leak(text: str) -> bool:
    if any(_SENT.search(m.group()) for m in _SEND.finditer(text)):
        return True
    return any(_LEAKED.search(text, m.end(), m.end() + 120) for m in _RENDER.finditer(text))


_PERSONA = re.compile(
    r"\byou are now (?:an? |the |my )?(?:ai|assistant|model|chatbot|bot|dan|unrestricted|unfiltered|jailbroken"
    r"|free\b|no longer|in (?:developer|god|dan|unrestricted) mode|evil|a pirate|pirate|acting|named|called)"
    r"|\bfrom now on,? (?:you|your|act|respond|answer|always|ignore|only)"
    r"|\bnew (?:system )?(?:instructions|rules|prompt|directive)s?[ ]{0,3}:"
    r"|\bdo not (?:tell|inform|mention|reveal (?:this )?to|alert|let) (?:this )?(?:to )?the user"
    r"|\bdon'?t (?:tell|inform|mention to|alert|let) the user"
    r"|\b(?:developer|dan|god|jailbreak|unrestricted) mode\b"
    r"|\bact as (?:an? |the )?(?:unrestricted|unfiltered|jailbroken|uncensored|evil|dan\b)"
    r"|\bpretend (?:to be|you are|that you are) (?:an? )?(?:unrestricted|unfiltered|different|evil|dan\b|my )"
    r"|\b(?:ab jetzt|von nun an) (?:bist du|du bist|antworte|ignoriere|gibst du)"
    r"|\b(?:a partir de maintenant|desormais),? (?:tu es|vous etes|reponds|repondez|ignore)"
    r"|\b(?:a partir de ahora|desde ahora),? (?:eres|eres un|responde|ignora)"
    r"|\b(?:d'ora in poi|da ora in poi|da adesso),? (?:sei|rispondi|ignora)"
    r"|\b(?:vanaf nu|van nu af aan),? (?:ben je|jij bent|antwoord|negeer)"
    r"|\b(?:a partir de agora|de agora em diante),? (?:voce e|es|responda|ignore)"
    r"|\bod teraz (?:jestes|odpowiadaj|ignoruj)"
    r"|\b(?:neue anweisungen|nouvelles instructions|nuevas instrucciones|nuove istruzioni|nieuwe instructies"
    r"|novas instrucoes|nowe instrukcje)[ ]{0,3}:"
)
_FORGET_ALL = re.compile(
    r"\b(?:forget|ignore|disregard|vergiss|ignoriere|oublie|oubliez|ignorez|olvida|olvide|ignora|dimentica"
    r"|vergeet|negeer|esqueca|esquece|zapomnij|zignoruj)\b[ ]{0,3}(?:about )?"
    r"(?:everything|all of (?:the|that)|all that|anything|what|whatever|alles|was|tout|ce qu|todo|lo que|tutto|quello"
    r"|tudo|o que|wszystko|o wszystkim)"
    r"[^\n.;!?]{0,40}?\b(?:above|before|earlier|previously|so far|you (?:were|have been) told|that came before"
    r"|oben|vorher|bisher|zuvor|gesagt|precede|dit|avant|anterior|antes|dicho|prima|detto|hiervoor|eerder|gezegd"
    r"|acima|dito|wczesniej|powiedziano)"
)
# Verb-final negation: "volg de voorgaande instructies niet meer", "befolge die obigen Anweisungen nicht mehr".
_NO_LONGER = re.compile(
    r"\b(?:volg|befolge|befolgt|folge|suivez|suis|sigue|segui|siga|follow)\b[^\n.;!?]{0,60}?"
    r"\b(?:instructies|regels|anweisungen|regeln|instructions|consignes|instrucciones|reglas|istruzioni|regole"
    r"|instrucoes|regras|instrukcji)\b[^\n.;!?]{0,20}?\b(?:niet meer|nicht mehr|plus|nicht|niet)\b"
)
PATTERNS: dict[str, re.Pattern[str]] = {
    "override": _WORDS,
    "role marker": _ROLE_MARKERS,
    "exfiltration": _EXFILTRATION,
    "render": _RENDER,
    "send": _SEND,
    "sent": _SENT,
    "leaked": _LEAKED,
    "persona": _PERSONA,
    "forget everything": _FORGET_ALL,
    "no longer follow": _NO_LONGER,
    "hidden text": _HIDDEN_RUN,
    "base64": _BASE64,
    "spaces": _SPACES,
}


def injection_reasons(text: str) -> list[str]:
    """Why `text` looks like a prompt injection (empty when it does not): the kinds of pattern found."""
    reasons = ["hidden text"] if _HIDDEN_RUN.search(text) else []
    for depth, raw in enumerate([text, *decoded_runs(text)]):
        seen = normalise(raw)
        where = " (base64)" if depth else ""
        if _overrides(seen):
            reasons.append("override" + where)
        if _renders_leak(seen):
            reasons.append("exfiltration" + where)
        for name, pattern in (
            ("role marker", _ROLE_MARKERS),
            ("exfiltration", _EXFILTRATION),
            ("persona", _PERSONA),
            ("forget everything", _FORGET_ALL),
            ("override", _NO_LONGER),
        ):
            if pattern.search(seen):
                reasons.append(name + where)
        if reasons:
            break
    return reasons


def looks_like_injection(text: str) -> bool:
    """True when text carries a prompt-injection pattern (instructions aimed at the model, role markers)."""
    return bool(injection_reasons(text))
