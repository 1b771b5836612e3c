"""Essay text: tolerant section parsing, text statistics and validation against the chart.

`parse_sections` reads the four-section structure from what a teacher or student wrote (marker
variants, markdown decoration, a chain-of-thought block first); `validate_essay` returns reason
codes, never prose: the prompts layer maps REASON_CODES to repair hints kept in prompt files.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from chartdistill.config import Section
from chartdistill.data.records import ChartRecord
from chartdistill.essay.claims import Verification, verify
from chartdistill.essay.grounding import ChartNumbers, names_subject
from chartdistill.essay.sections import SECTIONS

REASON_CODES: tuple[str, ...] = (
    "missing_section",
    "empty_section",
    "too_short",
    "too_long",
    "chat_markup",
    "role_text",
    "instruction_text",
    "list_or_markdown",
    "question_list",
    "loop",
    "off_subject",
    "too_few_numbers",
    "ungrounded_numbers",
    "misattributed_numbers",
    "false_claims",
)
# Text that is not essay prose, whatever the chart (clean_prose). The first three mark text
# addressed to a model, a judge or a reader: a reply carrying them anywhere is rejected.
INJECTION_CODES: tuple[str, ...] = ("chat_markup", "role_text", "instruction_text")
PROSE_CODES: tuple[str, ...] = (*INJECTION_CODES, "list_or_markdown", "question_list")


class EssayBounds(Section):
    """What a valid essay must satisfy. The defaults are strict, for real teachers."""

    min_words: int = Field(default=150, ge=0)
    max_words: int = Field(default=300, ge=1)
    min_numbers: int = Field(default=3, ge=0)
    min_grounded_fraction: float = Field(default=0.9, ge=0, le=1)
    # Share of figures that match a row or series named in their own sentence (or a derived
    # figure of those the sentence states as one): attribution-level grounding.
    min_attributed_fraction: float = Field(default=0.8, ge=0, le=1)
    tolerance: float = Field(default=0.02, ge=0, le=1)
    # Relative tolerance for a figure hedged with "about", "nearly", "over", ...
    approx_tolerance: float = Field(default=0.05, ge=0, le=1)
    # The introduction must name this chart's subject (title key terms or its categories).
    require_subject: bool = True
    max_repeated_trigram_rate: float = Field(default=0.15, ge=0, le=1)
    # Claims the table contradicts (claims.check_claims: a wrong superlative, trend, fraction...)
    max_false_claims: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _words_ordered(self) -> EssayBounds:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) > max_words ({self.max_words})")
        return self


# The default profile's values (teacher.validation, datasets.bounds): lenient enough for the
# bundled 135M teacher; EssayBounds' own defaults are the strict ones (evaluation.bounds).
LENIENT_BOUNDS = EssayBounds(
    min_words=120,
    max_words=400,
    min_numbers=2,
    min_grounded_fraction=0.6,
    min_attributed_fraction=0.5,
    max_repeated_trigram_rate=0.2,
)


@dataclass
class ParsedEssay:
    """The four sections (None when some are missing) and what surrounded them.

    `body` is the essay without reasoning and marker lines (whatever sections were found, or
    the whole remaining text when none were); `partial` holds the sections found even when
    some are missing; `marker_order` lists the sections in the order their markers appeared.
    """

    sections: dict[str, str] | None
    reasoning: str
    error: str | None
    had_markers: bool
    body: str = ""
    partial: dict[str, str] = field(default_factory=dict)
    marker_order: list[str] = field(default_factory=list)


# --- text statistics -------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['’.,\-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_LIST_LINE = re.compile(r"^\s*(?:[-*•+]\s+|\d{1,2}[.)]\s+|#{1,6}\s|\|)")
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
_MIN_REPEATED_SENTENCE_WORDS = 4


def words(text: str) -> list[str]:
    """Lowercase word tokens; "12.5", "1,234" and "well-known" are one token each."""
    return _WORD.findall(text.lower())


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of the text's word n-grams that repeat an earlier one (0.0 for short texts)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)


def has_repeated_sentence(text: str) -> bool:
    """Some sentence of four or more words occurs twice (case and punctuation ignored)."""
    seen = Counter(
        " ".join(tokens)
        for tokens in (words(s) for s in sentences(text))
        if len(tokens) >= _MIN_REPEATED_SENTENCE_WORDS
    )
    return any(count > 1 for count in seen.values())


def question_stats(text: str) -> tuple[int, int]:
    """(questions, sentences) in the text."""
    parts = sentences(text)
    return sum(1 for s in parts if s.endswith("?")), len(parts)


def list_lines(text: str) -> tuple[int, int]:
    """(list-like lines: bullets, numbered items, headings, table rows; non-empty lines)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return sum(1 for line in lines if _is_list_line(line)), len(lines)


def _is_list_line(line: str) -> bool:
    return bool(_LIST_LINE.match(line)) or line.count("|") >= 2


_LABEL_NUMBER = re.compile(r"\d+\s*[-–]\s*\d+|\d+\+|\b(?:1[89]|20)\d\d\b(?![.,]\d)")
_PAREN_FIGURE = re.compile(r"\([^()]*\d[^()]*\)")
_COLON_ITEMS = re.compile(r":\s*[^:]*\d[^,]*,[^,]*\d[^,]*(?:,|\band\b)[^,]*\d")


def list_like_sentences(text: str) -> list[str]:
    """Sentences that are lists of figures, not prose: "From largest to smallest: A (43%),
    B (28%) and C (9%).", three or more figures in brackets, or five or more figures strung
    together with commas (years and ranges such as "25-34" are labels, not figures)."""
    out = []
    for sentence in sentences(text):
        plain = _LABEL_NUMBER.sub(" ", sentence)
        figures = len(re.findall(r"\d+(?:[.,]\d+)*", plain))
        if (
            _COLON_ITEMS.search(plain)
            or len(_PAREN_FIGURE.findall(sentence)) >= 3
            or (figures >= 5 and sentence.count(", ") >= 3)
        ):
            out.append(sentence)
    return out


def has_list_or_markdown(text: str) -> bool:
    """Bullets, numbered items, headings, table rows, bold, or a sentence that lists figures."""
    return list_lines(text)[0] > 0 or bool(_BOLD.search(text)) or bool(list_like_sentences(text))


# --- section parsing -------------------------------------------------------------------------

_REASONING_BLOCK = re.compile(
    r"<(analysis|thinking|think|reasoning)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL
)
_REASONING_OPEN = re.compile(r"<(?:analysis|thinking|think|reasoning)>", re.IGNORECASE)
_REASONING_CLOSE = re.compile(r"</(?:analysis|thinking|think|reasoning)\s*>", re.IGNORECASE)
_WRAPPER_TAG = re.compile(r"</?(?:essay|answer|response|output|final)\s*>", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

_FEATURE_WORDS = r"(?:key|main)\s+(?:features?|points?)"
_NAMES = (
    r"(?P<numbered>"
    rf"(?:{_FEATURE_WORDS}\s*[,:(\-–—]?\s*)?(?:body\s+)?paragraph\s*(?P<n1>[12]|one|two|ii?)"
    r"(?![A-Za-z0-9])\s*\)?"
    rf"|{_FEATURE_WORDS}\s*\(?\s*(?P<n2>[12])\s*\)?"
    rf"|(?P<n3>first|second)\s+(?:body\s+|{_FEATURE_WORDS}\s+)?paragraph"
    r"|body\s*(?P<n4>[12])"
    r")"
    r"|(?P<introduction>introduction|intro|describe\s+(?:the|a)\s+(?:graph|chart|table|diagram))"
    rf"|(?P<features>{_FEATURE_WORDS}(?:\s+and\s+comparisons)?|find\s+the\s+key\s+points[^:>\n]*)"
    r"|(?P<overview>overview|summary|conclusion|overall(?:\s+summary)?|write\s+a\s+summary[^:>\n]*)"
)
_MARKER_LINE = re.compile(
    r"^[ \t]*(?P<heading>\#{1,6}[ \t]*)?(?:[-•][ \t]+)?(?P<bold1>[*_]{1,3})?[ \t]*"
    r"(?:(?:step[ \t]*)?(?:\d{1,2}|[ivx]{1,4})[.):][ \t]*)?(?P<bold2>[*_]{1,3})?[ \t]*<?[ \t]*"
    rf"(?:{_NAMES})(?![A-Za-z])"
    r"[ \t]*>?[ \t]*(?P<bold3>[*_]{1,3})?[ \t]*(?P<sep>[:\-–—])?[ \t]*(?:[*_]{1,3})?[ \t]*"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)
_FIRST = {"1", "one", "i", "first"}


@dataclass
class _Marker:
    line: int
    section: str  # a SECTIONS name, or "features" for an unnumbered key-features marker
    rest: str


def _marker(line_no: int, line: str) -> _Marker | None:
    match = _MARKER_LINE.match(line)
    if not match:
        return None
    rest = match.group("rest").strip()
    decorated = any(match.group(g) for g in ("heading", "bold1", "bold2", "bold3"))
    if not (match.group("sep") or not rest or decorated):
        return None  # a sentence that starts with "Overall ..." or "Introduction of ..."
    if match.group("numbered"):
        number = next(match.group(g) for g in ("n1", "n2", "n3", "n4") if match.group(g))
        section = "features_1" if number.lower() in _FIRST else "features_2"
    else:
        section = next(g for g in ("introduction", "features", "overview") if match.group(g))
    return _Marker(line_no, section, rest)


def _split_reasoning(text: str) -> tuple[list[str], str, str | None]:
    """(reasoning parts, remaining text, error) after taking out chain-of-thought blocks."""
    parts = [m.group(2).strip() for m in _REASONING_BLOCK.finditer(text)]
    rest = _REASONING_BLOCK.sub("\n", text)
    error = None
    close = _REASONING_CLOSE.search(rest)
    if close and not _REASONING_OPEN.search(rest[: close.start()]):
        parts.append(rest[: close.start()].strip())  # the opening tag was in the prompt
        rest = rest[close.end() :]
    if _REASONING_OPEN.search(rest):
        error = "unclosed reasoning block"
        rest = _REASONING_OPEN.sub("\n", rest)
    rest = _WRAPPER_TAG.sub("", rest)
    return [p for p in parts if p], rest, error


def parse_sections(text: str) -> ParsedEssay:
    """Read the four sections from an essay, tolerating marker variants and a reasoning block."""
    reasoning, essay, unclosed = _split_reasoning(text)
    lines = essay.splitlines()
    markers = [m for i, line in enumerate(lines) if (m := _marker(i, line))]
    if not markers:
        if unclosed:
            return ParsedEssay(None, "\n\n".join(reasoning), unclosed, False, body=essay.strip())
        return _from_paragraphs(essay, reasoning)
    lead = "\n".join(lines[: markers[0].line]).strip()
    if lead:
        reasoning.append(lead)
    found, order, error = _assign(markers, lines)
    if "features_1" in found and "features_2" not in found:
        halves = _paragraphs(found["features_1"])
        if len(halves) == 2:
            found["features_1"], found["features_2"] = halves
            order.insert(order.index("features_1") + 1, "features_2")
    missing = [s for s in SECTIONS if s not in found]
    if missing and error is None:
        error = f"missing sections: {', '.join(missing)}"
    ordered = {s: found[s] for s in SECTIONS if s in found}
    return ParsedEssay(
        sections=None if error else ordered,
        reasoning="\n\n".join(reasoning),
        error=error,
        had_markers=True,
        body=_join(ordered.values()),
        partial=ordered,
        marker_order=order,
    )


def _assign(
    markers: list[_Marker], lines: list[str]
) -> tuple[dict[str, str], list[str], str | None]:
    """Section texts by name, marker order, and an error for a repeated marker."""
    found: dict[str, str] = {}
    order: list[str] = []
    error = None
    ends = [m.line for m in markers[1:]] + [len(lines)]
    for marker, end in zip(markers, ends, strict=True):
        section = marker.section
        if section == "features":
            section = next((s for s in ("features_1", "features_2") if s not in found), section)
        if section in found or section == "features":
            error = error or f"repeated marker for {marker.section} (line {marker.line + 1})"
            continue
        content = "\n".join([marker.rest, *lines[marker.line + 1 : end]])
        found[section] = _join(_paragraphs(content))
        order.append(section)
    return found, order, error


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]


def _join(parts: Iterable[str]) -> str:
    return "\n\n".join(p for p in parts if p.strip())


def _from_paragraphs(essay: str, reasoning: list[str]) -> ParsedEssay:
    paragraphs = _paragraphs(essay)
    if len(paragraphs) != len(SECTIONS):
        error = f"no section markers and {len(paragraphs)} paragraphs instead of {len(SECTIONS)}"
        return ParsedEssay(None, "\n\n".join(reasoning), error, False, body=essay.strip())
    sections = dict(zip(SECTIONS, paragraphs, strict=True))
    return ParsedEssay(
        sections=sections,
        reasoning="\n\n".join(reasoning),
        error=None,
        had_markers=False,
        body=_join(paragraphs),
        partial=sections,
    )


def essay_body(text: str) -> str:
    """The essay text without reasoning blocks and marker lines."""
    return parse_sections(text).body


# --- prose cleaning --------------------------------------------------------------------------

_FENCE_LINE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[\w+.-]*[ \t]*$", re.MULTILINE)
_ACK = r"(?:sure|certainly|of\s+course|okay|ok|absolutely)"
_PREAMBLE = re.compile(
    rf"^\W*(?:{_ACK}\W+)?(?:here\s+(?:is|are)|here['’]s|below\s+(?:is|are))\b[^\n]{{0,150}}$"
    rf"|^\W*{_ACK}\W*$",
    re.IGNORECASE,
)
_CHAT_MARKUP = re.compile(
    r"<\|[^|<>\n]{1,40}\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>"
    r"|^[ \t]*(?:<\|?)?(?:im_start|im_end)\b",
    re.IGNORECASE | re.MULTILINE,
)
_ROLES = (
    r"system|user|assistant|human|ai|bot|model|developer|instructions?|prompt|judge|grader"
    r"|examiner|evaluator|reviewer|note\s+to\s+(?:the\s+)?(?:judge|grader|examiner|evaluator)"
)
_ROLE_TEXT = re.compile(
    rf"(?:^|(?<=[.!?:;])|(?<=[.!?:;][\"'’”)]))[ \t]*(?:#+[ \t]*|\[)?(?:{_ROLES})[ \t]*(?:\]|:)",
    re.IGNORECASE | re.MULTILINE,
)
_AUDIENCE = r"judges?|graders?|examiners?|evaluators?|markers?|raters?|reviewers?"
_INSTRUCTION_TEXT = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+)*"
    r"(?:previous|prior|above|earlier|preceding|former|original|system|these|those)?\s*"
    r"(?:instructions?|prompts?|rules|messages?|directions?|guidelines)"
    r"|\bas\s+an?\s+(?:ai|artificial\s+intelligence|(?:large\s+)?language\s+model|llm|assistant)\b"
    r"|\b(?:i\s+am|i['’]m)\s+(?:just\s+)?an?\s+(?:ai|language\s+model|assistant|chatbot)\b"
    r"|\blanguage\s+model\b|\bnew\s+instructions?\b"
    rf"|\b(?:dear|to\s+the|attention|hey|hello)\s*,?\s+(?:{_AUDIENCE})\b"
    rf"|\b(?:the\s+)?(?:{_AUDIENCE})\s+(?:should|must|will|shall|needs?\s+to|has\s+to)\b"
    r"|\b(?:score|grade|rate|mark|award|give)\s+(?:this|my|the\s+following)\s+"
    r"(?:essay|answer|response|text)\b"
    r"|\b(?:choose|pick|prefer|select|vote\s+for)\s+(?:essay|answer|response|option)\s+[ab]\b"
    r"|\b(?:essay|answer|response)\s+[ab]\s+(?:is|was)\s+(?:better|best|the\s+winner)\b"
    r"|\bi\s+hope\s+(?:this|that|it)\s+helps\b|\blet\s+me\s+know\b|\bfeel\s+free\s+to\b"
    r"|\bif\s+you\s+(?:need|want|would\s+like|have\s+any)\b|\bas\s+(?:you\s+)?requested\b"
    r"|\byou\s+(?:must|should|are\s+to|will\s+now)\s+(?:now\s+)?"
    r"(?:ignore|answer|output|respond|reply|write|say|print|rate|score)\b"
    r"|\b(?:respond|reply|answer)\s+(?:only\s+)?with\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Prose:
    """A text as essay prose: harmless wrapping removed, and why it is not prose (if so).

    `reasons` are codes from PROSE_CODES (empty: the text is prose); `stripped` names what was
    removed as harmless ("reasoning", "code_fence", "preamble"); `reasoning` holds removed
    chain-of-thought blocks, kept beside the text, never in it.
    """

    text: str
    reasons: list[str]
    stripped: list[str]
    reasoning: str = ""


def injection_reasons(text: str) -> list[str]:
    """INJECTION_CODES the text trips: chat markup, role labels ("SYSTEM:", "User:"), and
    text addressed to a model, judge or reader ("ignore previous instructions", "as an AI")."""
    found = {
        "chat_markup": bool(_CHAT_MARKUP.search(text)),
        "role_text": bool(_ROLE_TEXT.search(text)),
        "instruction_text": bool(_INSTRUCTION_TEXT.search(text)),
    }
    return [code for code in INJECTION_CODES if found[code]]


def asks_questions(text: str) -> bool:
    """Some sentence of the text is a question (an essay states; it does not ask)."""
    return question_stats(text)[0] > 0


def prose_reasons(text: str) -> list[str]:
    """PROSE_CODES the text trips: injection, lists/headings/markdown, questions."""
    reasons = injection_reasons(text)
    if has_list_or_markdown(text):
        reasons.append("list_or_markdown")
    if asks_questions(text):
        reasons.append("question_list")
    return reasons


def strip_wrapping(text: str) -> Prose:
    """Remove what is harmless around prose: reasoning blocks, wrapper tags, code-fence lines
    and a leading "Here is the essay:" / "Sure!" line. `reasons` stays empty."""
    stripped: list[str] = []
    reasoning, rest, _ = _split_reasoning(text)
    if reasoning:
        stripped.append("reasoning")
    if _FENCE_LINE.search(rest):
        rest = _FENCE_LINE.sub("", rest)
        stripped.append("code_fence")
    lines = rest.strip().splitlines()
    while len(lines) > 1 and (
        not lines[0].strip() or (len(words(lines[0])) <= 25 and _PREAMBLE.match(lines[0]))
    ):
        if lines[0].strip() and "preamble" not in stripped:
            stripped.append("preamble")
        lines.pop(0)
    return Prose("\n".join(lines).strip(), [], stripped, "\n\n".join(reasoning))


def clean_prose(text: str) -> Prose:
    """Essay prose from a model's reply: wrapping stripped (strip_wrapping), then the reasons
    (prose_reasons) it is not prose. Use it on teacher sections, judge replies' free text, and
    student essays before they are judged."""
    wrapped = strip_wrapping(text)
    return Prose(wrapped.text, prose_reasons(wrapped.text), wrapped.stripped, wrapped.reasoning)


# --- validation ------------------------------------------------------------------------------


def is_question_list(text: str) -> bool:
    """Two or more questions, or questions making up a third of the sentences."""
    questions, total = question_stats(text)
    return questions >= 2 or (questions >= 1 and 3 * questions >= total)


def has_loop(text: str, max_repeated_trigram_rate: float) -> bool:
    """A repeated sentence, or more repeated word trigrams than the bound allows."""
    return has_repeated_sentence(text) or repeated_ngram_rate(text, 3) > max_repeated_trigram_rate


def validate_essay(sections: dict[str, str], chart: ChartRecord, bounds: EssayBounds) -> list[str]:
    """Reason codes (in REASON_CODES order) the essay fails on; an empty list means valid."""
    return validation(sections, chart, bounds)[0]


def validation(
    sections: dict[str, str],
    chart: ChartRecord,
    bounds: EssayBounds,
    numbers: ChartNumbers | None = None,
) -> tuple[list[str], Verification]:
    """validate_essay's reason codes and the one verification (figures and claims) of the
    essay body they rest on, for callers that report both (evaluation, the judge's gate);
    `numbers` is the chart's prepared table when the caller has it."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(
            f"chart {chart.id}: unknown section(s) {unknown}; expected {list(SECTIONS)}"
        )
    failed: set[str] = set()
    if any(s not in sections for s in SECTIONS):
        failed.add("missing_section")
    if any(not text.strip() for text in sections.values()):
        failed.add("empty_section")
    body = _join(sections[s].strip() for s in SECTIONS if s in sections)
    count = word_count(body)
    if count < bounds.min_words:
        failed.add("too_short")
    if count > bounds.max_words:
        failed.add("too_long")
    introduction = sections.get("introduction", "")
    reasons, checked = _text_reasons(body, introduction, chart, bounds, numbers)
    failed.update(reasons)
    if checked.grounding.mentioned < bounds.min_numbers:
        failed.add("too_few_numbers")
    return [code for code in REASON_CODES if code in failed], checked


def section_reasons(section: str, text: str, chart: ChartRecord, bounds: EssayBounds) -> list[str]:
    """Reason codes one section fails on by itself: a stepwise teacher writes just that section
    again. The essay's own counts (words, number of figures) are validate_essay's."""
    failed, _ = _text_reasons(text, text if section == "introduction" else "", chart, bounds)
    if not text.strip():
        failed.add("empty_section")
    return [code for code in REASON_CODES if code in failed]


def _text_reasons(
    text: str,
    introduction: str,
    chart: ChartRecord,
    bounds: EssayBounds,
    numbers: ChartNumbers | None = None,
) -> tuple[set[str], Verification]:
    """Prose, loop, subject (of the introduction given), grounding and claim checks."""
    failed = set(prose_reasons(text))
    if has_loop(text, bounds.max_repeated_trigram_rate):
        failed.add("loop")
    if bounds.require_subject and introduction.strip() and not names_subject(introduction, chart):
        failed.add("off_subject")
    checked = verify(text, chart, bounds.tolerance, bounds.approx_tolerance, numbers)
    grounding = checked.grounding
    if grounding.fraction is not None and grounding.fraction < bounds.min_grounded_fraction:
        failed.add("ungrounded_numbers")
    attributed = grounding.attributed_fraction
    if attributed is not None and attributed < bounds.min_attributed_fraction:
        failed.add("misattributed_numbers")
    if len(checked.false_claims) > bounds.max_false_claims:
        failed.add("false_claims")
    return failed, checked


def verify_essay(sections: dict[str, str], chart: ChartRecord, bounds: EssayBounds) -> Verification:
    """The essay body's figures and claims checked against the chart (claims.verify)."""
    body = _join(sections[s].strip() for s in SECTIONS if s in sections)
    return verify(body, chart, bounds.tolerance, bounds.approx_tolerance)


@dataclass(frozen=True)
class SentenceFault:
    """A sentence the table does not support, with its reason codes and the false claims."""

    index: int
    sentence: str
    reasons: list[str]
    details: list[str]


def sentence_faults(text: str, chart: ChartRecord, bounds: EssayBounds) -> list[SentenceFault]:
    """Each sentence of `text` checked on its own: prose, figures grounded and attributed to a
    name in the same sentence, claims true. A teacher repairs (or replaces) just these."""
    faults = []
    numbers = ChartNumbers.from_chart(chart)
    for index, sentence in enumerate(sentences(text)):
        reasons = set(prose_reasons(sentence))
        checked = verify(sentence, chart, bounds.tolerance, bounds.approx_tolerance, numbers)
        if checked.grounding.ungrounded:
            reasons.add("ungrounded_numbers")
        if checked.grounding.misattributed:
            reasons.add("misattributed_numbers")
        if checked.false_claims:
            reasons.add("false_claims")
        if reasons:
            codes = [code for code in REASON_CODES if code in reasons]
            details = [c.detail for c in checked.false_claims]
            faults.append(SentenceFault(index, sentence, codes, details))
    return faults
