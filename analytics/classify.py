"""Task-type classification of a chat-completions request: a fast, deterministic, rule-based scorer.

Every logged request gets one of TASK_TYPES so that costs can be broken down by what the request was for.
This runs on the logging path for every request, so it is pure Python, CPU-only, no network, no model,
and cheap: typically well under 200 µs per request.

Approach
--------
1. **What is read.** The system/developer prompts, the last user message and the one before it — text
   parts only, each cut to its first 4,000 characters — plus the request's structure: ``tools`` /
   ``functions``, ``tool_choice``, tool-call and tool-result messages, ``response_format`` (and the
   property names, enums and types of a JSON schema), image parts, the number of turns, and the
   ``completion_tokens`` of the answer when known. Nothing else of the conversation is scanned.
2. **Zones.** A long user message is mostly pasted material (an article, code, a transcript); the
   instruction sits at its start or its end. So keyword cues are matched in the *instruction zone*: the
   whole message when short, else its first paragraph (≤ 450 chars) and its last paragraph (≤ 300 chars).
   Zones are weighted: last user message 1.0, system prompt 0.8, previous user message 0.35.
3. **Cues.** Each task type has a table of weighted cues — words and 2-4 word phrases matched on a
   lower-cased token stream through dict lookups (no per-cue regex, hence the speed), substrings for
   scripts without word boundaries (CJK), and opening words (greetings, wh-words in several languages).
   Each cue counts once per message. Cues cover English plus the common European languages, with a few
   CJK / Russian / Arabic ones for translation and summarisation.
4. **Structural evidence** is added on top: code in the prompt (fences, code-looking lines, stack
   traces), arithmetic, question marks, tools and tool traffic, forced function calls (a forced call to
   ``extract_*`` / ``record_*`` is structured extraction, to ``classify_*`` is classification), JSON
   schemas (an enum/boolean "label"-like field → classification; many typed fields to fill →
   extraction), image inputs, short casual turns in a multi-turn conversation, and a small answer
   (``completion_tokens``) after a classification-like prompt.
5. **Decision.** The highest score wins; ties go to the earlier entry of TASK_TYPES. A best score below
   ``MIN_SCORE`` (nothing recognisable), or an empty / punctuation-only message, gives ``"other"``.

The weights were tuned on the ``dev`` split of ``tests/data/task_prompts.jsonl`` only; the ``test`` split
is held out and measured by ``tests/analytics/test_classifier.py``.
"""

from __future__ import annotations

import re

TASK_TYPES = (
    "chat",
    "question_answering",
    "summarization",
    "classification",
    "extraction",
    "code_generation",
    "translation",
    "rewriting",
    "creative_writing",
    "reasoning",
    "tool_use",
    "other",
)
_TASK_SET = frozenset(TASK_TYPES)

MAX_CHARS = 4000  # of each message looked at
HEAD_CHARS = 450  # instruction zone of a long message: its first paragraph, at most this long ...
TAIL_CHARS = 300  # ... and its last paragraph, at most this long
SHORT_MESSAGE = HEAD_CHARS + TAIL_CHARS  # a message this short is all instruction
MATERIAL = 0.35  # weight of cues in pasted material, relative to an instruction
MIN_SCORE = 1.5  # below this nothing was recognised: "other"

W_USER, W_SYSTEM, W_PREVIOUS = 1.0, 0.8, 0.35


def normalise_task(value: str) -> str | None:
    """A client-supplied task name (``x-neurometric-task``) as one of TASK_TYPES, or None if unknown."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    return key if key in _TASK_SET else None


# ------------------------------------------------------------------------------------------- cue tables
# One line per weight: "weight: cue | cue | ...", a cue being one phrase or several spellings of the same
# thing joined by "/" (counted once, whichever matches). Phrases are tokenised like the text (so "tl;dr"
# is "tl dr" and "what's" is "what s"); up to four tokens.

_LANGS = (
    "english french german spanish italian portuguese japanese chinese mandarin cantonese korean russian "
    "arabic dutch polish turkish hindi swedish norwegian danish finnish greek hebrew czech ukrainian "
    "vietnamese thai indonesian romanian hungarian brazilian catalan"
).split()
_NATIVE_LANGS = (
    "français francais anglais allemand espagnol italien portugais japonais chinois deutsch englisch "
    "französisch spanisch italienisch español espanol inglés ingles francés alemán italiano inglese "
    "francese tedesco spagnolo português portugues inglês nederlands engels polski angielski"
).split()


def _language_phrases() -> str:
    into = " | ".join(f"into {lang}" for lang in _LANGS)
    the_for = " | ".join(f"the {lang} for" for lang in _LANGS)
    mean = " | ".join(f"mean in {lang}" for lang in _LANGS)
    inn = " | ".join(f"in {lang}" for lang in _LANGS)
    to = " | ".join(f"to {lang}" for lang in _LANGS)
    native = " | ".join(
        f"{prep} {lang}" for prep in ("en", "auf", "in", "em", "ins", "al", "nach") for lang in _NATIVE_LANGS
    )
    return f"3.5: {the_for} | {mean}\n2.5: {into} | {native}\n1.8: {inn}\n1.2: {to}"


_WORD_CUES = {
    "summarization": """
        3.0: summarize/summarise/summarized/summarised/summarizing/summarising/summarization/summarisation
        3.0: tl dr/tldr | sum up/sum it up | boil this down/boil it down | in a nutshell | executive summary
        3.0: résume/résumez/résumer | zusammenfassung/zusammenfassen | riassumi/riassunto/riassumere
        3.0: resumo/resuma/resumen/resumir/resume el/resume este/resume la/resume los | samenvatting
        3.0: podsumuj | meeting minutes/minutes from
        3.0: key points/main points/main ideas | key takeaways/main takeaways/takeaways
        2.5: summary/summaries
        2.5: gist | recap | condense | brief overview | meeting notes | shorten
        2.0: fasse | zusammen | abstract | overview | digest | bullet points/bullets
        1.5: highlights | briefly
    """,
    "translation": """
        3.5: translate/translated/translating/translation/translations/translator
        3.5: traduce/traducir/traducción/traduis/traduire/traduisez/traduction/traduci/tradurre/traduzione
        3.5: traduza/traduzir/tradução | übersetze/übersetzen/übersetzung | переведи/перевести/перевод
        3.5: vertaal/vertalen | przetłumacz | çevir | ترجم
        3.5: how do you say/how to say/how would you say/cómo se dice/como se dice/comment dit on
        3.5: wie sagt man/come si dice/como se diz
        2.5: localize/localise/localization/localisation
        1.0: subtitle/subtitles | native speaker
    """,
    "code_generation": """
        2.5: refactor/refactoring | debug/debugging | unit tests/unit test | type hints | stack trace
        2.5: dockerfile | regex/regexp/regular expression | pytest | github actions
        2.0: implement/implementation | error handling | nullpointerexception | segfault | compile
        2.0: python function/a function/a script/a program | code review/code snippet | leetcode
        1.5: function/functions | script | code | bug | kubernetes | docker | yaml | sql | bash | async
        2.5: in python/in javascript/in typescript/in java/in go/in golang/in rust/in sql/in bash/in kotlin
        2.5: in swift/in ruby/in php/in c/in react/in pandas
        1.5: javascript | typescript | python | java | golang | rust | kotlin
        1.5: swift | ruby | php | scala | powershell | react | django | flask | css | html | endpoint
        1.5: pydantic | dataclass | sqlalchemy | struct | interface | orm | schema | query | linked list
        1.5: binary search | fonction/funktion/función/funzione/função | algorithm | compiler | workflow
        1.5: component | class | method | optimize this
        1.0: fix/fix this | error | exception | traceback | crash/crashes | throws | node | pandas | numpy
        1.0: repo/repository | test/tests | fails/failing | slow | optimize | concurrency
    """,
    "question_answering": """
        2.0: answer the question/answer questions/the question | based on the/according to the
        2.0: difference between | define/definition
        1.5: explain/explain how/explain why | tell me about/tell me what | how does | meaning of
        1.5: context | question | passage | what does | o que | qu est ce
        0.5: how do
        1.0: symptoms | causes | history of | who is/who was | when did | where is
        1.0: how much | how long | is it safe | is it true | can you tell me | in simple terms
        1.0: using only/only the provided
        0.5: what is/what s/what are the
    """,
    "reasoning": """
        3.0: step by step | show your work | prove/proof | solve/solving | derivative | integral
        3.0: sudoku | riddle | puzzle | résous/résoudre | resuelve/resolver | löse/lösen | rechenweg
        3.0: boxed | mate in | which is bigger/which is larger/which is greater/which is smaller
        2.5: probability | equation/équation/gleichung/ecuación | calculate/compute/calcula/calcule
        2.5: calcola/berechne | razona | reasoning | logic/logically | estimate | fermi
        2.5: next number | sequence | compounded | how many ways | argument valid/valid argument
        2.0: how many days | final price | percent/percentage | prime | arrange/arranged/arrangements
        2.0: permutations/combinations/distinct ways | clues/constraints | check again | lying/truth
        2.0: chess | theorem | geometry | walk me through the math | assumptions | count carefully
        2.0: minimize/maximize | shortest | immediately to the/to the right of/to the left of/next to the
        1.5: how many | how much | catch up | mph | km h | interest | discount | triangle | radius | math
        1.5: optimal | trade offs | weigh | perimeter | area | umfang | flächeninhalt | think
    """,
    "creative_writing": """
        3.5: poem/poems/poetry/poème/gedicht/poema/poesia/poesía | haiku | limerick | sonnet/soneto
        3.5: villanelle | short story/bedtime story/cuento | lyrics | fairy tale/fable | screenplay
        3.5: eulogy | love letter | plot twist/plot twists | slogan/slogans | tagline/taglines | jingle
        3.5: rap verse | text adventure | game master | wedding toast
        2.5: story/stories | song/chanson/canción/canzone | rap | verse | toast | dialogue between
        2.5: novel | fiction | narrate | fantasy | invent | brainstorm | name ideas/names for
        2.5: birthday card/card message | blog post | product description | scene | histoire/geschichte
        2.0: tell me a story | continue this story | creative | catchy | funny tweet | joke/jokes
        2.0: heartfelt | evocative | storytelling | magic system | characters/character
        1.0: tweet | write a/write me | in the style of | funny
    """,
    "rewriting": """
        3.5: rewrite/rewrites/rewriting | rephrase | reword | paraphrase | proofread/proofreading
        3.5: reformulate | umformulieren/formuliere | reescribe/reescribir/reformula | riscrivi
        3.5: corrige/corriger | grammar check/fix the grammar | fix the tone
        2.5: grammar | spelling | punctuation | capitalization/capitalisation | polish | edit my/edit this
        2.5: improve the clarity/improve this | simplify | plain english | active voice/passive voice
        2.5: first person/third person | british english/american english | punchier | friendlier
        2.5: more formal/less formal/more professional/more casual/more polite/more natural
        2.5: more persuasive/more enthusiastic/more friendly/more concise/more welcoming
        2.5: less passive aggressive/less rude/less harsh/less wordy | cohesive paragraph | améliore
        2.5: mejora | sound more/sound less/sound natural/sound better | tone | redo this | fautes
        2.0: make this/make it | clearer/clarity | flow | wording | improve | style | formal
        2.0: into one paragraph/into a paragraph | profanity | plagiarism
        1.0: concise | shorter | fix/fix the
    """,
    "classification": """
        3.5: classify/classifies/classification/classifier/klassifiziere/klassifizieren/clasifica
        3.5: clasificar/classifie | categorize/categorise/categorization | classe
        3.5: sentiment/sentimiento | intent/intents | clickbait | sarcasm/sarcastic | toxic
        3.5: entail/entailment
        3.0: spam | severity | urgency | fraudulent/fraud | moderation | emotion | label | tag
        3.0: category/categories/kategorie/kategorien/catégorie/catégories/categoría/categorías
        2.5: positive or negative | yes or no/true or false/oui ou non/sí o no/ja oder nein
        2.5: which department/which language/what language/which queue/which category
        2.0: exactly one | one word | only the | route/router | queue | priority | grade
        2.0: contradict | neutral | positive | negative | safe or unsafe | legit | relevant
        1.5: respond with/answer with/reply with/output only | assign | or not
        1.0: one of | correct/incorrect
    """,
    "extraction": """
        3.5: extract/extracts/extracted/extracting/extraction/extrae/extraer/extrahiere/extrahieren
        3.5: extraire/extrais/estrai/estrarre | named entities/entités/entities | pull out
        3.0: parse/parse this | key value | scrape | fill in | data entry | with columns | structured
        2.5: fields | email addresses | phone numbers | urls/links | hashtags | mentions
        2.0: identify all/find all/list all/get all | pull the | mentioned
        2.0: found in the/from the text/in the text/from this text | ingredients | quantities
        1.5: json | csv | table of | dates | amounts | names | keywords | action items
        1.0: form | fields from | all the | every
    """,
    "chat": """
        3.0: how are you/how s it going/what s up/how s your day/how is your day/how are things
        3.0: comment ça va/ça va/qué tal/cómo estás/como estas/wie geht/tudo bem | nice to meet
        3.0: good morning/good evening/good night/good afternoon/guten morgen/guten tag/buenos días
        3.0: buenos dias/bom dia/buongiorno | your name | about yourself | keep me company
        3.0: stay in character/in character | roleplay/role play | virtual friend | companion
        2.5: are you a/are you real | do you like | what do you think | your favourite/your favorite
        2.5: how was your/how did you/have you ever/do you ever
        2.5: lonely | bored | rough day | where were we | talk for a bit/just talk
        2.0: lol/haha/hahaha/lmao | ok cool/cool | anyway | awesome | nervous | feeling/i feel
        2.0: listener | empathetic | supportive | buddy/friend | mascot | playful | cheerful
        2.0: speak like | good call | nice | great
        1.5: thanks/thank you/thx
        1.0: i m | i just
    """,
    "tool_use": """
        2.5: use the tools/use your tools/use the tool/available tools | call the tool/call a tool
        2.5: tool calls/function calling | knowledge base
        1.5: tools/tool | search the | look up/lookup | agent
    """,
    "other": """
        3.0: workout plan/training plan/trainingsplan/meal plan/lesson plan/study schedule | itinerary
        3.0: agenda | packing list/grocery list/shopping list/lista de la compra | quiz | flashcards
        3.0: interview questions | alt text | random | roll a/roll the dice/roll dice
        2.5: outline | template | fake/dummy/sample/mock data/test data | seo | checklist | plan
        2.5: schedule | budget | repeat | records | demo
        1.0: list/lista/liste
    """,
}
_WORD_CUES["translation"] += _language_phrases()

# Substrings, for scripts written without spaces between words.
_SUBSTRING_CUES = {
    "summarization": (
        ("要約", 3.0),
        ("总结", 3.0),
        ("概括", 3.0),
        ("摘要", 3.0),
        ("요약", 3.0),
        ("まとめ", 2.5),
    ),
    "translation": (
        ("翻译", 3.5),
        ("翻訳", 3.5),
        ("번역", 3.5),
        ("英文", 1.5),
        ("英語", 1.5),
        ("->", 0.5),
        ("→", 1.0),
    ),
    "chat": (
        ("こんにちは", 3.0),
        ("你好", 3.0),
        ("안녕", 3.0),
        ("😂", 1.5),
        ("🎉", 1.5),
        ("😩", 1.5),
        ("😊", 1.5),
        ("❤", 1.5),
        ("!!", 0.5),
    ),
    "question_answering": (("吗", 1.0), ("什么", 1.5), ("？", 1.0), ("ですか", 1.0)),
    "code_generation": (("c++", 1.5), ("c#", 1.5), ("()", 0.5)),
}

# Opening words of the instruction.
_GREETINGS = frozenset(
    "hi hello hey heya hiya yo sup howdy greetings bonjour salut coucou hola buenas hallo servus moin "
    "ciao olá ola oi namaste merhaba hej привет".split()
)
_WH_WORDS = frozenset(
    "what who when where why which how whom whose quel quelle quels quelles qui quand où pourquoi comment "
    "combien qué que cuál cual cuáles quién quien cuándo dónde donde cómo cuánto cuanto was wer wann wo "
    "warum wie welche welcher welches qual quem quando onde porque cosa chi dove perché quale quanto".split()
)
_LEAD_INS = frozenset("and but so ok okay also then well hmm oh et und y e".split())
_YES_NO = frozenset("is are does do did can could should was were will would has have".split())
_CREATE_VERBS = frozenset(
    "write create generate implement build make give code develop design escribe écris ecris schreibe "
    "scrivi escreva crea crée erstelle".split()
)
_CODE_NOUNS = frozenset(
    "function script class program query component endpoint api regex dockerfile workflow method module "
    "cli server client library snippet yaml manifest model schema interface type types "
    "fonction funktion función funzione".split()
)
_TOOL_VERBS = frozenset(
    "book schedule send email remind play turn set open add look find search create delete run log "
    "download tell reserve cancel order buy check show get fetch publish post compare convert plot "
    "upload update move call text message notify list start stop launch deploy warm use réserve".split()
)

_LABEL_FIELDS = frozenset(
    "label labels category categories class classification sentiment topic intent emotion priority "
    "severity tone stance verdict decision polarity".split()
)
_LABEL_HINT = re.compile(r"^(?:is|has|contains)_")
_EXTRACT_FN = re.compile(r"^(?:extract|record|capture|parse)_", re.I)
_CLASSIFY_FN = re.compile(r"^(?:classify|categori[sz]e|label|tag|detect)_", re.I)

_TOKEN = re.compile(r"\w+")
_ALPHA = re.compile(r"[^\W\d_]")
_CODE_STARTS = tuple(
    "def |class |import |from |function |function(|const |let |var |public |private |static |#include|"
    "package |func |fn |return|if (|if(|for (|for(|while (|while(|try:|except|async |await |select |"
    "insert |update |create |<div|<a |<nav|<html|<p>|<span|<script|<?php|@app.|//".split("|")
)
_CODE_ENDS = (";", "{", "}", "};", "):", "])", "=> {", "->")
_ERROR_NAME = re.compile(r"[a-z](?:Error|Exception)\b")
_TRACE_FRAME = re.compile(r"^\s+at [\w.$<>]+\(|File \"[^\"\n]+\", line \d+", re.M)
_MATH = re.compile(
    r"\d\s*[+*×÷^]\s*[\d(x]|\d\s+[-/]\s+\d|\d\s*/\s*\(|[\w)]\s+=\s+-?\d|\d\s*=\s*\d|\b[a-z]\^\d|\b\d+\s*%"
    r"|\b[xy]\s*[=+]|\d[xy]\b|[√π∑∫²³]"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_PERSONA = re.compile(
    r"\byou are (?:[A-Z][a-z]+\b|an? (?:friendly|cheerful|playful|supportive)\b)|\bnamed [A-Z][a-z]+"
    r"|\byour name is\b|\b(?:roleplay|role-play|role play|pretend to be|act as|play the role)\b",
    re.I,
)
_Q_MARK_END = re.compile(r"\?\W*$")
_OPTIONS = re.compile(r"\b\w+(?:[-\w]*), [-\w]+,? or [-\w]+\b")
_THIS_OR_THAT = re.compile(
    r"\b(?:is|are) (?:this|it|these|the \w+) (?:an? )?[-\w]+ or (?:an? |not )?[-\w]+\b"
)
_SPEAKER = re.compile(r"(?m)^[ \t]*(?:\[[\d:.]+\][ \t]*)?[A-Z][\w.' -]{0,24}:[ \t]+\S")
_QA_FORMAT = re.compile(r"(?im)^\s*(?:q|question|frage|pregunta|domanda|question \d+)\s*[:.]")
# Quoted passages of several words are material (the text to work on), not instruction.
_QUOTED = re.compile(
    r"(?<!\w)'[^'\n]{0,300}? [^'\n]{0,300}'(?!\w)|\"[^\"]{0,600}? [^\"]{0,600}\"|“[^”]{3,600}”|«[^»]{3,600}»"
    r"|„[^“]{3,600}“"
)
_STOPWORDS = frozenset(
    "a an the of for to and or in on at by with from my me i you your it is are be this that what s how "
    "get set current given user users data info information one some all any can do does please now".split()
)


def _compile_word_cues():
    """phrase → [(task index, weight, cue key)], and first word → the lengths of phrases it starts."""
    table: dict[str, list[tuple[int, float, str]]] = {}
    for label, spec in _WORD_CUES.items():
        index = TASK_TYPES.index(label)
        for line in spec.strip().splitlines():
            weight, _, cues = line.strip().partition(":")
            for cue in cues.split("|"):
                cue_key = ""
                for phrase in cue.split("/"):
                    key = " ".join(_TOKEN.findall(phrase.lower()))
                    if not key:
                        continue
                    cue_key = cue_key or f"{label}:{key}"
                    table.setdefault(key, []).append((index, float(weight), cue_key))
    starts: dict[str, set[int]] = {}
    for key in table:
        parts = key.split(" ")
        if len(parts) > 1:
            starts.setdefault(parts[0], set()).add(len(parts))
    return table, {word: tuple(sorted(lengths)) for word, lengths in starts.items()}


_CUES, _PHRASE_STARTS = _compile_word_cues()
_SUBSTRINGS = tuple(
    (TASK_TYPES.index(label), needle, weight)
    for label, pairs in _SUBSTRING_CUES.items()
    for needle, weight in pairs
)

(
    CHAT,
    QA,
    SUMMARIZATION,
    CLASSIFICATION,
    EXTRACTION,
    CODE,
    TRANSLATION,
    REWRITING,
    CREATIVE,
    REASONING,
    TOOL_USE,
    OTHER,
) = range(len(TASK_TYPES))


# ------------------------------------------------------------------------------------------- extraction
def _text_of(content) -> tuple[str, int]:
    """(text, number of image parts) of a message's content, the text cut to MAX_CHARS."""
    if isinstance(content, str):
        return content[:MAX_CHARS], 0
    if not isinstance(content, list):
        return "", 0
    texts, images, size = [], 0, 0
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text")
            if isinstance(text, str) and size < MAX_CHARS:
                texts.append(text[: MAX_CHARS - size])
                size += len(texts[-1])
        elif kind in ("image_url", "input_image", "image"):
            images += 1
    return "\n".join(texts), images


def _zones(text: str) -> list[tuple[str, float]]:
    """The parts of a message to match cues in, each with a weight factor, instruction-like parts first.

    A short message is all instruction. A longer one is an instruction plus pasted material: its first
    paragraph is the instruction if short (else material), its last paragraph is an instruction if it is
    short and asks something (a question, a trailing colon) or follows material. Material counts for
    MATERIAL of an instruction; the middle of a long message is not read.
    """
    first, _, rest = text.partition("\n\n")
    if not rest.strip() and text.count("\n") >= 3 and len(_SPEAKER.findall(text, 0, 1500)) >= 3:
        return [(text[:HEAD_CHARS], MATERIAL), (text[-TAIL_CHARS:], MATERIAL)]  # a transcript, chat log
    if len(text) <= SHORT_MESSAGE and not rest:
        return [(text, 1.0)]
    if not rest.strip():  # one block: instruction lines only at its edges
        lines = text[:HEAD_CHARS].partition("\n")
        head_line = lines[0]
        tail = text[-TAIL_CHARS:]
        tail_line = tail.rpartition("\n")[2]
        zones = []
        if len(head_line) <= 300 and head_line.rstrip().endswith((":", "?")):
            zones.append((head_line, 1.0))
        if len(tail_line) <= 300 and tail_line.rstrip().endswith((":", "?")) and tail_line != head_line:
            zones.append((tail_line, 1.0))
        zones.append((text[:HEAD_CHARS], MATERIAL))
        zones.append((tail, MATERIAL))
        return zones
    last = rest.rstrip().rpartition("\n\n")[2]
    first_is_instruction = len(first) <= 300
    zones = [(first, 1.0)] if first_is_instruction else []
    asks = last.rstrip().endswith((":", "?", "\uff1f")) or _QA_FORMAT.search(last) is not None
    if len(last) <= 300 and (asks or not first_is_instruction):
        zones.append((last, 1.0))
    else:
        zones.append((last[-TAIL_CHARS:], MATERIAL))
    if not first_is_instruction:
        zones.append((first[:HEAD_CHARS], MATERIAL))
    return zones


def _add_cues(scores: list[float], text: str, weight: float, seen: set[str]) -> list[str]:
    """Add the weighted cues found in text (lower-cased) to scores, each cue once per seen; return tokens."""
    tokens = _TOKEN.findall(text)
    cues, starts = _CUES, _PHRASE_STARTS
    n = len(tokens)
    for i, token in enumerate(tokens):
        hits = cues.get(token)
        if hits:
            for index, w, cue in hits:
                if cue not in seen:
                    seen.add(cue)
                    scores[index] += w * weight
        lengths = starts.get(token)
        if lengths:
            for length in lengths:
                if i + length > n:
                    break
                hits = cues.get(" ".join(tokens[i : i + length]))
                if hits:
                    for index, w, cue in hits:
                        if cue not in seen:
                            seen.add(cue)
                            scores[index] += w * weight
    for index, needle, w in _SUBSTRINGS:
        if needle in text and needle not in seen:
            seen.add(needle)
            scores[index] += w * weight
    return tokens


def _message_cues(scores: list[float], text: str, weight: float) -> tuple[list[str], list[str], bool]:
    """Cues of one message by zone. Returns (tokens of its first zone, its instruction zones' texts,
    whether it has an instruction zone at all). Quoted passages inside instructions are material."""
    seen: set[str] = set()
    first_tokens: list[str] | None = None
    instructions = []
    for zone, factor in _zones(text):
        lowered = zone.lower()
        if factor == 1.0:
            instructions.append(zone)
            lowered = _QUOTED.sub(" ", lowered)
        tokens = _add_cues(scores, lowered, weight * factor, seen)
        if first_tokens is None:
            first_tokens = tokens
    return first_tokens or [], instructions, bool(instructions)


def _code_lines(text: str, enough: int = 3) -> int:
    """How many lines of text look like code (stops counting at enough)."""
    count = 0
    for line in text.splitlines():
        stripped = line.strip()
        if len(stripped) < 2:
            continue
        lowered = stripped[:12].lower()
        if lowered.startswith(_CODE_STARTS) or stripped.endswith(_CODE_ENDS) or "=>" in stripped:
            count += 1
            if count >= enough:
                break
    return count


def _has_stack_trace(text: str) -> bool:
    if "Traceback (most recent" in text:
        return True
    if ("Error" in text or "Exception" in text) and _ERROR_NAME.search(text):
        return True
    if "\tat " in text or "    at " in text or 'File "' in text:
        return _TRACE_FRAME.search(text) is not None
    return False


def _schema_evidence(scores: list[float], response_format) -> None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return
    # A single array of objects ("items": [...]) is judged by its items' fields.
    if len(props) == 1:
        only = next(iter(props.values()))
        if isinstance(only, dict) and only.get("type") == "array" and isinstance(only.get("items"), dict):
            inner = only["items"].get("properties")
            if isinstance(inner, dict) and inner:
                scores[EXTRACTION] += 1.5
                props = inner
    names = [str(name).lower() for name in props]
    enums = [
        name for name, p in zip(names, props.values(), strict=True) if isinstance(p, dict) and "enum" in p
    ]
    booleans = [
        name
        for name, p in zip(names, props.values(), strict=True)
        if isinstance(p, dict) and p.get("type") == "boolean"
    ]
    label_like = [name for name in names if name in _LABEL_FIELDS or _LABEL_HINT.match(name)]
    if label_like and (enums or booleans or len(names) <= 3):
        scores[CLASSIFICATION] += 4.0
    elif (enums or booleans) and len(names) <= 3:
        scores[CLASSIFICATION] += 3.0
    elif len(names) >= 4:
        scores[EXTRACTION] += 3.0
    if any(name in ("summary", "key_points", "tldr", "abstract") for name in names):
        scores[SUMMARIZATION] += 2.0
    if any(name in ("answer", "answers") for name in names):
        scores[QA] += 1.5
    if any("translat" in name for name in names):
        scores[TRANSLATION] += 2.0


def _function_name(tool_choice) -> str | None:
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        if isinstance(function, dict):
            return function.get("name")
        return tool_choice.get("name")
    return None


# ------------------------------------------------------------------------------------------- classify
def _tool_words(request: dict) -> set[str]:
    """Content words of the names and descriptions of the request's tools (get_weather → weather)."""
    words: set[str] = set()
    tools = request.get("tools") or request.get("functions")
    if not isinstance(tools, list):
        return words
    for tool in tools[:32]:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function", tool)
        if not isinstance(function, dict):
            continue
        name = function.get("name")
        description = function.get("description")
        if isinstance(name, str):
            words.update(_TOKEN.findall(name.lower().replace("_", " ")))
        if isinstance(description, str):
            words.update(_TOKEN.findall(description[:120].lower()))
    return words - _STOPWORDS


def classify(request: dict, *, completion_tokens: int | None = None) -> str:
    """The task type of a chat-completions request body: one of TASK_TYPES ("other" if unrecognised)."""
    if not isinstance(request, dict):
        return "other"
    messages = request.get("messages")
    if not isinstance(messages, list):
        messages = []

    system_parts: list[str] = []
    users: list[tuple[str, int]] = []  # the last two user messages, newest first
    assistant_turns = 0
    tool_traffic = False
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "user":
            if len(users) < 2:
                users.append(_text_of(message.get("content")))
        elif role in ("system", "developer"):
            system_parts.append(_text_of(message.get("content"))[0])
        elif role == "assistant":
            assistant_turns += 1
            if message.get("tool_calls") or message.get("function_call"):
                tool_traffic = True
        elif role in ("tool", "function"):
            tool_traffic = True

    user_text, images = users[0] if users else ("", 0)
    if not _ALPHA.search(user_text) and not images and not tool_traffic:
        return "other"
    scores = [0.0] * len(TASK_TYPES)

    short = len(user_text) < 80
    # --- keyword cues, by message and zone
    tokens, instructions, has_instruction = _message_cues(scores, user_text, W_USER)
    instruction = "\n".join(instructions)
    if system_parts:
        system = "\n".join(reversed(system_parts))
        # A user message that is only material (a pasted transcript...) leaves the system prompt in charge.
        _message_cues(scores, system, W_SYSTEM if has_instruction else 1.0)
        if _PERSONA.search(system[:300]):
            scores[CHAT] += 2.0 if short else 1.0
    if len(users) > 1:
        _message_cues(scores, users[1][0], W_PREVIOUS)

    # --- opening words, questions
    first = tokens[0] if tokens else ""
    if first in _GREETINGS:
        scores[CHAT] += 3.0 if len(tokens) <= 8 else 1.0
        if len(tokens) <= 3:
            scores[CHAT] += 1.0
    if first in _LEAD_INS and len(tokens) > 1:  # "And how many...", "OK so what..."
        first = tokens[2] if tokens[1] in _LEAD_INS and len(tokens) > 2 else tokens[1]
    # With pasted material, a question is as often about the whole text (a summary) as a fact in it.
    material = len(user_text) > SHORT_MESSAGE
    if first in _WH_WORDS or _WH_WORDS.intersection(tokens[1:3]):
        scores[QA] += 1.0 if material else 1.5
    elif first in _YES_NO:
        scores[QA] += 0.7
    if _Q_MARK_END.search(instruction):
        scores[QA] += 0.7 if material else 1.0
    elif "?" in instruction[-200:]:
        scores[QA] += 0.5
    if _QA_FORMAT.search(instruction):
        scores[QA] += 1.5

    # --- code, maths
    body = user_text
    fenced = "```" in body
    code_lines = _code_lines(body) if (fenced or len(body) > 40) else 0
    if fenced or code_lines >= 3:
        scores[CODE] += 2.0
    elif code_lines == 2:
        scores[CODE] += 1.0
    if _has_stack_trace(body):
        scores[CODE] += 1.5
    if tokens and (_CREATE_VERBS.intersection(tokens[:6]) and _CODE_NOUNS.intersection(tokens[:14])):
        scores[CODE] += 1.5
    if _MATH.search(instruction):
        scores[REASONING] += 2.0
    if not fenced and len(user_text) < 600 and len(_NUMBER.findall(instruction)) >= 3:
        scores[REASONING] += 1.5

    # --- options to choose from
    lowered = instruction.lower()
    if _OPTIONS.search(lowered):
        scores[CLASSIFICATION] += 1.0
    if _THIS_OR_THAT.search(lowered):
        scores[CLASSIFICATION] += 1.5

    # --- structure of the request
    _schema_evidence(scores, request.get("response_format"))
    has_tools = bool(request.get("tools") or request.get("functions"))
    tool_choice = request.get("tool_choice", request.get("function_call"))
    forced = _function_name(tool_choice)
    if tool_traffic:
        scores[TOOL_USE] += 6.0
    elif has_tools and tool_choice != "none":
        scores[TOOL_USE] += 3.5
        if tool_choice == "required" or forced:
            scores[TOOL_USE] += 1.0
        if _TOOL_VERBS.intersection(tokens[:4]):
            scores[TOOL_USE] += 1.5
        if _tool_words(request).intersection(tokens):
            scores[TOOL_USE] += 1.5
        if forced and _EXTRACT_FN.match(forced):
            scores[EXTRACTION] += 6.0
        elif forced and _CLASSIFY_FN.match(forced):
            scores[CLASSIFICATION] += 6.0

    if images:
        scores[OTHER] += 3.0

    # --- casual conversation: short turns without any other recognised task
    if short and max(scores[QA:OTHER]) < 2.0:
        scores[CHAT] += 1.0
        if assistant_turns:
            scores[CHAT] += 1.0

    # --- the size of the answer
    if completion_tokens is not None and scores[CLASSIFICATION] > 0:
        if completion_tokens <= 3:
            scores[CLASSIFICATION] += 1.5
        elif completion_tokens <= 10:
            scores[CLASSIFICATION] += 0.5

    best = max(range(len(scores)), key=scores.__getitem__)
    if scores[best] < MIN_SCORE:
        return "other"
    return TASK_TYPES[best]
